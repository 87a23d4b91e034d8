"""A start in flight while containerd, Temporal or PostgreSQL restarts completes, nothing lost.

Each test holds the saga on node-2 just before a step (a ``sleep`` fault), restarts the
service under it, releases the hold, and checks the start ended ``running`` with exactly one
mount, one address and one task, and that the leak checker finds nothing. containerd and
Temporal are the session's own (tests/support/stack.py), stopped and started by their pids.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

from temporalio.service import RPCError

from berth.runtime.containerd_daemon import start_containerd, stop_containerd
from tests.integration.node_agent import Node2
from tests.integration.test_crash_safety import RESULT_TIMEOUT, assert_running
from tests.support.stack import SuiteStack

HOLD_SECONDS = 6


async def hold_then_restart(node2: Node2, step: str, restart: Any) -> str:
    """Start a container on node-2, hold it before ``step``, restart a service, return its id."""
    container_id = await node2.create()
    node2.agent.set_faults(
        {
            "point": f"{step}:before",
            "action": "sleep",
            "seconds": HOLD_SECONDS,
            "container": container_id,
        }
    )
    handle = await node2.start_workflow(container_id)
    await asyncio.sleep(1.0)  # the saga is now held before the step
    await restart()
    node2.agent.clear_faults()
    await result_surviving_outages(handle)
    return container_id


async def result_surviving_outages(handle: Any) -> None:
    """The workflow's result, retrying the wait while Temporal itself comes back."""
    deadline = asyncio.get_running_loop().time() + RESULT_TIMEOUT
    while True:
        try:
            await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)
            return
        except RPCError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


async def test_start_survives_containerd_restart_mid_saga(node2: Node2) -> None:
    paths = node2.settings.node_paths()

    async def restart_containerd() -> None:
        await stop_containerd(paths)
        await start_containerd(paths)

    container_id = await hold_then_restart(node2, "shim", restart_containerd)

    await assert_running(node2, container_id)
    assert await node2.leaks() == []


async def test_start_survives_temporal_restart_mid_saga(
    node2: Node2, suite_stack: SuiteStack
) -> None:
    async def restart_temporal() -> None:
        await asyncio.to_thread(suite_stack.stop_temporal)
        await asyncio.to_thread(suite_stack.start_temporal)

    container_id = await hold_then_restart(node2, "task", restart_temporal)

    await assert_running(node2, container_id)
    assert await node2.leaks() == []


async def test_start_survives_postgresql_restart_mid_saga(node2: Node2) -> None:
    async def restart_postgresql() -> None:
        version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
        await asyncio.to_thread(
            subprocess.run,
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
            check=True,
            capture_output=True,
            timeout=120,
        )

    container_id = await hold_then_restart(node2, "network", restart_postgresql)

    await assert_running(node2, container_id)
    assert await node2.leaks() == []
