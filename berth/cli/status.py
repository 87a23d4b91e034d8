"""docker ps's words for a container's state (``Up 5 minutes (healthy)``, ``Exited (137) 2 seconds
ago``) and go-units' human durations, from Berth's states and timestamps.

Pure: the caller passes ``now``, so the words are the same in a test and in a terminal.
"""

from __future__ import annotations

from datetime import datetime, timedelta

# Berth's states by docker's State.Status word (docker has no starting/stopping: the container
# is created-but-not-yet-running, or still running, while Berth's saga is in flight).
DOCKER_STATUS = {
    "created": "created",
    "starting": "created",
    "running": "running",
    "paused": "paused",
    "stopping": "running",
    "exited": "exited",
    "removing": "removing",
    "dead": "dead",
}


def human_duration(elapsed: timedelta) -> str:
    """go-units' ``HumanDuration``: ``Less than a second``, ``5 minutes``, ``About an hour``."""
    seconds = int(elapsed.total_seconds())
    if seconds < 1:
        return "Less than a second"
    if seconds == 1:
        return "1 second"
    if seconds < 60:
        return f"{seconds} seconds"
    minutes = seconds // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(elapsed.total_seconds() / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(elapsed.total_seconds() / 3600) // 24 // 365} years"


def ago(moment: datetime | None, now: datetime) -> str:
    """``5 minutes ago`` as docker ps's CREATED column says it; empty without a moment."""
    if moment is None:
        return ""
    return f"{human_duration(now - moment)} ago"


def health_words(health: str | None) -> str:
    """docker's ``Health.String()``: ``health: starting``, ``healthy``, ``unhealthy``; or none."""
    if not health or health == "none":
        return ""
    return "health: starting" if health == "starting" else health


def status_words(
    state: str,
    *,
    now: datetime,
    started_at: datetime | None,
    finished_at: datetime | None,
    exit_code: int | None,
    health: str | None = None,
) -> str:
    """docker ps's STATUS for a container (docker's ``State.String()``).

    ``state`` is Berth's state (``running``, ``exited``, ...); ``health`` the check's status for
    the current task (``starting``, ``healthy``, ``unhealthy``) or None without a check.
    """
    if state in ("running", "paused", "stopping"):
        up = f"Up {human_duration(now - started_at)}" if started_at else "Up"
        if state == "paused":
            return f"{up} (Paused)"
        words = health_words(health)
        return f"{up} ({words})" if words else up
    if state == "removing":
        return "Removal In Progress"
    if state == "dead":
        return "Dead"
    if state == "starting":
        return "Starting"
    if started_at is None:
        return "Created"
    if finished_at is None:
        return ""
    return f"Exited ({exit_code or 0}) {human_duration(now - finished_at)} ago"
