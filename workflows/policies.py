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

# A step that still fails with ``Unavailable`` once its retry policy gave up is run again by the
# workflow (``steps.run_step``) until the grace its error names (``berth.errors.Waiting``) has
# passed since the step was first scheduled, after these pauses; the saga's current details say
# what it waits for meanwhile.
GRACE_FIRST_PAUSE = timedelta(seconds=1)
GRACE_MAX_PAUSE = timedelta(seconds=5)
# The patch that marks histories whose workflows ride out Unavailable (older ones failed at once).
RIDE_OUT_PATCH = "ride-out-unavailable"
