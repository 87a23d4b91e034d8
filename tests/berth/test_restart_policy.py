"""Docker's restart-manager decisions, as a pure function."""

from __future__ import annotations

from datetime import timedelta

from berth.contract import RestartPolicy
from berth.restart_policy import decide_restart, restarts_at_boot

SHORT = timedelta(seconds=1)


def decide(policy: RestartPolicy, exit_code: int = 1, **overrides: object) -> tuple[bool, int]:
    fields: dict[str, object] = {
        "manually_stopped": False,
        "restart_count": 0,
        "backoff_ms": 0,
        "ran_for": SHORT,
    }
    fields.update(overrides)
    decision = decide_restart(policy, exit_code, **fields)  # type: ignore[arg-type]
    return decision.restart, decision.backoff_ms


def test_decide_restart_policy_no_never_restarts() -> None:
    assert decide(RestartPolicy(name="no")) == (False, 0)


def test_decide_restart_first_exit_waits_100_ms() -> None:
    assert decide(RestartPolicy(name="always"), 0) == (True, 100)


def test_decide_restart_quick_exits_double_the_backoff_up_to_a_minute() -> None:
    assert decide(RestartPolicy(name="always"), backoff_ms=100) == (True, 200)
    assert decide(RestartPolicy(name="always"), backoff_ms=51_200) == (True, 60_000)
    assert decide(RestartPolicy(name="always"), backoff_ms=60_000) == (True, 60_000)


def test_decide_restart_after_ten_seconds_running_resets_the_backoff() -> None:
    restart = decide(RestartPolicy(name="always"), backoff_ms=6400, ran_for=timedelta(seconds=10))
    assert restart == (True, 100)


def test_decide_restart_on_failure_stops_at_the_maximum() -> None:
    policy = RestartPolicy(name="on-failure", maximum_retry_count=2)
    assert decide(policy, restart_count=1)[0]
    assert not decide(policy, restart_count=2)[0]


def test_decide_restart_on_failure_ignores_exit_zero() -> None:
    assert not decide(RestartPolicy(name="on-failure"), 0)[0]


def test_decide_restart_unless_stopped_respects_a_manual_stop() -> None:
    assert decide(RestartPolicy(name="unless-stopped"))[0]
    assert not decide(RestartPolicy(name="unless-stopped"), manually_stopped=True)[0]


def test_restarts_at_boot_always_even_when_manually_stopped() -> None:
    assert restarts_at_boot(RestartPolicy(name="always"), manually_stopped=False)
    assert restarts_at_boot(RestartPolicy(name="always"), manually_stopped=True)


def test_restarts_at_boot_unless_stopped_only_when_not_manually_stopped() -> None:
    assert restarts_at_boot(RestartPolicy(name="unless-stopped"), manually_stopped=False)
    assert not restarts_at_boot(RestartPolicy(name="unless-stopped"), manually_stopped=True)


def test_restarts_at_boot_no_and_on_failure_stay_down() -> None:
    assert not restarts_at_boot(RestartPolicy(name="no"), manually_stopped=False)
    policy = RestartPolicy(name="on-failure", maximum_retry_count=3)
    assert not restarts_at_boot(policy, manually_stopped=False)
