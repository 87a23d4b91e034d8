"""The ``berth`` CLI's lifecycle verbs: stop -t, wait, rm (-f), as docker prints them."""

from __future__ import annotations

import uuid

from tests.integration.conftest import Stack
from tests.integration.test_cli import run


async def test_cli_stop_wait_rm_print_docker_outputs(stack: Stack) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    created = await run(
        stack, "create", "--name", name, "local/busybox:latest", "sh", "-c", "sleep 600"
    )
    assert created.returncode == 0, created.stderr
    stack.created.append(created.stdout.strip())
    assert (await run(stack, "start", name)).returncode == 0

    refused = await run(stack, "rm", name)
    stopped = await run(stack, "stop", "-t", "1", name)
    waited = await run(stack, "wait", name)
    removed = await run(stack, "rm", name)

    assert refused.returncode == 1
    assert "stop the container before removing or force remove" in refused.stderr
    assert (stopped.returncode, stopped.stdout.strip()) == (0, name), stopped.stderr
    assert (waited.returncode, waited.stdout.strip()) == (0, "137"), waited.stderr
    assert (removed.returncode, removed.stdout.strip()) == (0, name), removed.stderr
    assert "No such container" in (await run(stack, "inspect", name)).stderr
