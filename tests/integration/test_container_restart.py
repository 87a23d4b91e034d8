"""Restart on the real stack: a running container's task is replaced in place, anything else
starts from scratch; a replacement that fails falls back to the full start, and a start that
fails then is recorded and unwound like any start. Run on node-2's agent (its fault file)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowFailureError

from berth.config import node_task_queue
from berth.contract import ContainerRestartInput, ContainerStartOutput
from berth.db.models import ContainerEvent, SagaStep
from berth.runtime.netns import netns_exists
from berth.steps import NodeRestartInput
from tests.integration.node_agent import NODE, Node2

RESULT_TIMEOUT = 90


async def restart(node2: Node2, container_id: str, run: int = 0) -> Any:
    """``ContainerRestartOnNode`` on node-2, as the Berth client starts it; its handle."""
    return await node2.temporal.start_workflow(
        "ContainerRestartOnNode",
        NodeRestartInput(request=ContainerRestartInput(container=container_id, timeout=1)),
        id=f"container-restart-{container_id}-{run}",
        task_queue=node_task_queue(NODE),
        result_type=ContainerStartOutput,
    )


async def journal(node2: Node2, container_id: str) -> list[tuple[str, str]]:
    async with node2.sessions() as session:
        rows = await session.execute(
            select(SagaStep.step, SagaStep.status)
            .where(SagaStep.container_id == container_id)
            .order_by(SagaStep.id)
        )
        return [(step, status) for step, status in rows.all()]


async def events(node2: Node2, container_id: str) -> list[str]:
    async with node2.sessions() as session:
        rows = await session.scalars(
            select(ContainerEvent.action)
            .where(ContainerEvent.container_id == container_id)
            .order_by(ContainerEvent.id)
        )
        return list(rows.all())


async def started(node2: Node2) -> tuple[str, ContainerStartOutput]:
    container_id = await node2.create()
    first = await asyncio.wait_for((await node2.start_workflow(container_id)).result(), 60)
    return container_id, first


async def test_restart_of_running_container_replaces_only_its_task(node2: Node2) -> None:
    container_id, first = await started(node2)
    netns = node2.settings.node_paths().netns(container_id)

    again = await asyncio.wait_for((await restart(node2, container_id)).result(), RESULT_TIMEOUT)

    assert again.pid != first.pid
    assert again.ip == first.ip
    task = await node2.runtime.containerd.get_task(container_id)
    assert (task.status, task.pid) == ("RUNNING", again.pid)
    record = await node2.record(container_id)
    assert (record.state, record.operation, record.pid, record.ip) == (
        "running",
        None,
        again.pid,
        first.ip,
    )
    trace = await node2.footprint(container_id)
    assert (trace.rootfs_mounts, trace.mount_holders, trace.ips) == (1, ["task"], [first.ip])
    assert netns_exists(netns)
    assert (await events(node2, container_id))[-4:] == ["start", "die", "stop", "start"]
    assert (await journal(node2, container_id))[-1] == ("replace-task", "done")
    assert await node2.leaks() == []


async def test_restart_whose_replacement_fails_once_starts_from_scratch(node2: Node2) -> None:
    container_id, first = await started(node2)
    node2.agent.set_faults(
        {"point": "task:before", "action": "fail", "container": container_id, "times": 1}
    )

    again = await asyncio.wait_for((await restart(node2, container_id)).result(), RESULT_TIMEOUT)

    assert again.pid != first.pid
    assert (await node2.record(container_id)).state == "running"
    steps = await journal(node2, container_id)
    assert ("replace-task", "failed") in steps and steps[-1] == ("task", "done")
    trace = await node2.footprint(container_id)
    assert (trace.rootfs_mounts, trace.mount_holders) == (1, ["task"])
    assert await node2.leaks() == []


async def test_restart_whose_start_keeps_failing_is_recorded_and_leaks_nothing(
    node2: Node2,
) -> None:
    container_id, _ = await started(node2)
    node2.agent.set_faults({"point": "task:before", "action": "fail", "container": container_id})

    handle = await restart(node2, container_id)
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)

    assert getattr(failure.value.cause, "type", None) == "System"
    record = await node2.record(container_id)
    assert (record.state, record.operation, record.pid) == ("exited", None, None)
    assert "injected" in (record.error or "")
    assert (await events(node2, container_id))[-3:] == ["die", "stop", "start-failed"]
    assert (await node2.footprint(container_id)).empty
    assert await node2.leaks() == []


async def test_restart_of_paused_container_thaws_and_replaces_its_task(node2: Node2) -> None:
    container_id, first = await started(node2)
    await node2.stack.berth.pause(container_id)

    again = await asyncio.wait_for((await restart(node2, container_id)).result(), RESULT_TIMEOUT)

    task = await node2.runtime.containerd.get_task(container_id)
    assert (task.status, task.pid, again.ip) == ("RUNNING", again.pid, first.ip)
    assert (await node2.record(container_id)).state == "running"
    assert await node2.leaks() == []
