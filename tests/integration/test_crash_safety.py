"""The start saga under injected failures, agent crashes and cancels, on node-2's real agent.

Every test ends with the leak checker: no mount, netns, IP, containerd container or task, holder
or attachment that PostgreSQL and the host disagree about.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowFailureError

from berth.db.models import SagaStep
from berth.runtime.netns import netns_exists
from tests.integration.node_agent import (
    Node2,
)

STEPS = ["mount", "network", "spec", "shim", "task"]
RESULT_TIMEOUT = 90


async def journal(node2: Node2, container_id: str) -> dict[str, str]:
    async with node2.sessions() as session:
        rows = await session.execute(
            select(SagaStep.step, SagaStep.status).where(SagaStep.container_id == container_id)
        )
        return dict(rows.all())


async def assert_unwound(node2: Node2, container_id: str, failed_step: str) -> None:
    """The start failed, every registered undo ran, and nothing is left."""
    record = await node2.record(container_id)
    assert (record.state, record.operation, record.pid) == ("created", None, None)
    assert record.error
    trace = await node2.footprint(container_id)
    assert trace.empty, trace
    steps = await journal(node2, container_id)
    assert steps[failed_step] == "failed"
    registered = STEPS[: STEPS.index(failed_step) + 1]
    for step in registered:
        assert steps[f"undo-{step}"] == "compensated", steps
    assert await node2.leaks() == []


async def assert_running(node2: Node2, container_id: str) -> None:
    """The start completed: one mount held by the task, the network, a running task."""
    record = await node2.record(container_id)
    assert (record.state, record.operation) == ("running", None)
    task = await node2.runtime.containerd.get_task(container_id)
    assert (task.status, task.pid) == ("RUNNING", record.pid)
    trace = await node2.footprint(container_id)
    assert trace.rootfs_mounts == 1
    assert trace.mount_holders == ["task"]
    assert trace.ips == [record.ip]
    assert await node2.leaks() == []


@pytest.mark.parametrize("step", STEPS)
async def test_start_with_step_failing_before_side_effect_unwinds_and_leaks_nothing(
    node2: Node2, step: str
) -> None:
    container_id = await node2.create()
    node2.agent.set_faults({"point": f"{step}:before", "action": "fail", "container": container_id})

    handle = await node2.start_workflow(container_id)
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)

    assert getattr(failure.value.cause, "type", None) == "System"
    await assert_unwound(node2, container_id, step)


@pytest.mark.parametrize("step", STEPS)
async def test_start_with_step_failing_after_side_effect_unwinds_and_leaks_nothing(
    node2: Node2, step: str
) -> None:
    container_id = await node2.create()
    node2.agent.set_faults({"point": f"{step}:after", "action": "fail", "container": container_id})

    handle = await node2.start_workflow(container_id)
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)

    await assert_unwound(node2, container_id, step)


@pytest.mark.parametrize("step", STEPS)
async def test_start_with_agent_killed_after_step_completes_after_restart(
    node2: Node2, step: str
) -> None:
    container_id = await node2.create()
    node2.agent.set_faults(
        {"point": f"{step}:after", "action": "crash", "times": 1, "container": container_id}
    )

    handle = await node2.start_workflow(container_id)
    assert await node2.agent.wait_dead() == -9
    await node2.agent.start()
    result = await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)

    assert result.pid > 0
    await assert_running(node2, container_id)


async def test_start_with_agent_killed_by_pid_mid_step_converges_after_restart(
    node2: Node2,
) -> None:
    container_id = await node2.create()
    node2.agent.set_faults(
        {"point": "shim:before", "action": "sleep", "seconds": 30, "container": container_id}
    )
    handle = await node2.start_workflow(container_id)
    await wait_until(spec_written(node2, container_id))

    node2.agent.kill()
    node2.agent.clear_faults()
    await node2.agent.start()
    await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)

    await assert_running(node2, container_id)


async def test_compensation_failing_twice_then_succeeding_leaves_nothing(node2: Node2) -> None:
    container_id = await node2.create()
    node2.agent.set_faults(
        {"point": "task:before", "action": "fail", "container": container_id},
        {
            "point": "undo-network:before",
            "action": "fail",
            "error": "Unavailable",
            "times": 2,
            "container": container_id,
        },
    )

    handle = await node2.start_workflow(container_id)
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)

    await assert_unwound(node2, container_id, "task")


async def test_compensation_whose_agent_is_down_runs_when_it_returns(node2: Node2) -> None:
    container_id = await node2.create()
    node2.agent.set_faults(
        {"point": "task:before", "action": "fail", "container": container_id},
        {"point": "undo-shim:before", "action": "crash", "times": 1, "container": container_id},
    )

    handle = await node2.start_workflow(container_id)
    assert await node2.agent.wait_dead() == -9
    await asyncio.sleep(3)  # the agent stays down for a while
    assert (await handle.describe()).status.name == "RUNNING"
    await node2.agent.start()
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)

    await assert_unwound(node2, container_id, "task")


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    """Poll ``condition`` (host or database state: a saga's phase query waits for its local
    activities, so the host is where a step in progress shows)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met after {timeout}s")


def spec_written(node2: Node2, container_id: str) -> Callable[[], Awaitable[bool]]:
    async def written() -> bool:
        return node2.settings.node_paths().spec(container_id).exists()

    return written


async def test_cancel_during_forward_step_runs_every_compensation(node2: Node2) -> None:
    container_id = await node2.create()
    node2.agent.set_faults(
        {"point": "spec:after", "action": "sleep", "seconds": 30, "container": container_id}
    )
    handle = await node2.start_workflow(container_id)
    await wait_until(spec_written(node2, container_id))  # in spec:after's stall

    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)

    # The saga re-raises the cancelled step's failure as its typed error: FAILED, not CANCELED.
    assert (await handle.describe()).status.name in ("CANCELED", "FAILED")
    await assert_unwound(node2, container_id, "spec")


async def test_cancel_during_compensation_does_not_cut_it_short(node2: Node2) -> None:
    container_id = await node2.create()
    node2.agent.set_faults(
        {"point": "task:before", "action": "fail", "container": container_id},
        {
            "point": "undo-network:before",
            "action": "sleep",
            "seconds": 3,
            "container": container_id,
        },
    )
    handle = await node2.start_workflow(container_id)
    await wait_until(spec_written(node2, container_id))
    netns = node2.settings.node_paths().netns(container_id)

    async def in_undo_network() -> bool:
        spec_gone = not await spec_written(node2, container_id)()
        return spec_gone and await asyncio.to_thread(netns_exists, netns)

    await wait_until(in_undo_network)  # spec undone, network not yet: undo-network stalls

    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)

    await assert_unwound(node2, container_id, "task")


async def test_two_concurrent_starts_run_one_saga(node2: Node2) -> None:
    container_id = await node2.create()
    node2.agent.set_faults(
        {"point": "mount:after", "action": "sleep", "seconds": 1, "container": container_id}
    )

    # Two starts under different ids race for the container; the Berth client's own start
    # attaches to the one with its id (USE_EXISTING) instead of starting a third.
    first = await node2.start_workflow(container_id)
    other = await node2.start_workflow(container_id, workflow_id=f"other-start-{container_id}")
    attached = node2.stack.berth.start(container_id)
    outcomes = await asyncio.wait_for(
        asyncio.gather(first.result(), other.result(), attached, return_exceptions=True),
        RESULT_TIMEOUT,
    )

    failures = [o for o in outcomes if isinstance(o, BaseException)]
    successes = [o for o in outcomes if not isinstance(o, BaseException)]
    assert successes, outcomes
    for failure in failures:
        cause = getattr(failure, "cause", failure)
        assert getattr(cause, "type", None) == "Conflict", failure
    # first and attached are one workflow: they end alike; other is the one refused (or v.v.).
    assert isinstance(outcomes[0], BaseException) == isinstance(outcomes[2], BaseException)
    assert isinstance(outcomes[0], BaseException) != isinstance(outcomes[1], BaseException)
    events = [e.action for e in await node2.stack.berth.events(container_id)]
    assert events.count("start") == 1
    await assert_running(node2, container_id)
