"""Docker's restart manager (moby ``restartmanager``), as a pure function over persisted state.

Docker keeps the manager's back-off in memory; Berth keeps it in the container's row
(``restart_backoff_ms``) so that the decision survives agent restarts and each exit is decided
by one durable workflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from berth.contract import RestartPolicy

DEFAULT_BACKOFF_MS = 100
MAX_BACKOFF_MS = 60_000
BACKOFF_MULTIPLIER = 2
# A container that ran this long resets the back-off, whatever its policy and exit status.
RESET_AFTER = timedelta(seconds=10)


@dataclass(frozen=True)
class RestartDecision:
    """Whether to restart, and the back-off to wait first (also the manager's new back-off)."""

    restart: bool
    backoff_ms: int


def decide_restart(
    policy: RestartPolicy,
    exit_code: int,
    *,
    manually_stopped: bool,
    restart_count: int,
    backoff_ms: int,
    ran_for: timedelta,
) -> RestartDecision:
    """Docker's ``ShouldRestart``: the back-off doubles from 100 ms up to 1 min.

    Args:
        policy: the container's restart policy.
        exit_code: the exit status of the task that just exited.
        manually_stopped: the user stopped the container (``unless-stopped`` then stays down).
        restart_count: restarts the policy has made since the last manual start.
        backoff_ms: the manager's back-off so far (0 after a reset).
        ran_for: how long the container ran before it exited.
    """
    if policy.name == "no":
        return RestartDecision(False, backoff_ms)
    if ran_for >= RESET_AFTER:
        backoff_ms = 0
    if backoff_ms == 0:
        backoff_ms = DEFAULT_BACKOFF_MS
    else:
        backoff_ms = min(backoff_ms * BACKOFF_MULTIPLIER, MAX_BACKOFF_MS)
    if policy.name == "always":
        restart = True
    elif policy.name == "unless-stopped":
        restart = not manually_stopped
    else:
        limit = policy.maximum_retry_count
        restart = exit_code != 0 and (limit == 0 or restart_count < limit)
    return RestartDecision(restart, backoff_ms)


def restarts_at_boot(policy: RestartPolicy, *, manually_stopped: bool) -> bool:
    """Whether a container that ran when its node went down starts again when the node is back.

    dockerd's start-up: ``always``, and ``unless-stopped`` unless the user stopped it. ``no``
    and ``on-failure`` stay down: the reboot is no failure of the container (dockerd restores
    such a container with exit code 0, which ``on-failure`` does not restart).
    """
    if policy.name == "always":
        return True
    return policy.name == "unless-stopped" and not manually_stopped
