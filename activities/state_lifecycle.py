"""PostgreSQL transitions of a container's life after start: stop, restart, pause, remove, exit.

Like the start's (``activities/state.py``), each ``begin_*`` runs its pre-checks under the row
lock and marks the container as held by one operation (``containers.operation``); the matching
``finish_*`` ends that operation. A container held by another operation is a ``Conflict``, so
at most one lifecycle operation runs per container. Each transition is one transaction and
converges when run again for the same operation.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from berth.activities.state import Journal, Transition, transition, transition_if_exists
from berth.contract import ContainerConfig, ContainerStartOutput, ContainerState
from berth.state_machine import (
    LIVE_STATES,
    Verdict,
    decide_begin_pause,
    decide_begin_remove,
    decide_begin_stop,
    decide_claim_restart,
    decide_commit_pause,
    decide_commit_restart,
    decide_end_exit,
    decide_fail_removal,
    decide_finish_remove,
    decide_finish_stop,
    decide_record_exit,
    paused_state,
)
from berth.steps import (
    BeginPauseInput,
    BeginRemoveInput,
    BeginStopInput,
    ClaimRestartInput,
    ClaimRestartOutput,
    CommitPauseInput,
    CommitRestartInput,
    EndExitInput,
    ExitPlan,
    FailOperationInput,
    FinishOutput,
    FinishRemoveInput,
    FinishStopInput,
    Holding,
    RecordExitInput,
    RemovePlan,
    StopPlan,
)


def _holding(done: Transition, operation: str) -> Holding:
    """What the operation's steps need; the pid of the task when the operation began."""
    return Holding(
        container_id=done.container.id,
        name=done.container.name,
        node=done.container.node,
        operation=operation,
        config=ContainerConfig.model_validate(done.container.config),
        stop_signal=done.container.stop_signal,
        pid=done.before.pid,
    )


def _now() -> datetime:
    return datetime.now(UTC)


class LifecycleStateActivities:
    """Stop, restart, pause, remove and exit transitions; registered on the node agents."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name="begin_stop")
    async def begin_stop(self, request: BeginStopInput) -> StopPlan:
        """Hold the container for a stop (or restart); a stopped one is not modified."""
        done = await transition(
            self._sessions,
            request.container,
            lambda facts: decide_begin_stop(facts, request.operation, request.then_start),
        )
        holding = _holding(done, request.operation)
        if done.decision.verdict is Verdict.CONVERGED:
            return StopPlan(holding=holding, was_running=True)
        return StopPlan(
            holding=holding,
            was_running=done.before.state in LIVE_STATES,
            not_modified=done.decision.verdict is Verdict.NOT_MODIFIED,
        )

    @activity.defn(name="finish_stop")
    async def finish_stop(self, request: FinishStopInput) -> FinishOutput:
        """Record the exit (``die``, ``stop``); a restart keeps holding it, now ``starting``."""
        holding = request.holding
        done = await transition_if_exists(
            self._sessions,
            holding.container_id,
            lambda facts: decide_finish_stop(
                facts,
                holding.operation,
                request.exit_code,
                request.then_start,
                request.error,
                _now(),
            ),
            Journal(holding.operation, request.steps),
        )
        return FinishOutput(removed=done is None or done.decision.remove)

    @activity.defn(name="commit_restart")
    async def commit_restart(self, request: CommitRestartInput) -> ContainerStartOutput:
        """Record a restart in place: the old task's exit (``die``, ``stop``) and the new
        task running (``start``), in one transaction; the network and its IP are unchanged."""
        holding = request.holding
        done = await transition(
            self._sessions,
            holding.container_id,
            lambda facts: decide_commit_restart(
                facts, holding.operation, request.exit_code, request.pid, _now()
            ),
            Journal(holding.operation, request.steps),
        )
        return ContainerStartOutput(
            id=holding.container_id,
            name=holding.name,
            node=holding.node,
            pid=request.pid,
            ip=done.before.ip,
        )

    @activity.defn(name="begin_pause")
    async def begin_pause(self, request: BeginPauseInput) -> Holding:
        """Hold a running container for pause, or a paused one for unpause."""
        done = await transition(
            self._sessions,
            request.container,
            lambda facts: decide_begin_pause(facts, request.operation, request.pause),
        )
        return _holding(done, request.operation)

    @activity.defn(name="commit_pause")
    async def commit_pause(self, request: CommitPauseInput) -> ContainerState:
        """Record ``paused`` (event ``pause``) or ``running`` (event ``unpause``)."""
        await transition(
            self._sessions,
            request.holding.container_id,
            lambda facts: decide_commit_pause(facts, request.holding.operation, request.pause),
        )
        return paused_state(request.pause)

    @activity.defn(name="begin_remove")
    async def begin_remove(self, request: BeginRemoveInput) -> RemovePlan:
        """Refuse a running container without force; otherwise mark it ``removing``."""
        done = await transition(
            self._sessions,
            request.container,
            lambda facts: decide_begin_remove(facts, request.operation, request.force),
        )
        if done.decision.verdict is Verdict.CONVERGED:
            was_running = done.before.pid is not None
        else:
            was_running = done.before.state in LIVE_STATES
        return RemovePlan(holding=_holding(done, request.operation), was_running=was_running)

    @activity.defn(name="finish_remove")
    async def finish_remove(self, request: FinishRemoveInput) -> None:
        """Delete the record; events ``die`` (if it was running) and ``destroy``."""
        holding = request.holding
        await transition_if_exists(
            self._sessions,
            holding.container_id,
            lambda facts: decide_finish_remove(facts, holding.operation, request.exit_code),
            Journal(holding.operation, request.steps),
        )

    @activity.defn(name="fail_removal")
    async def fail_removal(self, request: FailOperationInput) -> None:
        """A removal that failed leaves the container ``dead`` (docker's removal error)."""
        await transition_if_exists(
            self._sessions,
            request.holding.container_id,
            lambda facts: decide_fail_removal(facts, request.holding.operation, request.error),
        )

    @activity.defn(name="record_exit")
    async def record_exit(self, request: RecordExitInput) -> ExitPlan:
        """Record a task that exited by itself (``die``), hold it for cleanup, decide restart.

        Not this exit's to record (no plan) when an operation holds the container (that
        operation records it), or the container no longer runs the task with this pid.
        """
        done = await transition_if_exists(
            self._sessions,
            request.container_id,
            lambda facts: decide_record_exit(
                facts, request.operation, request.pid, request.exit_code, _now()
            ),
        )
        if done is None or done.decision.verdict is Verdict.NOT_HELD:
            return ExitPlan(holding=None)
        holding = _holding(done, request.operation)
        restart = done.decision.restart
        if restart is None:
            return ExitPlan(holding=holding)  # ran again; the restart was decided before
        return ExitPlan(
            holding=holding,
            restart=restart.restart,
            backoff_ms=restart.backoff_ms,
            restart_count=done.container.restart_count,
        )

    @activity.defn(name="end_exit")
    async def end_exit(self, request: EndExitInput) -> FinishOutput:
        """Release the container after its exit's cleanup; honour auto-remove."""
        holding = request.holding
        done = await transition_if_exists(
            self._sessions,
            holding.container_id,
            lambda facts: decide_end_exit(facts, holding.operation),
            Journal(holding.operation, request.steps),
        )
        return FinishOutput(removed=done is None or done.decision.remove)

    @activity.defn(name="claim_policy_restart")
    async def claim_policy_restart(self, request: ClaimRestartInput) -> ClaimRestartOutput:
        """Hold the container for a policy restart, unless something else happened meanwhile.

        A manual stop, start, restart or removal after the exit wins over the policy.
        """
        done = await transition_if_exists(
            self._sessions,
            request.container_id,
            lambda facts: decide_claim_restart(facts, request.operation, request.restart_count),
        )
        if done is None or done.decision.verdict is Verdict.NOT_HELD:
            return ClaimRestartOutput(claimed=False)
        return ClaimRestartOutput(claimed=True, restart_count=done.container.restart_count)
