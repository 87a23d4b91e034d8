"""PostgreSQL transitions of a container's life after start: stop, restart, pause, remove, exit.

Like the start's (``activities/state.py``), each ``begin_*`` runs its pre-checks under the row
lock and marks the container as held by one operation (``containers.operation``); the matching
``finish_*`` ends that operation. A container held by another operation is a ``Conflict``, so
at most one lifecycle operation runs per container. Each transition is one transaction and
converges when run again for the same operation.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.state import journal, mark_running
from berth.contract import ContainerConfig, ContainerStartOutput, ContainerState
from berth.db.models import Container
from berth.db.repository import ContainerRepository
from berth.errors import Conflict
from berth.restart_policy import decide_restart
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

LIVE_STATES = (ContainerState.RUNNING, ContainerState.PAUSED)


def _now() -> datetime:
    return datetime.now(UTC)


def _holding(container: Container, operation: str) -> Holding:
    return Holding(
        container_id=container.id,
        name=container.name,
        node=container.node,
        operation=operation,
        config=ContainerConfig.model_validate(container.config),
        stop_signal=container.stop_signal,
        pid=container.pid,
    )


def _refuse_if_busy(container: Container, operation: str) -> None:
    if container.operation is not None and container.operation != operation:
        if container.state == ContainerState.REMOVING:
            raise Conflict(f"removal of container {container.name} is already in progress")
        raise Conflict(
            f"container {container.name} is busy: operation {container.operation} is in progress"
        )


def _record_stop(containers: ContainerRepository, container: Container, exit_code: int) -> None:
    """The task was stopped by an operation: its exit is recorded (events ``die``, ``stop``)."""
    _stopped(container, exit_code)
    containers.add_event(container, "die", {"exitCode": exit_code})
    containers.add_event(container, "stop")


def _stopped(container: Container, exit_code: int) -> None:
    """The task is gone: record how it ended (docker's ``SetStopped``)."""
    container.exit_code = exit_code
    container.pid = None
    container.ip = None
    container.finished_at = _now()


async def _auto_remove(containers: ContainerRepository, container: Container) -> bool:
    if not ContainerConfig.model_validate(container.config).auto_remove:
        return False
    containers.add_event(container, "destroy")
    await containers.remove(container)
    return True


class LifecycleStateActivities:
    """Stop, restart, pause, remove and exit transitions; registered on the node agents."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name="begin_stop")
    async def begin_stop(self, request: BeginStopInput) -> StopPlan:
        """Hold the container for a stop (or restart); a stopped one is not modified."""
        async with self._sessions.begin() as session:
            container = await ContainerRepository(session).get(request.container, for_update=True)
            holding = _holding(container, request.operation)
            if container.operation == request.operation:
                return StopPlan(holding=holding, was_running=True)  # ran again: converge
            _refuse_if_busy(container, request.operation)
            state = ContainerState(container.state)
            if state in (ContainerState.REMOVING, ContainerState.DEAD) and request.then_start:
                raise Conflict("container is marked for removal and cannot be started")
            was_running = state in LIVE_STATES
            if not was_running and not request.then_start:
                # Also cancels a policy restart that waits out its back-off (docker does).
                container.has_been_manually_stopped = True
                return StopPlan(holding=holding, was_running=False, not_modified=True)
            container.operation = request.operation
            container.error = None
            if was_running:
                container.state = ContainerState.STOPPING
        return StopPlan(holding=holding, was_running=was_running)

    @activity.defn(name="finish_stop")
    async def finish_stop(self, request: FinishStopInput) -> FinishOutput:
        """Record the exit (``die``, ``stop``); a restart keeps holding it, now ``starting``."""
        holding = request.holding
        async with self._sessions.begin() as session:
            containers = ContainerRepository(session)
            container = await containers.find(holding.container_id, for_update=True)
            if container is None:
                return FinishOutput(removed=True)
            if container.operation != holding.operation:
                return FinishOutput(removed=False)
            await journal(session, holding.operation, holding.container_id, request.steps)
            if container.state in (ContainerState.STOPPING, *LIVE_STATES):
                _record_stop(containers, container, request.exit_code)
            container.error = request.error
            if request.then_start:
                # docker restart resets the restart manager, like a manual start.
                container.state = ContainerState.STARTING
                container.restart_count = 0
                container.restart_backoff_ms = 0
                return FinishOutput(removed=False)
            container.state = ContainerState.EXITED
            container.has_been_manually_stopped = True
            container.operation = None
            return FinishOutput(removed=await _auto_remove(containers, container))

    @activity.defn(name="commit_restart")
    async def commit_restart(self, request: CommitRestartInput) -> ContainerStartOutput:
        """Record a restart in place: the old task's exit (``die``, ``stop``) and the new
        task running (``start``), in one transaction; the network and its IP are unchanged."""
        holding = request.holding
        async with self._sessions.begin() as session:
            containers = ContainerRepository(session)
            container = await containers.get(holding.container_id, for_update=True)
            ip = container.ip
            if container.operation == holding.operation:
                await journal(session, holding.operation, holding.container_id, request.steps)
                _record_stop(containers, container, request.exit_code)
                # docker restart resets the restart manager, like a manual start.
                container.restart_count = 0
                container.restart_backoff_ms = 0
                mark_running(containers, container, request.pid, ip)
        return ContainerStartOutput(
            id=holding.container_id, name=holding.name, node=holding.node, pid=request.pid, ip=ip
        )

    @activity.defn(name="begin_pause")
    async def begin_pause(self, request: BeginPauseInput) -> Holding:
        """Hold a running container for pause, or a paused one for unpause."""
        async with self._sessions.begin() as session:
            container = await ContainerRepository(session).get(request.container, for_update=True)
            holding = _holding(container, request.operation)
            if container.operation == request.operation:
                return holding
            _refuse_if_busy(container, request.operation)
            state = ContainerState(container.state)
            if request.pause and state is ContainerState.PAUSED:
                raise Conflict(f"Container {container.id} is already paused")
            if request.pause and state is not ContainerState.RUNNING:
                raise Conflict(f"Container {container.id} is not running")
            if not request.pause and state is not ContainerState.PAUSED:
                raise Conflict(f"Container {container.id} is not paused")
            container.operation = request.operation
        return holding

    @activity.defn(name="commit_pause")
    async def commit_pause(self, request: CommitPauseInput) -> ContainerState:
        """Record ``paused`` (event ``pause``) or ``running`` (event ``unpause``)."""
        holding = request.holding
        state = ContainerState.PAUSED if request.pause else ContainerState.RUNNING
        async with self._sessions.begin() as session:
            containers = ContainerRepository(session)
            container = await containers.get(holding.container_id, for_update=True)
            if container.operation == holding.operation:
                container.state = state
                container.operation = None
                containers.add_event(container, "pause" if request.pause else "unpause")
        return state

    @activity.defn(name="begin_remove")
    async def begin_remove(self, request: BeginRemoveInput) -> RemovePlan:
        """Refuse a running container without force; otherwise mark it ``removing``."""
        async with self._sessions.begin() as session:
            container = await ContainerRepository(session).get(request.container, for_update=True)
            holding = _holding(container, request.operation)
            state = ContainerState(container.state)
            if container.operation == request.operation:
                return RemovePlan(holding=holding, was_running=container.pid is not None)
            _refuse_if_busy(container, request.operation)
            was_running = state in LIVE_STATES
            if was_running and not request.force:
                raise Conflict(
                    f'cannot remove container "/{container.name}": container is {state.value}: '
                    "stop the container before removing or force remove"
                )
            container.operation = request.operation
            container.state = ContainerState.REMOVING
        return RemovePlan(holding=holding, was_running=was_running)

    @activity.defn(name="finish_remove")
    async def finish_remove(self, request: FinishRemoveInput) -> None:
        """Delete the record; events ``die`` (if it was running) and ``destroy``."""
        holding = request.holding
        async with self._sessions.begin() as session:
            containers = ContainerRepository(session)
            container = await containers.find(holding.container_id, for_update=True)
            if container is None or container.operation != holding.operation:
                return
            await journal(session, holding.operation, holding.container_id, request.steps)
            if request.exit_code is not None:
                containers.add_event(container, "die", {"exitCode": request.exit_code})
            containers.add_event(container, "destroy")
            await containers.remove(container)

    @activity.defn(name="fail_removal")
    async def fail_removal(self, request: FailOperationInput) -> None:
        """A removal that failed leaves the container ``dead`` (docker's removal error)."""
        async with self._sessions.begin() as session:
            container = await ContainerRepository(session).find(
                request.holding.container_id, for_update=True
            )
            if container is None or container.operation != request.holding.operation:
                return
            container.operation = None
            container.state = ContainerState.DEAD
            container.error = request.error

    @activity.defn(name="record_exit")
    async def record_exit(self, request: RecordExitInput) -> ExitPlan:
        """Record a task that exited by itself (``die``), hold it for cleanup, decide restart.

        Not this exit's to record (no plan) when an operation holds the container (that
        operation records it), or the container no longer runs the task with this pid.
        """
        async with self._sessions.begin() as session:
            containers = ContainerRepository(session)
            container = await containers.find(request.container_id, for_update=True)
            if container is None:
                return ExitPlan(holding=None)
            holding = _holding(container, request.operation)
            if container.operation == request.operation:
                return ExitPlan(holding=holding)  # ran again; the restart was decided before
            if (
                container.operation is not None
                or container.state not in LIVE_STATES
                or container.pid != request.pid
            ):
                return ExitPlan(holding=None)
            ran_for = _now() - container.started_at if container.started_at else timedelta()
            _stopped(container, request.exit_code)
            container.state = ContainerState.EXITED
            container.operation = request.operation
            containers.add_event(container, "die", {"exitCode": request.exit_code})
            decision = decide_restart(
                holding.config.restart_policy,
                request.exit_code,
                manually_stopped=container.has_been_manually_stopped,
                restart_count=container.restart_count,
                backoff_ms=container.restart_backoff_ms,
                ran_for=ran_for,
            )
            container.restart_backoff_ms = decision.backoff_ms
        return ExitPlan(
            holding=holding,
            restart=decision.restart and not holding.config.auto_remove,
            backoff_ms=decision.backoff_ms,
            restart_count=container.restart_count,
        )

    @activity.defn(name="end_exit")
    async def end_exit(self, request: EndExitInput) -> FinishOutput:
        """Release the container after its exit's cleanup; honour auto-remove."""
        holding = request.holding
        async with self._sessions.begin() as session:
            containers = ContainerRepository(session)
            container = await containers.find(holding.container_id, for_update=True)
            if container is None:
                return FinishOutput(removed=True)
            if container.operation != holding.operation:
                return FinishOutput(removed=False)
            await journal(session, holding.operation, holding.container_id, request.steps)
            container.operation = None
            return FinishOutput(removed=await _auto_remove(containers, container))

    @activity.defn(name="claim_policy_restart")
    async def claim_policy_restart(self, request: ClaimRestartInput) -> ClaimRestartOutput:
        """Hold the container for a policy restart, unless something else happened meanwhile.

        A manual stop, start, restart or removal after the exit wins over the policy.
        """
        async with self._sessions.begin() as session:
            container = await ContainerRepository(session).find(
                request.container_id, for_update=True
            )
            if container is None:
                return ClaimRestartOutput(claimed=False)
            if container.operation == request.operation:
                return ClaimRestartOutput(claimed=True, restart_count=container.restart_count)
            if (
                container.operation is not None
                or container.state != ContainerState.EXITED
                or container.has_been_manually_stopped
                or container.restart_count != request.restart_count
            ):
                return ClaimRestartOutput(claimed=False)
            container.restart_count += 1
            container.operation = request.operation
            container.state = ContainerState.STARTING
        return ClaimRestartOutput(claimed=True, restart_count=container.restart_count)
