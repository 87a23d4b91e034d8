"""The steps table: what workflows call, what workers register, and the one host cleanup order."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from temporalio import activity

import berth.worker
from berth.activities.state import StateActivities
from berth.activities.task import TaskActivities
from berth.config import Settings
from berth.contract import NetworkMode
from berth.steps import (
    HOST_CLEANUP,
    START_STEPS,
    ContainerRef,
    HostTarget,
    NetworkInput,
    ReleaseRootfsInput,
    SignalTaskInput,
)
from berth.workflows.steps import (
    CONTROL,
    NODE,
    STEPS,
    StepTableMismatch,
    check_registered,
    step_for,
    steps_of,
)


def registered(role: str) -> list[Any]:
    """The activities the real worker wiring registers for ``role`` (Worker itself faked)."""
    with mock.patch.object(berth.worker, "Worker") as worker:
        if role == CONTROL:
            berth.worker.control_worker(mock.Mock(), Settings(), mock.Mock())
        else:
            berth.worker.node_worker(mock.Mock(), Settings(), mock.Mock(), mock.Mock())
    return list(worker.call_args.kwargs["activities"])


def names(functions: list[Any]) -> set[str]:
    return {activity._Definition.must_from_callable(f).name or "" for f in functions}


@pytest.mark.parametrize("role", [CONTROL, NODE])
def test_worker_wiring_registers_exactly_its_steps(role: str) -> None:
    assert names(registered(role)) == set(steps_of(role))


def test_steps_table_covers_every_registered_activity_once() -> None:
    assert names(registered(CONTROL)) | names(registered(NODE)) == set(STEPS)


@pytest.mark.parametrize("role", [CONTROL, NODE])
def test_check_registered_real_wiring_passes(role: str) -> None:
    check_registered(role, registered(role))


def test_check_registered_missing_step_raises() -> None:
    activities = [f for f in registered(NODE) if names([f]) != {"signal_and_wait"}]

    with pytest.raises(StepTableMismatch, match="signal_and_wait: in the table, not registered"):
        check_registered(NODE, activities)


def test_check_registered_step_of_the_other_worker_raises() -> None:
    task = TaskActivities(mock.Mock())

    with pytest.raises(StepTableMismatch, match="signal_and_wait: not a step of the control"):
        check_registered(CONTROL, [*registered(CONTROL), task.signal_and_wait])


def test_check_registered_unknown_activity_raises() -> None:
    @activity.defn(name="not_in_the_table")
    async def stray(request: ContainerRef) -> None:
        return None

    with pytest.raises(StepTableMismatch, match="not_in_the_table: not a step of the node"):
        check_registered(NODE, [*registered(NODE), stray])


def test_check_registered_twice_raises() -> None:
    state = StateActivities(mock.Mock())

    with pytest.raises(StepTableMismatch, match="abort_operation: registered twice"):
        check_registered(CONTROL, [*registered(CONTROL), state.abort_operation])


def test_check_registered_input_type_other_than_the_table_raises() -> None:
    @activity.defn(name="start_task")
    async def start_task(request: SignalTaskInput) -> None:
        return None

    activities = [f for f in registered(NODE) if names([f]) != {"start_task"}]

    with pytest.raises(StepTableMismatch, match=r"start_task: takes .*SignalTaskInput"):
        check_registered(NODE, [*activities, start_task])


def test_steps_whose_duration_the_user_controls_are_regular_and_heartbeat() -> None:
    regular = {name for name, step in STEPS.items() if not step.local}

    assert regular == {"signal_and_wait", "export_rootfs", "pull_image", "load_image"}
    assert all(STEPS[name].heartbeat is not None for name in regular)
    assert all(STEPS[name].workers == {NODE} for name in regular)


def test_host_steps_are_waited_for_when_cancelled() -> None:
    node_only = [step for step in STEPS.values() if step.workers == {NODE}]

    assert all(step.cancellation.name == "WAIT_CANCELLATION_COMPLETED" for step in node_only)


def test_host_cleanup_is_the_start_steps_reversed() -> None:
    assert START_STEPS == ("mount", "network", "spec", "shim", "task")
    assert [step.step for step in HOST_CLEANUP] == list(reversed(START_STEPS))


def test_host_cleanup_steps_are_table_undos_with_their_inputs() -> None:
    for step in HOST_CLEANUP:
        entry = step_for(step)
        assert (entry.input, entry.output) == (step.input, None), step.step


def test_host_cleanup_request_derives_each_input_from_the_target() -> None:
    target = HostTarget(container_id="c1", node="node-1", mode=NetworkMode.NONE)

    requests = {step.step: step.request(target) for step in HOST_CLEANUP}

    assert requests["task"] == ContainerRef(container_id="c1", node="node-1")
    assert requests["network"] == NetworkInput(
        container_id="c1", node="node-1", mode=NetworkMode.NONE
    )
    assert requests["mount"] == ReleaseRootfsInput(container_id="c1", node="node-1", holder="task")


def test_worker_refuses_to_start_when_the_table_differs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(STEPS, "locate_container")

    with (
        mock.patch.object(berth.worker, "Worker"),
        pytest.raises(StepTableMismatch, match="locate_container: not a step of the control"),
    ):
        berth.worker.control_worker(mock.Mock(), Settings(), mock.Mock())
