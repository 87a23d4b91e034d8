"""Timeouts and retry policies of the saga's activities, in one place."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

# Errors that no retry can fix; Unavailable is the only retryable class.
PERMANENT = ["NotFound", "InvalidParameter", "Conflict", "NotModified", "Forbidden", "System"]

STATE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=5),
    maximum_attempts=10,
    non_retryable_error_types=PERMANENT,
)
STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=5),
    maximum_attempts=5,
    non_retryable_error_types=PERMANENT,
)
# Undo keeps trying through transient failures; each undo is idempotent.
UNDO_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=20,
)
STEP_TIMEOUT = timedelta(seconds=60)
