"""ContainerStop on the real stack: stop signal, timeout, SIGKILL, cleanup, state and events."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHistory

from berth.contract import ContainerStopInput, ContainerStopOutput
from berth.errors import BerthError, Conflict
from tests.integration.conftest import Stack

# A pid 1 only gets the signals it handles: these trap SIGTERM, or ignore it.
EXITS_ON_TERM = ["sh", "-c", "trap 'exit 3' TERM; while true; do sleep 0.1; done"]
IGNORES_TERM = ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]


async def actions(stack: Stack, container_id: str) -> list[str]:
    return [e.action for e in await stack.berth.events(container_id)]


async def wait_for_state(stack: Stack, container_id: str, state: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while (await stack.berth.get(container_id)).state != state:
        assert time.monotonic() < deadline, f"{container_id} never became {state}"
        await asyncio.sleep(0.05)


async def test_stop_of_process_ignoring_sigterm_kills_it_after_the_timeout(stack: Stack) -> None:
    container_id = await stack.create(cmd=IGNORES_TERM)
    await stack.berth.start(container_id)
    began = time.monotonic()

    stopped = await stack.berth.stop(container_id, timeout=1)

    assert time.monotonic() - began >= 1
    assert stopped.exit_code == 137
    assert not stopped.not_modified
    record = await stack.berth.get(container_id)
    assert (record.state, record.exit_code, record.pid, record.operation) == (
        "exited",
        137,
        None,
        None,
    )
    assert record.finished_at is not None and record.has_been_manually_stopped
    assert (await stack.footprint(container_id)).empty
    assert (await actions(stack, container_id))[-2:] == ["die", "stop"]


async def test_stop_of_process_handling_sigterm_records_its_exit_code(stack: Stack) -> None:
    container_id = await stack.create(cmd=EXITS_ON_TERM)
    await stack.berth.start(container_id)

    stopped = await stack.berth.stop(container_id, timeout=30)

    assert stopped.exit_code == 3
    record = await stack.berth.get(container_id)
    assert (record.state, record.exit_code) == ("exited", 3)
    assert (await stack.footprint(container_id)).empty


async def test_stop_of_stopped_container_is_not_modified(stack: Stack) -> None:
    container_id = await stack.create(cmd=EXITS_ON_TERM)
    await stack.berth.start(container_id)
    await stack.berth.stop(container_id)

    again = await stack.berth.stop(container_id)

    assert again.not_modified
    assert (await actions(stack, container_id)).count("stop") == 1


async def test_stop_of_paused_container_thaws_it_to_handle_the_signal(stack: Stack) -> None:
    container_id = await stack.create(cmd=EXITS_ON_TERM)
    await stack.berth.start(container_id)
    await stack.berth.pause(container_id)

    stopped = await stack.berth.stop(container_id, timeout=30)

    assert stopped.exit_code == 3
    assert (await stack.berth.get(container_id)).state == "exited"
    assert (await stack.footprint(container_id)).empty


async def test_stop_and_start_concurrently_one_runs_other_gets_conflict(stack: Stack) -> None:
    container_id = await stack.create(cmd=IGNORES_TERM)
    await stack.berth.start(container_id)
    stopping = asyncio.ensure_future(stack.berth.stop(container_id, timeout=3))
    await wait_for_state(stack, container_id, "stopping")

    with pytest.raises(Conflict, match="is busy"):
        await stack.berth.start(container_id)

    assert (await stopping).exit_code == 137
    assert (await stack.berth.get(container_id)).state == "exited"
    assert (await stack.footprint(container_id)).empty


async def test_stop_workflow_on_control_queue_stops_by_name(stack: Stack) -> None:
    container_id = await stack.create(cmd=EXITS_ON_TERM)
    await stack.berth.start(container_id)
    name = (await stack.berth.get(container_id)).name

    stopped = await stack.berth.temporal.execute_workflow(
        "ContainerStop",
        ContainerStopInput(container=name, timeout=5),
        id=f"container-stop-{container_id}-public",
        task_queue=stack.settings.task_queue,
        result_type=ContainerStopOutput,
    )

    assert (stopped.id, stopped.exit_code) == (container_id, 3)
    assert (await stack.footprint(container_id)).empty


async def test_stop_workflow_of_unknown_container_fails_with_not_found(stack: Stack) -> None:
    with pytest.raises(WorkflowFailureError) as failure:
        await stack.berth.temporal.execute_workflow(
            "ContainerStop",
            ContainerStopInput(container="no-such-container"),
            id=f"test-stop-unknown-{time.monotonic_ns()}",
            task_queue=stack.settings.task_queue,
            result_type=ContainerStopOutput,
        )
    assert getattr(failure.value.cause, "type", None) == "NotFound"


def longest_workflow_task_seconds(history: WorkflowHistory) -> float:
    """How long the longest workflow task of a history ran (started → completed or failed)."""
    started: datetime | None = None
    longest = 0.0
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            started = event.event_time.ToDatetime()
        elif started is not None and event.event_type in WORKFLOW_TASK_ENDS:
            longest = max(longest, (event.event_time.ToDatetime() - started).total_seconds())
            started = None
    return longest


WORKFLOW_TASK_ENDS = (
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
)
WORKFLOW_TASK_TROUBLE = (
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
)


def scheduled_activities(history: WorkflowHistory) -> list[str]:
    return [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


async def test_stop_wait_past_the_workflow_task_timeout_is_a_regular_heartbeating_step(
    stack: Stack,
) -> None:
    container_id = await stack.create(cmd=IGNORES_TERM)
    await stack.berth.start(container_id)

    stopped = await stack.berth.stop(container_id, timeout=8)

    assert stopped.exit_code == 137
    history = await stack.berth.temporal.get_workflow_handle(
        f"container-stop-{container_id}"
    ).fetch_history()
    assert scheduled_activities(history) == ["signal_and_wait"]
    assert not [e for e in history.events if e.event_type in WORKFLOW_TASK_TROUBLE]
    # As a local activity the 8 s wait ran inside one workflow task (kept open by heartbeats).
    assert longest_workflow_task_seconds(history) < 5
    assert (await stack.footprint(container_id)).empty


async def test_stop_with_a_600_second_grace_period_waits_without_holding_a_workflow_task(
    stack: Stack,
) -> None:
    container_id = await stack.create(cmd=IGNORES_TERM)
    await stack.berth.start(container_id)
    stopping = asyncio.ensure_future(stack.berth.stop(container_id, timeout=600))
    await wait_for_state(stack, container_id, "stopping")
    handle = stack.berth.temporal.get_workflow_handle(f"container-stop-{container_id}")
    # Past the 10 s workflow task timeout, and the step's 30 s heartbeat timeout is not reached.
    await asyncio.sleep(12)

    waiting = await handle.describe()
    history = await handle.fetch_history()
    await handle.cancel()
    with pytest.raises(BerthError, match="cancel"):
        await stopping

    assert [a.activity_type.name for a in waiting.raw_description.pending_activities] == [
        "signal_and_wait"
    ]
    assert not [e for e in history.events if e.event_type in WORKFLOW_TASK_TROUBLE]
    assert longest_workflow_task_seconds(history) < 5
    # The cancelled stop hands the container back as it was: running, held by nobody.
    record = await stack.berth.get(container_id)
    assert (record.state, record.operation) == ("running", None)
    assert (await stack.berth.stop(container_id, timeout=1)).exit_code == 137
