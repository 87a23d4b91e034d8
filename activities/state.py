"""PostgreSQL transitions of a container's lifecycle: create, begin, commit and fail a start.

``begin_start`` runs the seed's pre-checks under a row lock, refuses a fixed host port that
another container publishes on the node or that something on the node holds (``Conflict``
before the saga makes anything; the network step's claim stays the authority when two starts
race) and marks the container ``starting`` for one operation; ``commit_start`` and
``fail_start`` end that operation. Each is one transaction and converges when run again for the
same operation.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from berth import capabilities
from berth.contract import (
    ContainerConfig,
    ContainerCreateInput,
    ContainerCreateOutput,
    ContainerStartOutput,
    ContainerState,
    NetworkMode,
    RestartPolicy,
)
from berth.db.models import Container
from berth.db.port_repository import PortRepository
from berth.db.repository import ContainerRepository, NodeRepository, SagaStepRepository
from berth.db.volume_repository import VolumeRepository
from berth.errors import Conflict, InvalidParameter, Unavailable
from berth.host_paths import check_bind_sources, check_host_path
from berth.runtime.ports import port_free_on_node
from berth.state_machine import (
    Decision,
    Facts,
    Verdict,
    decide_abort,
    decide_begin_start,
    decide_commit_start,
    decide_fail_start,
)
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
        allowed_capabilities: Sequence[str] = (),
        forwarded_ports: Callable[[], Mapping[tuple[str, int], str]] | None = None,
    ) -> None:
        """The transitions over ``sessions``, with the node's allow-lists.

        Args:
            forwarded_ports: on a node agent, the host ports portmap forwards on this host
                (``CniNetwork.forwarded_ports``); a start then bind-tests its fixed host ports
                before anything is made. None (the control worker): no host is probed.
        """
        self._sessions = sessions
        self._allowed_host_paths = allowed_host_paths
        self._allowed_seccomp_paths = allowed_seccomp_paths
        self._allowed_capabilities = allowed_capabilities
        self._forwarded_ports = forwarded_ports

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
        # Here too, before anything is recorded; the node checks its own setting at each start.
        capabilities.check_permitted(
            config.cap_add, config.cap_drop, self._allowed_capabilities, "at create"
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
            # Like kube-scheduler's NodePorts filter, placement skips a node where another
            # container publishes a wanted host port; a named node is not refused here (docker
            # creates such a container too: the old one may be gone by its start).
            busy = await PortRepository(session).nodes_publishing(config.ports)
            node = config.node or _least_loaded(
                [name for name in live if name not in busy] or live, await containers.list()
            )
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
            # A named volume is recorded on the node now (docker creates it at create); the
            # node makes its directory at the container's first start.
            for volume in config.volumes:
                await VolumeRepository(session).ensure(node, volume.name)
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
        done = await transition(
            self._sessions,
            start.container,
            lambda facts: decide_begin_start(
                facts, request.operation, request.parent_operation, start.checkpoint_dir
            ),
            check=self._host_ports_available,
        )
        return StartPlan(
            container_id=done.container.id,
            name=done.container.name,
            node=done.container.node,
            operation=request.operation,
            config=ContainerConfig.model_validate(done.container.config),
            not_modified=done.decision.verdict is Verdict.NOT_MODIFIED,
            pid=done.before.pid,
            ip=done.before.ip,
        )

    async def _host_ports_available(
        self, session: AsyncSession, container: Container, before: Facts, decision: Decision
    ) -> None:
        """Refuse a fresh start whose fixed host ports are taken on its node (under its lock).

        Only a start that takes a free container: one taking over a hold (a policy restart)
        or run again after it applied must not be refused half way by a port.

        Raises:
            Conflict: a fixed host port is published by another container on the node or held.
        """
        if decision.verdict is not Verdict.APPLY or before.operation is not None:
            return
        if not any(port.get("host_port") for port in container.config.get("ports") or ()):
            return  # most starts: nothing to check, and no config to parse
        config = ContainerConfig.model_validate(container.config)
        fixed = [binding for binding in config.ports if binding.host_port]
        if not fixed or config.network_mode is not NetworkMode.BRIDGE:
            return
        forwarded = (
            await asyncio.to_thread(self._forwarded_ports) if self._forwarded_ports else None
        )

        def recorded_only(host_ip: str, port: int, protocol: str) -> bool:
            return True

        await PortRepository(session).check_available(
            container.node,
            container.id,
            fixed,
            recorded_only if forwarded is None else port_free_on_node(forwarded, container.id),
        )

    @activity.defn(name="commit_start")
    async def commit_start(self, request: CommitStartInput) -> ContainerStartOutput:
        """Record the running container, its pid, the step journal and the ``start`` event."""
        plan = request.plan
        await transition(
            self._sessions,
            plan.container_id,
            lambda facts: decide_commit_start(
                facts, plan.operation, request.pid, request.ip, request.stop_signal, _now()
            ),
            Journal(plan.operation, request.steps),
        )
        return ContainerStartOutput(
            id=plan.container_id, name=plan.name, node=plan.node, pid=request.pid, ip=request.ip
        )

    @activity.defn(name="fail_start")
    async def fail_start(self, request: FailStartInput) -> FailStartOutput:
        """Record the error and exit code, reset the state, honour auto-remove."""
        plan = request.plan
        done = await transition_if_exists(
            self._sessions,
            plan.container_id,
            lambda facts: decide_fail_start(
                facts, plan.operation, request.error, request.exit_code, _now()
            ),
            # The steps of a failed start are journaled even when it lost the container.
            Journal(plan.operation, request.steps, always=True),
        )
        return FailStartOutput(removed=done is None or done.decision.remove)

    @activity.defn(name="abort_operation")
    async def abort_operation(self, request: AbortInput) -> None:
        """Release the container when its node never ended the operation (e.g. terminated).

        A half-started container goes back to its state before the start; a half-stopped one
        stays ``running`` until its node's reconciler or exit monitor says otherwise.
        """
        await transition_if_exists(
            self._sessions,
            request.container_id,
            lambda facts: decide_abort(facts, request.operation, request.error),
        )

    @activity.defn(name="locate_container")
    async def locate_container(self, request: LocateInput) -> ContainerLocation:
        """The container's id, name and node, to route its operation to the node's queue."""
        async with self._sessions() as session:
            container = await ContainerRepository(session).get(request.container)
        return ContainerLocation(
            container_id=container.id, name=container.name, node=container.node
        )


class Journal(NamedTuple):
    """An operation's saga steps, written with the transition that ends it: when it still
    holds the container, or (``always``) whenever the container exists."""

    operation: str
    steps: list[StepOutcome]
    always: bool = False


class Transition(NamedTuple):
    """One applied decision: the row after it, what the row said before, the decision."""

    container: Container
    before: Facts
    decision: Decision


# A test run under the row lock once the decision is made, before it is applied: raising
# refuses the transition (the transaction rolls back).
Check = Callable[[AsyncSession, Container, Facts, Decision], Awaitable[None]]


async def transition(
    sessions: async_sessionmaker[AsyncSession],
    container: str,
    decide: Callable[[Facts], Decision],
    steps: Journal | None = None,
    check: Check | None = None,
) -> Transition:
    """One state transition of ``container`` (id or name; ``NotFound`` if there is none)."""
    done = await _transition(sessions, container, decide, steps, must_exist=True, check=check)
    assert done is not None  # the repository raised NotFound otherwise
    return done


async def transition_if_exists(
    sessions: async_sessionmaker[AsyncSession],
    container: str,
    decide: Callable[[Facts], Decision],
    steps: Journal | None = None,
) -> Transition | None:
    """One state transition of ``container``; None when it no longer exists (removed)."""
    return await _transition(sessions, container, decide, steps, must_exist=False)


async def _transition(
    sessions: async_sessionmaker[AsyncSession],
    ref: str,
    decide: Callable[[Facts], Decision],
    steps: Journal | None,
    must_exist: bool,
    check: Check | None = None,
) -> Transition | None:
    """Lock the row, ask the state machine, apply its decision: one transaction."""
    async with sessions.begin() as session:
        containers = ContainerRepository(session)
        if must_exist:
            container: Container | None = await containers.get(ref, for_update=True)
        else:
            container = await containers.find(ref, for_update=True)
        if container is None:
            return None
        before = facts_of(container)
        decision = decide(before)
        if check is not None:
            await check(session, container, before, decision)
        if steps is not None and (steps.always or decision.verdict is Verdict.APPLY):
            await journal(session, steps.operation, container.id, steps.steps)
        await apply_decision(containers, container, decision)
    return Transition(container, before, decision)


def facts_of(container: Container) -> Facts:
    """What the state machine decides from: the row, read under its lock."""
    config = container.config
    return Facts(
        id=container.id,
        name=container.name,
        state=ContainerState(container.state),
        operation=container.operation,
        pid=container.pid,
        ip=container.ip,
        has_been_started_before=container.has_been_started_before,
        has_been_manually_stopped=container.has_been_manually_stopped,
        restart_count=container.restart_count,
        restart_backoff_ms=container.restart_backoff_ms,
        started_at=container.started_at,
        restart_policy=RestartPolicy.model_validate(config.get("restart_policy") or {}),
        auto_remove=bool(config.get("auto_remove", False)),
    )


async def apply_decision(
    containers: ContainerRepository, container: Container, decision: Decision
) -> None:
    """Apply the state machine's decision to the locked row, in the caller's transaction.

    A refusal raises its typed error; otherwise the fields are set, the events added and the
    row deleted when the decision says so.
    """
    if decision.error is not None:
        raise decision.error
    for name, value in decision.fields.items():
        setattr(container, name, value)
    for event in decision.events:
        containers.add_event(container, event.action, dict(event.attributes))
    if decision.remove:
        await containers.remove(container)


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
