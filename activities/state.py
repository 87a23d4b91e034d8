"""PostgreSQL transitions of a container's lifecycle: create, begin, commit and fail a start.

``begin_start`` runs the seed's pre-checks under a row lock and marks the container
``starting`` for one operation; ``commit_start`` and ``fail_start`` end that operation. Each is
one transaction and converges when run again for the same operation.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from berth.contract import (
    ContainerConfig,
    ContainerCreateInput,
    ContainerCreateOutput,
    ContainerStartOutput,
    ContainerState,
)
from berth.db.models import Container
from berth.db.repository import ContainerRepository, NodeRepository, SagaStepRepository
from berth.errors import Conflict, Forbidden, InvalidParameter, Unavailable
from berth.host_paths import check_bind_sources, check_host_path
from berth.steps import (
    AbortInput,
    BeginStartInput,
    CommitStartInput,
    ContainerLocation,
    FailStartInput,
    FailStartOutput,
    LocateInput,
    StartPlan,
    StepOutcome,
)


def _now() -> datetime:
    return datetime.now(UTC)


class StateActivities:
    """Lifecycle transitions in PostgreSQL; registered on the control worker and node agents."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        allowed_host_paths: Sequence[Path] = (),
        allowed_seccomp_paths: Sequence[Path] = (),
    ) -> None:
        self._sessions = sessions
        self._allowed_host_paths = allowed_host_paths
        self._allowed_seccomp_paths = allowed_seccomp_paths

    @activity.defn(name="create_container")
    async def create_container(self, request: ContainerCreateInput) -> ContainerCreateOutput:
        """Register a container on its node (the given one, or the one with fewest containers)."""
        config = request.config
        check_bind_sources(config.binds, self._allowed_host_paths, resolve=False)
        if config.seccomp_profile not in (None, "default", "unconfined"):
            # Lexically here; the node resolves it against its own allow-list at each start.
            check_host_path(
                config.seccomp_profile, self._allowed_seccomp_paths, "config.seccomp_profile"
            )
        async with self._sessions.begin() as session:
            containers = ContainerRepository(session)
            registry = NodeRepository(session)
            nodes = await registry.names()
            if config.node is not None and config.node not in nodes:
                raise InvalidParameter(f"node: no such node {config.node!r}")
            # Placement picks among nodes whose agent is alive (heartbeat), never a dead one.
            live = await registry.live_names()
            if config.node is None and not live:
                raise Unavailable("no node agent is running; start one first")
            if await containers.find(config.name) is not None:
                raise Conflict(f'Conflict. The container name "/{config.name}" is already in use')
            node = config.node or _least_loaded(live, await containers.list())
            container = Container(
                id=secrets.token_hex(32),
                name=config.name,
                image=config.image,
                node=node,
                config=config.model_dump(mode="json"),
                state=ContainerState.CREATED,
            )
            containers.add(container)
            containers.add_event(container, "create", {"image": config.image})
            try:
                await session.flush()
            except IntegrityError:
                raise Conflict(
                    f'Conflict. The container name "/{config.name}" is already in use'
                ) from None
        return ContainerCreateOutput(id=container.id, name=container.name, node=node)

    @activity.defn(name="begin_start")
    async def begin_start(self, request: BeginStartInput) -> StartPlan:
        """The seed's pre-checks, in its order, then the transition to ``starting``."""
        start = request.request
        if start.checkpoint:
            raise InvalidParameter("checkpoint is only supported in experimental mode")
        async with self._sessions.begin() as session:
            container = await ContainerRepository(session).get(start.container, for_update=True)
            state = ContainerState(container.state)
            plan = StartPlan(
                container_id=container.id,
                name=container.name,
                node=container.node,
                operation=request.operation,
                config=ContainerConfig.model_validate(container.config),
                pid=container.pid,
                ip=container.ip,
            )
            if container.operation == request.operation:
                return plan  # this operation already began (the activity ran again): converge
            if container.operation is not None and container.operation == request.parent_operation:
                container.operation = request.operation  # the parent's claim, handed to us
                return plan
            if state is ContainerState.PAUSED:
                raise Conflict("cannot start a paused container, try unpause instead")
            if state is ContainerState.RUNNING:
                return plan.model_copy(update={"not_modified": True})
            if state in (ContainerState.REMOVING, ContainerState.DEAD):
                raise Conflict("container is marked for removal and cannot be started")
            if container.operation is not None:
                raise Conflict(
                    f"container {container.name} is busy: operation {container.operation} "
                    "is in progress"
                )
            if start.checkpoint_dir:
                raise Forbidden("custom checkpointdir is not supported")
            container.state = ContainerState.STARTING
            container.operation = request.operation
            container.error = None
            # A manual start resets docker's restart manager (policy restarts never get here).
            container.restart_count = 0
            container.restart_backoff_ms = 0
        return plan

    @activity.defn(name="commit_start")
    async def commit_start(self, request: CommitStartInput) -> ContainerStartOutput:
        """Record the running container, its pid, the step journal and the ``start`` event."""
        plan = request.plan
        async with self._sessions.begin() as session:
            containers = ContainerRepository(session)
            container = await containers.get(plan.container_id, for_update=True)
            if container.operation == plan.operation:
                container.stop_signal = request.stop_signal
                mark_running(containers, container, request.pid, request.ip)
                await journal(session, plan.operation, plan.container_id, request.steps)
        return ContainerStartOutput(
            id=plan.container_id, name=plan.name, node=plan.node, pid=request.pid, ip=request.ip
        )

    @activity.defn(name="fail_start")
    async def fail_start(self, request: FailStartInput) -> FailStartOutput:
        """Record the error and exit code, reset the state, honour auto-remove."""
        plan = request.plan
        async with self._sessions.begin() as session:
            containers = ContainerRepository(session)
            container = await containers.find(plan.container_id, for_update=True)
            if container is None:
                return FailStartOutput(removed=True)
            await journal(session, plan.operation, plan.container_id, request.steps)
            if container.operation != plan.operation:
                return FailStartOutput(removed=False)
            container.operation = None
            container.error = request.error
            container.exit_code = request.exit_code
            container.pid = None
            container.ip = None
            container.state = _reset_state(container)
            container.finished_at = _now()
            containers.add_event(
                container, "start-failed", {"error": request.error, "exitCode": request.exit_code}
            )
            if plan.config.auto_remove:
                containers.add_event(container, "destroy")
                await containers.remove(container)
                return FailStartOutput(removed=True)
        return FailStartOutput(removed=False)

    @activity.defn(name="abort_operation")
    async def abort_operation(self, request: AbortInput) -> None:
        """Release the container when its node never ended the operation (e.g. terminated).

        A half-started container goes back to its state before the start; a half-stopped one
        stays ``running`` until its node's reconciler or exit monitor says otherwise.
        """
        async with self._sessions.begin() as session:
            container = await ContainerRepository(session).find(
                request.container_id, for_update=True
            )
            if container is None or container.operation != request.operation:
                return
            container.operation = None
            container.error = request.error
            if container.state == ContainerState.STARTING:
                container.state = _reset_state(container)
            elif container.state == ContainerState.STOPPING:
                container.state = ContainerState.RUNNING

    @activity.defn(name="locate_container")
    async def locate_container(self, request: LocateInput) -> ContainerLocation:
        """The container's id, name and node, to route its operation to the node's queue."""
        async with self._sessions() as session:
            container = await ContainerRepository(session).get(request.container)
        return ContainerLocation(
            container_id=container.id, name=container.name, node=container.node
        )


def mark_running(
    containers: ContainerRepository, container: Container, pid: int, ip: str | None
) -> None:
    """The container runs the task ``pid``: its operation ends (event ``start``)."""
    container.state = ContainerState.RUNNING
    container.pid = pid
    container.ip = ip
    container.exit_code = 0
    container.error = None
    container.started_at = _now()
    container.has_been_started_before = True
    container.has_been_manually_stopped = False
    container.operation = None
    containers.add_event(container, "start", {"pid": pid})


def _reset_state(container: Container) -> ContainerState:
    """A failed start leaves the container as it was before: never half-started."""
    if container.has_been_started_before:
        return ContainerState.EXITED
    return ContainerState.CREATED


def _least_loaded(nodes: list[str], containers: Any) -> str:
    counts = dict.fromkeys(nodes, 0)
    for container in containers:
        if container.node in counts:
            counts[container.node] += 1
    return min(nodes, key=lambda node: (counts[node], node))


async def journal(
    session: AsyncSession, operation: str, container_id: str, steps: list[StepOutcome]
) -> None:
    """Write how each step of ``operation`` ended to ``saga_steps`` (again: unchanged)."""
    saga_steps = SagaStepRepository(session)
    for outcome in steps:
        await saga_steps.record(
            operation, container_id, outcome.step, outcome.status, outcome.handle, outcome.error
        )
