"""The error taxonomy: type names, retryability, and exit codes from runtime errors."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

from berth.errors import (
    Conflict,
    NotFound,
    Unavailable,
    Unknown,
    as_berth_error,
    exit_code_from_runtime_error,
)


def test_error_type_is_its_class_name_and_only_unavailable_retries() -> None:
    assert (NotFound("x").type, NotFound("x").non_retryable) == ("NotFound", True)
    assert (Unavailable("x").type, Unavailable("x").non_retryable) == ("Unavailable", False)


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ('exec: "nope": executable file not found in $PATH', 127),
        ("exec /no/such: no such file or directory", 127),
        ("mount src: not a directory", 127),
        ("exec /etc/passwd: permission denied", 126),
        ("exec /tmp: is a directory", 126),
        ("cgroup: something else", 128),
    ],
)
def test_exit_code_from_runtime_error_follows_moby(message: str, code: int) -> None:
    assert exit_code_from_runtime_error(message) == code


def test_as_berth_error_unwraps_an_activity_failure_to_its_type() -> None:
    activity_error = ActivityError(
        "activity failed",
        scheduled_event_id=1,
        started_event_id=2,
        identity="w",
        activity_type="begin_start",
        activity_id="1",
        retry_state=RetryState.NON_RETRYABLE_FAILURE,
    )
    activity_error.__cause__ = ApplicationError("busy", type="Conflict")

    typed = as_berth_error(activity_error)

    assert isinstance(typed, Conflict)
    assert typed.message == "busy"


def test_as_berth_error_of_an_untyped_failure_is_unknown() -> None:
    assert isinstance(as_berth_error(RuntimeError("boom")), Unknown)
