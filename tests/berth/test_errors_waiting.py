"""What a transient ``Unavailable`` waits for (``berth.errors.Waiting``), as workflows read it."""

from __future__ import annotations

from temporalio.exceptions import ActivityError, ApplicationError, RetryState

from berth.errors import (
    DEFAULT_GRACE_SECONDS,
    System,
    Unavailable,
    Waiting,
    as_berth_error,
    waiting_of,
)


def _as_received(error: ApplicationError) -> ApplicationError:
    """The error as a workflow receives it: a plain ApplicationError with decoded details."""
    return ApplicationError(error.message, *error.details, type=error.type)


def test_waiting_of_unavailable_with_details_names_dependency_node_and_grace() -> None:
    sent = Unavailable.waiting(
        "create task x on node 'node-2': gone", Waiting("containerd", "node-2", 12)
    )

    waiting = waiting_of(_as_received(sent))

    assert waiting == Waiting("containerd", "node-2", 12.0)
    assert str(waiting) == "containerd on node-2"


def test_waiting_of_activity_error_reads_its_cause() -> None:
    cause = _as_received(Unavailable.waiting("x", Waiting("the CNI plugins", "node-1", 3)))
    wrapped = ActivityError(
        "activity failed",
        scheduled_event_id=1,
        started_event_id=2,
        identity="",
        activity_type="attach_network",
        activity_id="1",
        retry_state=RetryState.MAXIMUM_ATTEMPTS_REACHED,
    )
    wrapped.__cause__ = cause

    assert waiting_of(wrapped) == Waiting("the CNI plugins", "node-1", 3.0)


def test_waiting_of_unavailable_without_details_waits_the_default_grace() -> None:
    waiting = waiting_of(_as_received(Unavailable("node-2 has no running agent")))

    assert waiting is not None and waiting.grace_seconds == DEFAULT_GRACE_SECONDS


def test_waiting_of_other_error_classes_is_none() -> None:
    assert waiting_of(_as_received(System("runc failed"))) is None
    assert waiting_of(RuntimeError("not an application error")) is None


def test_as_berth_error_keeps_what_an_unavailable_waits_for() -> None:
    sent = Unavailable.waiting("x", Waiting("containerd", "node-3", 10))

    rebuilt = as_berth_error(_as_received(sent))

    assert isinstance(rebuilt, Unavailable)
    assert waiting_of(rebuilt) == Waiting("containerd", "node-3", 10.0)
