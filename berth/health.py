"""Docker's health check rules: which check applies, its probe's argv, and the state machine.

Everything here is pure: callers read the records through ``berth.db``, and the node agent's
prober (``berth.health_prober``) runs the probes. The rules follow moby's ``daemon/health.go``:
a probe exiting 0 makes the container ``healthy`` and resets the failing streak; any other
result (a non-zero exit, a timeout, an exec that could not start) adds to the streak unless the
container is still ``starting`` within its start period; ``retries`` failures in a row make it
``unhealthy``. The last five results are kept, each with at most 4 KiB of output.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from berth.contract import ContainerConfig, ContainerState, HealthCheck
from berth.db.models import Container, ContainerHealth
from berth.steps import ContainerHealthOutput

STARTING = "starting"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
# moby's maxLogEntries and maxOutputLen.
MAX_LOG_ENTRIES = 5
MAX_OUTPUT_BYTES = 4096
# The exit code docker records for a probe that timed out or could not run.
PROBE_ERROR_EXIT_CODE = -1
_NANOSECONDS = 1_000_000_000


@dataclass(frozen=True)
class ProbeResult:
    """One probe: when it ran, how it exited (-1: timed out or never ran) and what it printed."""

    start: datetime
    end: datetime
    exit_code: int
    output: str

    def as_log_entry(self) -> dict[str, Any]:
        """The entry as docker inspect shows it in ``State.Health.Log``."""
        return {
            "Start": self.start.isoformat(),
            "End": self.end.isoformat(),
            "ExitCode": self.exit_code,
            "Output": self.output,
        }


def image_healthcheck(image_config: dict[str, Any]) -> HealthCheck | None:
    """The image's ``Healthcheck`` (durations in nanoseconds, zero meaning the default)."""
    raw = image_config.get("Healthcheck") or {}
    test = list(raw.get("Test") or [])
    if not test:
        return None
    fields: dict[str, Any] = {"test": test}
    for key, name in (("Interval", "interval"), ("Timeout", "timeout")):
        if raw.get(key):
            fields[name] = raw[key] / _NANOSECONDS
    if raw.get("StartPeriod"):
        fields["start_period"] = raw["StartPeriod"] / _NANOSECONDS
    if raw.get("Retries"):
        fields["retries"] = raw["Retries"]
    try:
        return HealthCheck.model_validate(fields)
    except ValidationError:
        return None  # an image with a malformed check runs unchecked rather than not at all


def effective_healthcheck(
    config: ContainerConfig, image_config: dict[str, Any] | None
) -> HealthCheck | None:
    """The check that applies: the container config's wins, else the image's; ``NONE`` is none."""
    check = config.healthcheck
    if check is None and image_config is not None:
        check = image_healthcheck(image_config)
    if check is None or check.disabled:
        return None
    return check


def probe_args(check: HealthCheck) -> list[str]:
    """The probe's argv inside the container: ``CMD`` as given, ``CMD-SHELL`` by ``/bin/sh -c``."""
    if check.test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", check.test[1]]
    return list(check.test[1:])


def truncate_output(raw: bytes) -> str:
    """At most 4 KiB of a probe's output, marked ``...`` when cut, as docker keeps it."""
    text = raw[:MAX_OUTPUT_BYTES].decode(errors="replace")
    return text + "..." if len(raw) > MAX_OUTPUT_BYTES else text


def apply_result(
    health: ContainerHealth, result: ProbeResult, check: HealthCheck, started_at: datetime | None
) -> None:
    """Fold one probe result into the health record (moby's ``handleProbeResult``)."""
    health.log = [*list(health.log or []), result.as_log_entry()][-MAX_LOG_ENTRIES:]
    if result.exit_code == 0:
        health.failing_streak = 0
        health.status = HEALTHY
        return
    # Failures within the start period do not count until a probe has passed.
    if (
        health.status == STARTING
        and started_at is not None
        and (result.start - started_at).total_seconds() < check.start_period
    ):
        return
    health.failing_streak += 1
    if health.failing_streak >= check.retries:
        health.status = UNHEALTHY


def has_health_check(declared: HealthCheck | None, probed: bool) -> bool:
    """Whether a container has a health check: one declared and not disabled, or none declared
    and its node agent has probed it (a check from its image)."""
    if declared is not None:
        return not declared.disabled
    return probed


def health_report(
    container: Container | None, record: ContainerHealth | None, pid: int | None
) -> ContainerHealthOutput:
    """The health of ``container`` (None: removed) for its task ``pid`` (None: whatever task
    runs now), from its health ``record``.

    ``has_check`` is True when the container config declares a check, or when the node agent
    has probed the container (a check from its image). ``status`` is ``starting`` until the
    task ``pid`` has a result; ``running`` says the container still runs that task.
    """
    if container is None:
        return ContainerHealthOutput(
            has_check=False, running=False, reason="the container was removed"
        )
    pid = pid if pid is not None else container.pid
    running = container.state is ContainerState.RUNNING and container.pid == pid
    reason = (
        ""
        if running
        else f"not running: {container.state} (exit code {container.exit_code}), "
        f"pid {container.pid} instead of {pid}"
    )
    config = ContainerConfig.model_validate(container.config)
    declared = config.healthcheck
    if not has_health_check(declared, probed=record is not None):
        return ContainerHealthOutput(has_check=False, running=running, reason=reason)
    interval = declared.interval if declared is not None else 30.0
    if record is None or record.pid != pid:
        return ContainerHealthOutput(
            has_check=True, running=running, status=STARTING, interval=interval, reason=reason
        )
    log = list(record.log or [])
    return ContainerHealthOutput(
        has_check=True,
        running=running,
        status=record.status,
        failing_streak=record.failing_streak,
        last_output=str(log[-1].get("Output", "")) if log else "",
        interval=interval,
        reason=reason,
    )


def describe_health(record: ContainerHealth | None) -> dict[str, Any] | None:
    """``State.Health`` as docker inspect shows it, or None when there is no check."""
    if record is None:
        return None
    return {
        "Status": record.status,
        "FailingStreak": record.failing_streak,
        "Log": list(record.log or []),
    }
