"""berth completion on the real stack: container names come from ``berth ps -a``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid

from tests.integration.conftest import Stack
from tests.integration.test_cli import BERTH, cli_env, run


async def test_cli_completion_bash_offers_the_stack_s_container_names(stack: Stack) -> None:
    prefix = f"cmp-{uuid.uuid4().hex[:6]}"
    for suffix in ("a", "b"):
        await stack.create(name=f"{prefix}-{suffix}", image="local/busybox:latest")
    script = await run(stack, "completion", "bash")
    assert script.returncode == 0, script.stderr
    program = (
        f"{script.stdout}\nCOMP_WORDS=(berth start {prefix}); COMP_CWORD=2\n"
        '_berth; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**cli_env(stack), "PATH": f"{BERTH.parent}{os.pathsep}{os.environ['PATH']}"}

    done = await asyncio.to_thread(
        subprocess.run, ["bash", "-c", program], capture_output=True, text=True, env=env, timeout=60
    )

    assert sorted(done.stdout.split()) == [f"{prefix}-a", f"{prefix}-b"], done.stderr
