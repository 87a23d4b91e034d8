"""The ``berth`` CLI on the real stack: docker's verbs, messages and exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from tests.integration.conftest import TEST_CODEC_KEYS, Stack

BERTH = Path(sys.executable).parent / "berth"


def cli_env(stack: Stack) -> dict[str, str]:
    """The environment that points ``berth`` at the suite's stack."""
    return {
        **os.environ,
        "BERTH_DATABASE_URL": stack.settings.database_url.get_secret_value(),
        "BERTH_TEMPORAL_NAMESPACE": stack.settings.temporal_namespace,
        "BERTH_STATE_DIR": str(stack.settings.state_dir),
        "BERTH_CODEC_KEYS": TEST_CODEC_KEYS,
        "BERTH_CONTAINERD_NAMESPACE": stack.settings.containerd_namespace,
    }


def berth(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BERTH), *args], capture_output=True, text=True, env=cli_env(stack), timeout=60
    )


async def run(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    # In a thread: the workers that serve the CLI run on this test's event loop.
    return await asyncio.to_thread(berth, stack, *args)


async def test_cli_create_start_inspect_logs_ps_events(stack: Stack) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"

    created = await run(
        stack, "create", "--name", name, "local/busybox:latest", "sh", "-c", "echo hi; sleep 60"
    )
    assert created.returncode == 0, created.stderr
    container_id = created.stdout.strip()
    stack.created.append(container_id)
    started = await run(stack, "start", name)
    assert (started.returncode, started.stdout.strip()) == (0, name)

    inspected = json.loads((await run(stack, "inspect", name)).stdout)[0]
    assert inspected["Id"] == container_id
    assert inspected["State"]["Running"] is True
    assert inspected["State"]["Pid"] > 0
    ps = (await run(stack, "ps")).stdout
    assert container_id[:12] in ps and name in ps
    events = (await run(stack, "events", "--no-follow", name)).stdout.splitlines()
    assert [line.split()[2] for line in events] == ["create", "start"]
    for _ in range(50):
        if (await run(stack, "logs", name)).stdout == "hi\n":
            break
        await asyncio.sleep(0.1)
    assert (await run(stack, "logs", name)).stdout == "hi\n"


async def test_cli_start_of_unknown_container_prints_docker_error_and_exits_1(
    stack: Stack,
) -> None:
    result = await run(stack, "start", "no-such-box")

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "Error response from daemon: No such container: no-such-box",
        "Error: failed to start containers: no-such-box",
    ]


async def test_cli_create_with_invalid_name_names_the_field_and_exits_1(stack: Stack) -> None:
    result = await run(stack, "create", "--name=-bad", "local/busybox:latest")

    assert result.returncode == 1
    assert "name: Value error, Invalid container name" in result.stderr
