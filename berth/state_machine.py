"""Docker's container state machine as pure functions: no I/O, no SQLAlchemy, no clock.

Each ``decide_*`` takes what the container's row says (:class:`Facts`, read under its lock) and
one requested transition, and returns a :class:`Decision`: apply these fields and events (and
maybe delete the row), converge (this operation already did it), not modified, not this
operation's to change, or refused with the typed error and moby's wording. The activities in
``activities/state*.py`` read the row, ask here, and apply the answer in the same transaction.

A container is *held* by at most one lifecycle operation (``containers.operation``, of the form
``<workflow id>@<run id>``): a ``begin_*`` takes the hold, the matching ``commit``/``finish``/
``fail`` ends it, and every transition asks :func:`hold_of` the one holder rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from berth.contract import ContainerState, RestartPolicy
from berth.errors import BerthError, Conflict, Forbidden
from berth.restart_policy import RestartDecision, decide_restart, restarts_at_boot

# The states in which the container has a task that runs (paused is frozen, still alive).
LIVE_STATES = frozenset({ContainerState.RUNNING, ContainerState.PAUSED})
# The states from which nothing may start again: removal began, or failed.
REMOVAL_STATES = frozenset({ContainerState.REMOVING, ContainerState.DEAD})


@dataclass(frozen=True)
class Facts:
    """What the container's row says, read under its lock."""

    id: str
    name: str
    state: ContainerState
    # The operation that holds the container, if any.
    operation: str | None = None
    pid: int | None = None
    ip: str | None = None
    has_been_started_before: bool = False
    has_been_manually_stopped: bool = False
    restart_count: int = 0
    # The restart manager's back-off so far (0 after a reset).
    restart_backoff_ms: int = 0
    started_at: datetime | None = None
    # From the container's config: its restart policy, and removal once it stops (``--rm``).
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    auto_remove: bool = False


class Hold(StrEnum):
    """Who holds the container, seen from one operation."""

    FREE = "free"
    MINE = "mine"
    OTHER = "other"


class Verdict(StrEnum):
    """What a transition does."""

    # Allowed: set ``fields``, add ``events``, delete the row if ``remove``.
    APPLY = "apply"
    # This operation already made the transition (its activity ran again): change nothing.
    CONVERGED = "converged"
    # Already as asked (moby's NotModified, HTTP 304); ``fields`` may still note the request.
    NOT_MODIFIED = "not-modified"
    # Not this operation's to change (another holds it, or the facts moved on): change nothing.
    NOT_HELD = "not-held"
    # Refused: ``error`` is the typed error to raise.
    REFUSED = "refused"


@dataclass(frozen=True)
class Event:
    """A ``container_events`` row (``docker events``) a transition adds."""

    action: str
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """The answer to one requested transition."""

    verdict: Verdict
    # Column name -> new value, set in this order.
    fields: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    # Delete the row after the events (removal, auto-remove).
    remove: bool = False
    error: BerthError | None = None
    # After an exit: whether the restart policy restarts the container, after which back-off.
    restart: RestartDecision | None = None


CONVERGED = Decision(Verdict.CONVERGED)
NOT_HELD = Decision(Verdict.NOT_HELD)


def refuse(error: BerthError) -> Decision:
    return Decision(Verdict.REFUSED, error=error)


def hold_of(facts: Facts, operation: str) -> Hold:
    """The one holder rule: an operation holds the container iff the row names it exactly."""
    if facts.operation is None:
        return Hold.FREE
    return Hold.MINE if facts.operation == operation else Hold.OTHER


def busy(facts: Facts) -> Conflict:
    """The ``Conflict`` for a container another operation holds."""
    if facts.state is ContainerState.REMOVING:
        return Conflict(f"removal of container {facts.name} is already in progress")
    return Conflict(f"container {facts.name} is busy: operation {facts.operation} is in progress")


def state_before_start(facts: Facts) -> ContainerState:
    """A failed or abandoned start leaves the container as it was: never half-started."""
    return ContainerState.EXITED if facts.has_been_started_before else ContainerState.CREATED


def _claim(facts: Facts, operation: str) -> Decision | None:
    """The holder rule of a ``begin_*``: converge when held by us, refuse when by another."""
    hold = hold_of(facts, operation)
    if hold is Hold.MINE:
        return CONVERGED
    if hold is Hold.OTHER:
        return refuse(busy(facts))
    return None


def _with_auto_remove(facts: Facts, decision: Decision) -> Decision:
    if not facts.auto_remove:
        return decision
    return Decision(
        decision.verdict,
        decision.fields,
        (*decision.events, Event("destroy")),
        remove=True,
    )


def _stopped(exit_code: int, now: datetime) -> dict[str, Any]:
    """The task is gone: how it ended (docker's ``SetStopped``)."""
    return {"exit_code": exit_code, "pid": None, "ip": None, "finished_at": now}


def _running(pid: int, ip: str | None, now: datetime) -> dict[str, Any]:
    """The task ``pid`` runs and the operation ends (docker's ``SetRunning``)."""
    return {
        "state": ContainerState.RUNNING,
        "pid": pid,
        "ip": ip,
        "exit_code": 0,
        "error": None,
        "started_at": now,
        "has_been_started_before": True,
        "has_been_manually_stopped": False,
        "operation": None,
    }


# A manual start or restart resets docker's restart manager.
_RESTART_MANAGER_RESET = {"restart_count": 0, "restart_backoff_ms": 0}


# --- start ----------------------------------------------------------------------------------


def decide_begin_start(
    facts: Facts,
    operation: str,
    parent_operation: str | None = None,
    checkpoint_dir: str | None = None,
) -> Decision:
    """moby's ``ContainerStart`` pre-checks in its order, then the transition to ``starting``.

    A hold of the parent run (a policy restart's claim) passes to this operation.
    """
    hold = hold_of(facts, operation)
    if hold is Hold.MINE:
        return CONVERGED
    if hold is Hold.OTHER and facts.operation == parent_operation:
        return Decision(Verdict.APPLY, {"operation": operation})
    if facts.state is ContainerState.PAUSED:
        return refuse(Conflict("cannot start a paused container, try unpause instead"))
    if facts.state is ContainerState.RUNNING:
        return Decision(Verdict.NOT_MODIFIED)
    if facts.state in REMOVAL_STATES:
        return refuse(Conflict("container is marked for removal and cannot be started"))
    if hold is Hold.OTHER:
        return refuse(busy(facts))
    if checkpoint_dir:
        return refuse(Forbidden("custom checkpointdir is not supported"))
    return Decision(
        Verdict.APPLY,
        {
            "state": ContainerState.STARTING,
            "operation": operation,
            "error": None,
            **_RESTART_MANAGER_RESET,
        },
    )


def decide_commit_start(
    facts: Facts,
    operation: str,
    pid: int,
    ip: str | None,
    stop_signal: str | None,
    now: datetime,
) -> Decision:
    """The started task runs: event ``start``; the image's stop signal is kept for stops."""
    if hold_of(facts, operation) is not Hold.MINE:
        return NOT_HELD
    return Decision(
        Verdict.APPLY,
        {"stop_signal": stop_signal, **_running(pid, ip, now)},
        (Event("start", {"pid": pid}),),
    )


def decide_fail_start(
    facts: Facts, operation: str, error: str, exit_code: int, now: datetime
) -> Decision:
    """Record the error and exit code, reset the state (event ``start-failed``), auto-remove."""
    if hold_of(facts, operation) is not Hold.MINE:
        return NOT_HELD
    decision = Decision(
        Verdict.APPLY,
        {
            "operation": None,
            "error": error,
            "exit_code": exit_code,
            "pid": None,
            "ip": None,
            "state": state_before_start(facts),
            "finished_at": now,
        },
        (Event("start-failed", {"error": error, "exitCode": exit_code}),),
    )
    return _with_auto_remove(facts, decision)


def decide_abort(facts: Facts, operation: str, error: str) -> Decision:
    """Release a container whose operation's node never ended it (e.g. terminated).

    Half-started goes back to its state before the start; half-stopped stays ``running``
    until its node's reconciler or exit monitor says otherwise.
    """
    if hold_of(facts, operation) is not Hold.MINE:
        return NOT_HELD
    fields: dict[str, Any] = {"operation": None, "error": error}
    if facts.state is ContainerState.STARTING:
        fields["state"] = state_before_start(facts)
    elif facts.state is ContainerState.STOPPING:
        fields["state"] = ContainerState.RUNNING
    return Decision(Verdict.APPLY, fields)


# --- stop and restart -----------------------------------------------------------------------


def decide_begin_stop(facts: Facts, operation: str, then_start: bool) -> Decision:
    """Hold the container for a stop (or, ``then_start``, a restart).

    A container with no live task is not modified by a stop, which still marks it manually
    stopped: that also cancels a policy restart waiting out its back-off (docker does).
    """
    claimed = _claim(facts, operation)
    if claimed is not None:
        return claimed
    if then_start and facts.state in REMOVAL_STATES:
        return refuse(Conflict("container is marked for removal and cannot be started"))
    live = facts.state in LIVE_STATES
    if not live and not then_start:
        return Decision(Verdict.NOT_MODIFIED, {"has_been_manually_stopped": True})
    fields: dict[str, Any] = {"operation": operation, "error": None}
    if live:
        fields["state"] = ContainerState.STOPPING
    return Decision(Verdict.APPLY, fields)


def decide_finish_stop(
    facts: Facts,
    operation: str,
    exit_code: int,
    then_start: bool,
    error: str | None,
    now: datetime,
) -> Decision:
    """Record the exit (``die``, ``stop``); a restart keeps the hold, now ``starting``."""
    if hold_of(facts, operation) is not Hold.MINE:
        return NOT_HELD
    fields: dict[str, Any] = {}
    events: tuple[Event, ...] = ()
    if facts.state is ContainerState.STOPPING or facts.state in LIVE_STATES:
        fields.update(_stopped(exit_code, now))
        events = (Event("die", {"exitCode": exit_code}), Event("stop"))
    fields["error"] = error
    if then_start:
        fields.update({"state": ContainerState.STARTING, **_RESTART_MANAGER_RESET})
        return Decision(Verdict.APPLY, fields, events)
    fields.update(
        {"state": ContainerState.EXITED, "has_been_manually_stopped": True, "operation": None}
    )
    return _with_auto_remove(facts, Decision(Verdict.APPLY, fields, events))


def decide_commit_restart(
    facts: Facts, operation: str, exit_code: int, pid: int, now: datetime
) -> Decision:
    """A restart in place: the old task's exit (``die``, ``stop``), the new one running
    (``start``); the network and its IP are unchanged."""
    if hold_of(facts, operation) is not Hold.MINE:
        return NOT_HELD
    return Decision(
        Verdict.APPLY,
        {**_stopped(exit_code, now), **_RESTART_MANAGER_RESET, **_running(pid, facts.ip, now)},
        (Event("die", {"exitCode": exit_code}), Event("stop"), Event("start", {"pid": pid})),
    )


# --- pause ----------------------------------------------------------------------------------


def decide_begin_pause(facts: Facts, operation: str, pause: bool) -> Decision:
    """Hold a running container for pause, or a paused one for unpause (moby's messages)."""
    claimed = _claim(facts, operation)
    if claimed is not None:
        return claimed
    if pause and facts.state is ContainerState.PAUSED:
        return refuse(Conflict(f"Container {facts.id} is already paused"))
    if pause and facts.state is not ContainerState.RUNNING:
        return refuse(Conflict(f"Container {facts.id} is not running"))
    if not pause and facts.state is not ContainerState.PAUSED:
        return refuse(Conflict(f"Container {facts.id} is not paused"))
    return Decision(Verdict.APPLY, {"operation": operation})


def decide_commit_pause(facts: Facts, operation: str, pause: bool) -> Decision:
    """Record ``paused`` (event ``pause``) or ``running`` (event ``unpause``)."""
    if hold_of(facts, operation) is not Hold.MINE:
        return NOT_HELD
    return Decision(
        Verdict.APPLY,
        {"state": paused_state(pause), "operation": None},
        (Event("pause" if pause else "unpause"),),
    )


def paused_state(pause: bool) -> ContainerState:
    """The state a pause (or unpause) leaves."""
    return ContainerState.PAUSED if pause else ContainerState.RUNNING


# --- remove ---------------------------------------------------------------------------------


def decide_begin_remove(facts: Facts, operation: str, force: bool) -> Decision:
    """Refuse a live container without force; otherwise mark it ``removing``."""
    claimed = _claim(facts, operation)
    if claimed is not None:
        return claimed
    if facts.state in LIVE_STATES and not force:
        return refuse(
            Conflict(
                f'cannot remove container "/{facts.name}": container is {facts.state.value}: '
                "stop the container before removing or force remove"
            )
        )
    return Decision(Verdict.APPLY, {"operation": operation, "state": ContainerState.REMOVING})


def decide_finish_remove(facts: Facts, operation: str, exit_code: int | None) -> Decision:
    """Delete the row: events ``die`` (if a task was stopped, with its code) and ``destroy``."""
    if hold_of(facts, operation) is not Hold.MINE:
        return NOT_HELD
    died = () if exit_code is None else (Event("die", {"exitCode": exit_code}),)
    return Decision(Verdict.APPLY, events=(*died, Event("destroy")), remove=True)


def decide_fail_removal(facts: Facts, operation: str, error: str) -> Decision:
    """A removal that failed leaves the container ``dead`` (docker's removal error)."""
    if hold_of(facts, operation) is not Hold.MINE:
        return NOT_HELD
    return Decision(
        Verdict.APPLY, {"operation": None, "state": ContainerState.DEAD, "error": error}
    )


# --- export ---------------------------------------------------------------------------------


def decide_export(facts: Facts) -> Decision:
    """An export reads the rootfs beside any holder, but not of a container being removed."""
    if facts.state in REMOVAL_STATES:
        return refuse(Conflict(f"container {facts.name} is marked for removal"))
    return Decision(Verdict.APPLY)


# --- exit and policy restart ----------------------------------------------------------------


def decide_record_exit(
    facts: Facts, operation: str, pid: int, exit_code: int, now: datetime
) -> Decision:
    """A task that exited by itself: ``exited`` (event ``die``), held for its cleanup, and the
    restart manager's answer (``restart``; never for an auto-removed container).

    Not this exit's to record when an operation holds the container (that operation records
    it), the container is not live, or it no longer runs the task ``pid``.
    """
    hold = hold_of(facts, operation)
    if hold is Hold.MINE:
        return CONVERGED
    if hold is Hold.OTHER or facts.state not in LIVE_STATES or facts.pid != pid:
        return NOT_HELD
    manager = decide_restart(
        facts.restart_policy,
        exit_code,
        manually_stopped=facts.has_been_manually_stopped,
        restart_count=facts.restart_count,
        backoff_ms=facts.restart_backoff_ms,
        ran_for=now - facts.started_at if facts.started_at else timedelta(),
    )
    return Decision(
        Verdict.APPLY,
        {
            **_stopped(exit_code, now),
            "state": ContainerState.EXITED,
            "operation": operation,
            "restart_backoff_ms": manager.backoff_ms,
        },
        (Event("die", {"exitCode": exit_code}),),
        restart=RestartDecision(manager.restart and not facts.auto_remove, manager.backoff_ms),
    )


def decide_end_exit(facts: Facts, operation: str) -> Decision:
    """Release the container after its exit's cleanup; honour auto-remove."""
    if hold_of(facts, operation) is not Hold.MINE:
        return NOT_HELD
    return _with_auto_remove(facts, Decision(Verdict.APPLY, {"operation": None}))


def decide_claim_restart(facts: Facts, operation: str, restart_count: int) -> Decision:
    """Hold an exited container for a policy restart, unless something happened meanwhile.

    A manual stop, start, restart or removal after the exit (another holder, another state,
    the manual-stop mark, or another restart count) wins over the policy.
    """
    hold = hold_of(facts, operation)
    if hold is Hold.MINE:
        return CONVERGED
    if (
        hold is Hold.OTHER
        or facts.state is not ContainerState.EXITED
        or facts.has_been_manually_stopped
        or facts.restart_count != restart_count
    ):
        return NOT_HELD
    return Decision(
        Verdict.APPLY,
        {
            "restart_count": facts.restart_count + 1,
            "operation": operation,
            "state": ContainerState.STARTING,
        },
    )


# --- node boot ------------------------------------------------------------------------------


def decide_lost_at_boot(
    facts: Facts, operation: str, exit_code: int, reason: str, now: datetime
) -> Decision:
    """A live container whose task did not survive its node going down (a reboot: agent,
    containerd, shims and tasks gone), seen when the node's agent boots.

    As dockerd at start-up: one whose policy restarts it at boot (:func:`restarts_at_boot`) is
    left to its exit's workflow, which records the exit and restarts it by its policy (``restart``
    says so, nothing is applied here); an auto-removed one is left to that workflow too, which
    removes it. Any other is recorded ``exited`` now, with ``reason`` as its error (event ``die``),
    and held by the boot's ``operation`` while its host resources are released (ended by
    :func:`decide_end_exit`). Not this boot's to decide when an operation holds the container or
    it is not live.
    """
    hold = hold_of(facts, operation)
    if hold is Hold.MINE:
        return CONVERGED
    if hold is Hold.OTHER or facts.state not in LIVE_STATES:
        return NOT_HELD
    restart = restarts_at_boot(
        facts.restart_policy, manually_stopped=facts.has_been_manually_stopped
    )
    if facts.auto_remove or restart:
        return Decision(
            Verdict.NOT_MODIFIED,
            restart=RestartDecision(restart and not facts.auto_remove, facts.restart_backoff_ms),
        )
    return Decision(
        Verdict.APPLY,
        {
            **_stopped(exit_code, now),
            "state": ContainerState.EXITED,
            "error": reason,
            "operation": operation,
        },
        (Event("die", {"exitCode": exit_code, "reason": reason}),),
        restart=RestartDecision(False, facts.restart_backoff_ms),
    )
