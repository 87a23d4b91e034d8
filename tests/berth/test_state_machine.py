"""Docker's container state machine, every state x every operation, without a database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from berth.contract import ContainerState, RestartPolicy
from berth.db.models import Container
from berth.errors import Conflict, Forbidden
from berth.restart_policy import RestartDecision
from berth.state_machine import (
    LIVE_STATES,
    Decision,
    Event,
    Facts,
    Hold,
    Verdict,
    busy,
    decide_abort,
    decide_begin_pause,
    decide_begin_remove,
    decide_begin_start,
    decide_begin_stop,
    decide_claim_restart,
    decide_commit_pause,
    decide_commit_restart,
    decide_commit_start,
    decide_end_exit,
    decide_export,
    decide_fail_removal,
    decide_fail_start,
    decide_finish_remove,
    decide_finish_stop,
    decide_lost_at_boot,
    decide_record_exit,
    hold_of,
    state_before_start,
)

S = ContainerState
ID = "c0ffee" * 10 + "beef"
NAME = "web-1"
PID = 4242
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
# Operations are ``<workflow id>@<run id>``.
MINE = "container-stop-web-1-on-node-1@run-1"
OTHER = "container-start-web-1-on-node-1@run-2"

BUSY = f"container {NAME} is busy: operation {OTHER} is in progress"
REMOVAL_IN_PROGRESS = f"removal of container {NAME} is already in progress"
START_PAUSED = "cannot start a paused container, try unpause instead"
START_REMOVED = "container is marked for removal and cannot be started"


def facts(state: ContainerState, operation: str | None = None, **more: Any) -> Facts:
    return Facts(id=ID, name=NAME, state=state, operation=operation, pid=PID, ip="10.0.0.2", **more)


Decide = Callable[[Facts], Decision]

# Every operation that may take a container (or, for export, read it).
BEGIN: dict[str, Decide] = {
    "start": lambda f: decide_begin_start(f, MINE),
    "stop": lambda f: decide_begin_stop(f, MINE, then_start=False),
    "restart": lambda f: decide_begin_stop(f, MINE, then_start=True),
    "pause": lambda f: decide_begin_pause(f, MINE, pause=True),
    "unpause": lambda f: decide_begin_pause(f, MINE, pause=False),
    "rm": lambda f: decide_begin_remove(f, MINE, force=False),
    "rm -f": lambda f: decide_begin_remove(f, MINE, force=True),
    "export": decide_export,
    "exit": lambda f: decide_record_exit(f, MINE, pid=PID, exit_code=3, now=NOW),
    "policy restart": lambda f: decide_claim_restart(f, MINE, restart_count=0),
}

# Every operation that ends a hold.
END: dict[str, Decide] = {
    "commit start": lambda f: decide_commit_start(f, MINE, PID, "10.0.0.3", None, NOW),
    "fail start": lambda f: decide_fail_start(f, MINE, "boom", 127, NOW),
    "abort": lambda f: decide_abort(f, MINE, "terminated"),
    "finish stop": lambda f: decide_finish_stop(f, MINE, 0, False, None, NOW),
    "finish stop, then start": lambda f: decide_finish_stop(f, MINE, 0, True, None, NOW),
    "commit restart": lambda f: decide_commit_restart(f, MINE, 137, PID + 1, NOW),
    "commit pause": lambda f: decide_commit_pause(f, MINE, pause=True),
    "commit unpause": lambda f: decide_commit_pause(f, MINE, pause=False),
    "finish remove": lambda f: decide_finish_remove(f, MINE, exit_code=None),
    "fail removal": lambda f: decide_fail_removal(f, MINE, "busy device"),
    "end exit": lambda f: decide_end_exit(f, MINE),
}

# An expectation: a verdict and the state it leaves (None: the state is not written), or a
# refusal with its error class and message.
Expect = tuple[Verdict, ContainerState | None] | tuple[type[Exception], str]

APPLY = Verdict.APPLY
NOT_MODIFIED = (Verdict.NOT_MODIFIED, None)
NOT_HELD = (Verdict.NOT_HELD, None)
CONVERGED = (Verdict.CONVERGED, None)


def is_running(state: ContainerState) -> str:
    return (
        f'cannot remove container "/{NAME}": container is {state.value}: '
        "stop the container before removing or force remove"
    )


# The container is free (no operation holds it).
FREE: dict[str, dict[ContainerState, Expect]] = {
    "start": {
        S.CREATED: (APPLY, S.STARTING),
        S.STARTING: (APPLY, S.STARTING),
        S.RUNNING: NOT_MODIFIED,
        S.PAUSED: (Conflict, START_PAUSED),
        S.STOPPING: (APPLY, S.STARTING),
        S.EXITED: (APPLY, S.STARTING),
        S.REMOVING: (Conflict, START_REMOVED),
        S.DEAD: (Conflict, START_REMOVED),
    },
    "stop": {
        S.CREATED: NOT_MODIFIED,
        S.STARTING: NOT_MODIFIED,
        S.RUNNING: (APPLY, S.STOPPING),
        S.PAUSED: (APPLY, S.STOPPING),
        S.STOPPING: NOT_MODIFIED,
        S.EXITED: NOT_MODIFIED,
        S.REMOVING: NOT_MODIFIED,
        S.DEAD: NOT_MODIFIED,
    },
    "restart": {
        S.CREATED: (APPLY, None),
        S.STARTING: (APPLY, None),
        S.RUNNING: (APPLY, S.STOPPING),
        S.PAUSED: (APPLY, S.STOPPING),
        S.STOPPING: (APPLY, None),
        S.EXITED: (APPLY, None),
        S.REMOVING: (Conflict, START_REMOVED),
        S.DEAD: (Conflict, START_REMOVED),
    },
    "pause": {
        **{state: (Conflict, f"Container {ID} is not running") for state in S},
        S.RUNNING: (APPLY, None),
        S.PAUSED: (Conflict, f"Container {ID} is already paused"),
    },
    "unpause": {
        **{state: (Conflict, f"Container {ID} is not paused") for state in S},
        S.PAUSED: (APPLY, None),
    },
    "rm": {
        **{state: (APPLY, S.REMOVING) for state in S},
        S.RUNNING: (Conflict, is_running(S.RUNNING)),
        S.PAUSED: (Conflict, is_running(S.PAUSED)),
    },
    "rm -f": {state: (APPLY, S.REMOVING) for state in S},
    "export": {
        **{state: (APPLY, None) for state in S},
        S.REMOVING: (Conflict, f"container {NAME} is marked for removal"),
        S.DEAD: (Conflict, f"container {NAME} is marked for removal"),
    },
    "exit": {
        **{state: NOT_HELD for state in S},
        S.RUNNING: (APPLY, S.EXITED),
        S.PAUSED: (APPLY, S.EXITED),
    },
    "policy restart": {**{state: NOT_HELD for state in S}, S.EXITED: (APPLY, S.STARTING)},
}

# Another operation holds the container.
HELD_BY_OTHER: dict[str, dict[ContainerState, Expect]] = {
    "start": {
        **{state: (Conflict, BUSY) for state in S},
        S.RUNNING: NOT_MODIFIED,
        S.PAUSED: (Conflict, START_PAUSED),
        S.REMOVING: (Conflict, START_REMOVED),
        S.DEAD: (Conflict, START_REMOVED),
    },
    **{
        op: {
            **{state: (Conflict, BUSY) for state in S},
            S.REMOVING: (Conflict, REMOVAL_IN_PROGRESS),
        }
        for op in ("stop", "restart", "pause", "unpause", "rm", "rm -f")
    },
    "export": FREE["export"],
    "exit": {state: NOT_HELD for state in S},
    "policy restart": {state: NOT_HELD for state in S},
}


def _check(decision: Decision, expect: Expect) -> None:
    first, second = expect
    if isinstance(first, Verdict):
        assert (decision.verdict, decision.error) == (first, None)
        assert decision.fields.get("state") == second
    else:
        assert decision.verdict is Verdict.REFUSED
        assert type(decision.error) is first
        assert decision.error is not None and decision.error.message == second
        assert not decision.fields and not decision.events and not decision.remove


def _cases(table: dict[str, dict[ContainerState, Expect]]) -> list[Any]:
    assert set(table) == set(BEGIN)
    return [
        pytest.param(op, state, table[op][state], id=f"{op}-{state.value}")
        for op in table
        for state in S
    ]


@pytest.mark.parametrize(("op", "state", "expect"), _cases(FREE))
def test_state_machine_free_container_each_state_each_operation_as_docker(
    op: str, state: ContainerState, expect: Expect
) -> None:
    _check(BEGIN[op](facts(state)), expect)


@pytest.mark.parametrize(("op", "state", "expect"), _cases(HELD_BY_OTHER))
def test_state_machine_held_by_another_each_state_each_operation_busy_or_docker(
    op: str, state: ContainerState, expect: Expect
) -> None:
    _check(BEGIN[op](facts(state, OTHER)), expect)


@pytest.mark.parametrize("state", list(S))
@pytest.mark.parametrize("op", sorted(set(BEGIN) - {"export"}))
def test_state_machine_begin_held_by_same_operation_converges(
    op: str, state: ContainerState
) -> None:
    assert BEGIN[op](facts(state, MINE)) == Decision(Verdict.CONVERGED)


@pytest.mark.parametrize("state", list(S))
@pytest.mark.parametrize("holder", [None, OTHER], ids=["free", "other"])
@pytest.mark.parametrize("op", list(END))
def test_state_machine_end_not_held_by_operation_changes_nothing(
    op: str, holder: str | None, state: ContainerState
) -> None:
    assert END[op](facts(state, holder)) == Decision(Verdict.NOT_HELD)


@pytest.mark.parametrize("state", list(S))
@pytest.mark.parametrize("op", list(END))
def test_state_machine_end_held_by_operation_applies(op: str, state: ContainerState) -> None:
    decision = END[op](facts(state, MINE))

    assert decision.verdict is Verdict.APPLY and decision.error is None
    assert set(decision.fields) <= COLUMNS


COLUMNS = set(Container.__table__.columns.keys())


@pytest.mark.parametrize("state", list(S))
@pytest.mark.parametrize("op", list(BEGIN))
def test_state_machine_every_field_written_is_a_container_column(
    op: str, state: ContainerState
) -> None:
    for holder in (None, OTHER, MINE):
        assert set(BEGIN[op](facts(state, holder)).fields) <= COLUMNS


# --- the holder rule ------------------------------------------------------------------------


def test_hold_of_no_operation_is_free() -> None:
    assert hold_of(facts(S.RUNNING), MINE) is Hold.FREE


def test_hold_of_same_operation_is_mine() -> None:
    assert hold_of(facts(S.RUNNING, MINE), MINE) is Hold.MINE


def test_hold_of_same_workflow_other_run_is_other() -> None:
    workflow_id = MINE.split("@")[0]

    assert hold_of(facts(S.RUNNING, f"{workflow_id}@run-9"), MINE) is Hold.OTHER


def test_hold_of_workflow_id_alone_matches_nothing() -> None:
    workflow_id = MINE.split("@")[0]

    assert hold_of(facts(S.RUNNING, MINE), workflow_id) is Hold.OTHER


def test_busy_removing_says_removal_in_progress() -> None:
    assert busy(facts(S.REMOVING, OTHER)).message == REMOVAL_IN_PROGRESS


def test_busy_other_state_names_the_operation() -> None:
    error = busy(facts(S.STOPPING, OTHER))

    assert (type(error), error.message) == (Conflict, BUSY)


# --- start ----------------------------------------------------------------------------------


def test_begin_start_free_sets_starting_and_resets_restart_manager() -> None:
    decision = decide_begin_start(facts(S.EXITED, restart_count=4), MINE)

    assert decision.fields == {
        "state": S.STARTING,
        "operation": MINE,
        "error": None,
        "restart_count": 0,
        "restart_backoff_ms": 0,
    }


def test_begin_start_held_by_parent_passes_hold_to_child() -> None:
    decision = decide_begin_start(facts(S.STARTING, OTHER), MINE, parent_operation=OTHER)

    assert decision == Decision(Verdict.APPLY, {"operation": MINE})


def test_begin_start_other_parent_is_busy() -> None:
    decision = decide_begin_start(facts(S.STARTING, OTHER), MINE, parent_operation="p@r")

    assert decision.error is not None and decision.error.message == BUSY


def test_begin_start_checkpoint_dir_is_forbidden() -> None:
    decision = decide_begin_start(facts(S.CREATED), MINE, checkpoint_dir="/tmp/cp")

    assert type(decision.error) is Forbidden
    assert decision.error.message == "custom checkpointdir is not supported"


def test_begin_start_paused_with_checkpoint_dir_conflict_first() -> None:
    decision = decide_begin_start(facts(S.PAUSED), MINE, checkpoint_dir="/tmp/cp")

    assert type(decision.error) is Conflict


def test_commit_start_records_running_task_and_start_event() -> None:
    decision = decide_commit_start(facts(S.STARTING, MINE), MINE, 99, "10.0.0.9", "SIGQUIT", NOW)

    assert decision.fields == {
        "stop_signal": "SIGQUIT",
        "state": S.RUNNING,
        "pid": 99,
        "ip": "10.0.0.9",
        "exit_code": 0,
        "error": None,
        "started_at": NOW,
        "has_been_started_before": True,
        "has_been_manually_stopped": False,
        "operation": None,
    }
    assert decision.events == (Event("start", {"pid": 99}),)


@pytest.mark.parametrize(
    ("started_before", "state"), [(False, S.CREATED), (True, S.EXITED)], ids=["new", "again"]
)
def test_fail_start_resets_to_state_before_start(started_before: bool, state: S) -> None:
    decision = decide_fail_start(
        facts(S.STARTING, MINE, has_been_started_before=started_before), MINE, "boom", 127, NOW
    )

    assert decision.fields == {
        "operation": None,
        "error": "boom",
        "exit_code": 127,
        "pid": None,
        "ip": None,
        "state": state,
        "finished_at": NOW,
    }
    assert decision.events == (Event("start-failed", {"error": "boom", "exitCode": 127}),)
    assert not decision.remove


def test_fail_start_auto_remove_destroys_the_container() -> None:
    decision = decide_fail_start(facts(S.STARTING, MINE, auto_remove=True), MINE, "x", 1, NOW)

    assert decision.events[-1] == Event("destroy") and decision.remove


@pytest.mark.parametrize("started_before", [False, True])
def test_state_before_start_exited_only_when_started_before(started_before: bool) -> None:
    state = state_before_start(facts(S.STARTING, has_been_started_before=started_before))

    assert state is (S.EXITED if started_before else S.CREATED)


@pytest.mark.parametrize(
    ("state", "after"),
    [(S.STARTING, S.CREATED), (S.STOPPING, S.RUNNING), (S.REMOVING, None), (S.PAUSED, None)],
)
def test_abort_releases_and_undoes_half_transition(state: S, after: S | None) -> None:
    decision = decide_abort(facts(state, MINE), MINE, "terminated")

    assert decision.fields.get("state") == after
    assert (decision.fields["operation"], decision.fields["error"]) == (None, "terminated")


# --- stop and restart -----------------------------------------------------------------------


def test_begin_stop_not_live_marks_manually_stopped() -> None:
    decision = decide_begin_stop(facts(S.EXITED), MINE, then_start=False)

    assert decision == Decision(Verdict.NOT_MODIFIED, {"has_been_manually_stopped": True})


def test_begin_stop_live_holds_and_clears_error() -> None:
    decision = decide_begin_stop(facts(S.RUNNING), MINE, then_start=False)

    assert decision.fields == {"operation": MINE, "error": None, "state": S.STOPPING}


def test_begin_restart_not_live_holds_without_state_change() -> None:
    decision = decide_begin_stop(facts(S.CREATED), MINE, then_start=True)

    assert decision.fields == {"operation": MINE, "error": None}


@pytest.mark.parametrize("state", list(S))
def test_finish_stop_records_exit_only_of_a_live_or_stopping_task(state: S) -> None:
    decision = decide_finish_stop(facts(state, MINE), MINE, 143, False, None, NOW)

    stopped = state in LIVE_STATES or state is S.STOPPING
    assert (decision.fields.get("exit_code"), decision.fields.get("pid", PID)) == (
        (143, None) if stopped else (None, PID)
    )
    assert decision.events == ((Event("die", {"exitCode": 143}), Event("stop")) if stopped else ())
    assert decision.fields["state"] is S.EXITED
    assert decision.fields["has_been_manually_stopped"] is True
    assert decision.fields["operation"] is None


def test_finish_stop_then_start_keeps_hold_and_resets_restart_manager() -> None:
    decision = decide_finish_stop(facts(S.STOPPING, MINE), MINE, 0, True, "late", NOW)

    assert "operation" not in decision.fields
    assert decision.fields["state"] is S.STARTING
    assert decision.fields["error"] == "late"
    assert (decision.fields["restart_count"], decision.fields["restart_backoff_ms"]) == (0, 0)
    assert not decision.remove


def test_finish_stop_auto_remove_destroys_after_stop_events() -> None:
    decision = decide_finish_stop(
        facts(S.STOPPING, MINE, auto_remove=True), MINE, 0, False, None, NOW
    )

    assert [e.action for e in decision.events] == ["die", "stop", "destroy"] and decision.remove


def test_finish_stop_then_start_ignores_auto_remove() -> None:
    decision = decide_finish_stop(
        facts(S.STOPPING, MINE, auto_remove=True), MINE, 0, True, None, NOW
    )

    assert not decision.remove


def test_commit_restart_keeps_ip_and_records_die_stop_start() -> None:
    decision = decide_commit_restart(facts(S.STOPPING, MINE, restart_count=3), MINE, 137, 77, NOW)

    assert decision.fields["ip"] == "10.0.0.2"
    assert (decision.fields["pid"], decision.fields["exit_code"]) == (77, 0)
    assert (decision.fields["state"], decision.fields["operation"]) == (S.RUNNING, None)
    assert (decision.fields["restart_count"], decision.fields["restart_backoff_ms"]) == (0, 0)
    assert decision.events == (
        Event("die", {"exitCode": 137}),
        Event("stop"),
        Event("start", {"pid": 77}),
    )


# --- pause and remove -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pause", "state", "action"), [(True, S.PAUSED, "pause"), (False, S.RUNNING, "unpause")]
)
def test_commit_pause_sets_state_releases_and_adds_event(
    pause: bool, state: S, action: str
) -> None:
    decision = decide_commit_pause(facts(S.RUNNING, MINE), MINE, pause)

    assert decision.fields == {"state": state, "operation": None}
    assert decision.events == (Event(action),)


def test_begin_remove_holds_and_marks_removing() -> None:
    decision = decide_begin_remove(facts(S.EXITED), MINE, force=False)

    assert decision.fields == {"operation": MINE, "state": S.REMOVING}


@pytest.mark.parametrize(
    ("exit_code", "actions"),
    [(None, ["destroy"]), (137, ["die", "destroy"])],
    ids=["stopped", "killed"],
)
def test_finish_remove_deletes_row_with_events(exit_code: int | None, actions: list[str]) -> None:
    decision = decide_finish_remove(facts(S.REMOVING, MINE), MINE, exit_code)

    assert [e.action for e in decision.events] == actions and decision.remove
    assert not decision.fields


def test_fail_removal_leaves_container_dead() -> None:
    decision = decide_fail_removal(facts(S.REMOVING, MINE), MINE, "device busy")

    assert decision.fields == {"operation": None, "state": S.DEAD, "error": "device busy"}


# --- exit and policy restart ----------------------------------------------------------------


def test_record_exit_other_pid_is_not_this_exits() -> None:
    decision = decide_record_exit(facts(S.RUNNING), MINE, pid=PID + 1, exit_code=0, now=NOW)

    assert decision == Decision(Verdict.NOT_HELD)


def test_record_exit_live_task_exited_holds_for_cleanup() -> None:
    decision = decide_record_exit(facts(S.RUNNING), MINE, pid=PID, exit_code=3, now=NOW)

    assert decision.fields == {
        "exit_code": 3,
        "pid": None,
        "ip": None,
        "finished_at": NOW,
        "state": S.EXITED,
        "operation": MINE,
        "restart_backoff_ms": 0,
    }
    assert decision.events == (Event("die", {"exitCode": 3}),)
    assert decision.restart == RestartDecision(False, 0)


def test_record_exit_always_policy_restarts_after_first_backoff() -> None:
    exited = facts(S.RUNNING, restart_policy=RestartPolicy(name="always"), started_at=NOW)

    decision = decide_record_exit(exited, MINE, pid=PID, exit_code=0, now=NOW)

    assert decision.restart == RestartDecision(True, 100)
    assert decision.fields["restart_backoff_ms"] == 100


def test_record_exit_backoff_doubles_for_a_short_run() -> None:
    exited = facts(
        S.RUNNING,
        restart_policy=RestartPolicy(name="always"),
        restart_backoff_ms=400,
        started_at=NOW - timedelta(seconds=1),
    )

    decision = decide_record_exit(exited, MINE, pid=PID, exit_code=0, now=NOW)

    assert decision.restart == RestartDecision(True, 800)


def test_record_exit_backoff_resets_after_a_long_run() -> None:
    exited = facts(
        S.RUNNING,
        restart_policy=RestartPolicy(name="always"),
        restart_backoff_ms=400,
        started_at=NOW - timedelta(minutes=1),
    )

    decision = decide_record_exit(exited, MINE, pid=PID, exit_code=0, now=NOW)

    assert decision.restart == RestartDecision(True, 100)


def test_record_exit_auto_remove_never_restarts() -> None:
    exited = facts(S.RUNNING, restart_policy=RestartPolicy(name="always"), auto_remove=True)

    decision = decide_record_exit(exited, MINE, pid=PID, exit_code=1, now=NOW)

    assert decision.restart == RestartDecision(False, 100)


def test_record_exit_unless_stopped_manually_stopped_stays_down() -> None:
    exited = facts(
        S.RUNNING,
        restart_policy=RestartPolicy(name="unless-stopped"),
        has_been_manually_stopped=True,
    )

    decision = decide_record_exit(exited, MINE, pid=PID, exit_code=1, now=NOW)

    assert decision.restart is not None and not decision.restart.restart


@pytest.mark.parametrize("auto_remove", [False, True])
def test_end_exit_releases_and_honours_auto_remove(auto_remove: bool) -> None:
    decision = decide_end_exit(facts(S.EXITED, MINE, auto_remove=auto_remove), MINE)

    assert decision.fields == {"operation": None}
    assert decision.remove is auto_remove


def test_claim_restart_counts_the_restart_and_holds() -> None:
    decision = decide_claim_restart(facts(S.EXITED, restart_count=2), MINE, restart_count=2)

    assert decision.fields == {"restart_count": 3, "operation": MINE, "state": S.STARTING}


def test_claim_restart_manually_stopped_is_not_claimed() -> None:
    decision = decide_claim_restart(
        facts(S.EXITED, has_been_manually_stopped=True), MINE, restart_count=0
    )

    assert decision == Decision(Verdict.NOT_HELD)


def test_claim_restart_other_restart_count_is_not_claimed() -> None:
    decision = decide_claim_restart(facts(S.EXITED, restart_count=1), MINE, restart_count=0)

    assert decision == Decision(Verdict.NOT_HELD)


def test_facts_are_frozen() -> None:
    with pytest.raises(AttributeError):
        facts(S.RUNNING).state = S.EXITED  # type: ignore[misc]
    assert replace(facts(S.RUNNING), state=S.EXITED).state is S.EXITED


# --- node boot ------------------------------------------------------------------------------

REBOOT = "node node-1 restarted: the task was lost with it"


@pytest.mark.parametrize("state", sorted(LIVE_STATES))
@pytest.mark.parametrize("policy", ["no", "on-failure"])
def test_lost_at_boot_policy_that_does_not_restart_records_exited_with_the_reason(
    state: ContainerState, policy: str
) -> None:
    lost = facts(state, restart_policy=RestartPolicy(name=policy), restart_backoff_ms=400)

    decision = decide_lost_at_boot(lost, MINE, 255, REBOOT, NOW)

    assert decision.verdict is Verdict.APPLY
    assert decision.fields == {
        "exit_code": 255,
        "pid": None,
        "ip": None,
        "finished_at": NOW,
        "state": S.EXITED,
        "error": REBOOT,
        "operation": MINE,
    }
    assert decision.events == (Event("die", {"exitCode": 255, "reason": REBOOT}),)
    assert decision.restart == RestartDecision(False, 400)
    assert set(decision.fields) <= COLUMNS


@pytest.mark.parametrize("policy", ["always", "unless-stopped"])
def test_lost_at_boot_policy_that_restarts_is_left_to_its_exit(policy: str) -> None:
    lost = facts(S.RUNNING, restart_policy=RestartPolicy(name=policy))

    decision = decide_lost_at_boot(lost, MINE, 255, REBOOT, NOW)

    assert decision == Decision(Verdict.NOT_MODIFIED, restart=RestartDecision(True, 0))


def test_lost_at_boot_auto_remove_is_left_to_its_exit_without_restart() -> None:
    lost = facts(S.RUNNING, restart_policy=RestartPolicy(name="no"), auto_remove=True)

    decision = decide_lost_at_boot(lost, MINE, 255, REBOOT, NOW)

    assert decision == Decision(Verdict.NOT_MODIFIED, restart=RestartDecision(False, 0))


@pytest.mark.parametrize("state", sorted(set(S) - LIVE_STATES))
def test_lost_at_boot_container_not_live_is_not_held(state: ContainerState) -> None:
    assert decide_lost_at_boot(facts(state), MINE, 255, REBOOT, NOW) == Decision(Verdict.NOT_HELD)


def test_lost_at_boot_held_by_the_same_boot_converges() -> None:
    assert decide_lost_at_boot(facts(S.EXITED, MINE), MINE, 255, REBOOT, NOW) == Decision(
        Verdict.CONVERGED
    )


def test_lost_at_boot_container_held_by_an_operation_is_not_held() -> None:
    assert decide_lost_at_boot(facts(S.RUNNING, OTHER), MINE, 255, REBOOT, NOW) == Decision(
        Verdict.NOT_HELD
    )
