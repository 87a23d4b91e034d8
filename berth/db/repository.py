"""One repository per aggregate; callers use them inside a session they own.

Every query of Berth's tables lives in ``berth/db``: here (containers and their events, nodes,
mount holders, network attachments, saga steps), ``berth/db/health_repository.py`` (health
records) and ``berth/db/fleet_repository.py`` (fleet runs and items). No other module builds a
statement.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from berth.contract import ContainerState, FleetSelector
from berth.db.models import (
    Container,
    ContainerEvent,
    MountHolder,
    NetworkAttachment,
    Node,
    SagaStep,
)
from berth.db.reads import ID_PREFIX, NODE_LIVENESS_SECONDS
from berth.errors import NotFound
from berth.state_machine import LIVE_STATES


class ContainerRepository:
    """Containers and their events."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def find(self, ref: str, *, for_update: bool = False) -> Container | None:
        """The container whose id, unique id prefix (12+ hex digits) or name is ``ref``."""
        query = select(Container).where(or_(Container.id == ref, Container.name == ref.lstrip("/")))
        if for_update:
            query = query.with_for_update()
        found = (await self._session.scalars(query)).first()
        if found is None and ID_PREFIX.match(ref):
            # Only hex reaches LIKE, escaped besides: '%' and '_' are never wildcards here.
            prefixed = select(Container).where(Container.id.startswith(ref, autoescape=True))
            if for_update:
                prefixed = prefixed.with_for_update()
            matches = (await self._session.scalars(prefixed.limit(2))).all()
            found = matches[0] if len(matches) == 1 else None
        return found

    async def get(self, ref: str, *, for_update: bool = False) -> Container:
        """Like :meth:`find`, but a missing container is ``NotFound`` with docker's message."""
        found = await self.find(ref, for_update=for_update)
        if found is None:
            raise NotFound(f"No such container: {ref}")
        return found

    async def by_id(self, container_id: str) -> Container | None:
        """The container with exactly this id (no name or prefix look-up), if any."""
        return await self._session.get(Container, container_id)

    async def list(self) -> Sequence[Container]:
        return (await self._session.scalars(select(Container).order_by(Container.created_at))).all()

    async def on_node(self, node: str) -> Sequence[Container]:
        """Every container placed on ``node``, whatever its state."""
        return (await self._session.scalars(select(Container).where(Container.node == node))).all()

    async def running_on(self, node: str) -> Sequence[Container]:
        """The containers of ``node`` that are ``running`` with a recorded task pid."""
        query = select(Container).where(
            Container.node == node,
            Container.state == ContainerState.RUNNING,
            Container.pid.is_not(None),
        )
        return (await self._session.scalars(query)).all()

    async def live_unheld_on(self, node: str) -> Sequence[Container]:
        """The live (running or paused) containers of ``node`` that no operation holds."""
        query = select(Container).where(
            Container.node == node,
            Container.state.in_(sorted(LIVE_STATES)),
            Container.operation.is_(None),
        )
        return (await self._session.scalars(query)).all()

    async def selected(self, selector: FleetSelector) -> builtins.list[tuple[str, str, str]]:
        """(id, name, node) of every container that matches all the selector's criteria."""
        clauses: list[Any] = []
        if selector.ids:
            names = [ref.lstrip("/") for ref in selector.ids]
            clauses.append(or_(Container.id.in_(selector.ids), Container.name.in_(names)))
        if selector.labels:
            clauses.append(Container.config["labels"].contains(selector.labels))
        if selector.node is not None:
            clauses.append(Container.node == selector.node)
        if selector.state is not None:
            clauses.append(Container.state == selector.state)
        query = select(Container.id, Container.name, Container.node).where(and_(True, *clauses))
        return [(cid, name, node) for cid, name, node in (await self._session.execute(query)).all()]

    def add(self, container: Container) -> None:
        self._session.add(container)

    async def remove(self, container: Container) -> None:
        await self._session.delete(container)

    def add_event(
        self, container: Container, action: str, attributes: dict[str, Any] | None = None
    ) -> None:
        self._session.add(
            ContainerEvent(
                container_id=container.id,
                container_name=container.name,
                node=container.node,
                action=action,
                attributes=attributes or {},
            )
        )

    def add_event_by_id(
        self, container_id: str, name: str, node: str, action: str, attributes: dict[str, Any]
    ) -> None:
        """An event about a container that may have no row (e.g. one containerd alone knew)."""
        self._session.add(
            ContainerEvent(
                container_id=container_id,
                container_name=name,
                node=node,
                action=action,
                attributes=attributes,
            )
        )

    async def events(
        self, container_id: str | None = None, since_id: int = 0
    ) -> Sequence[ContainerEvent]:
        query = select(ContainerEvent).where(ContainerEvent.id > since_id)
        if container_id is not None:
            query = query.where(ContainerEvent.container_id == container_id)
        return (await self._session.scalars(query.order_by(ContainerEvent.id))).all()

    async def ids_seen_on(self, node: str, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` ever lived on ``node``: its event history names them there."""
        query = select(ContainerEvent.container_id).where(
            ContainerEvent.node == node, ContainerEvent.container_id.in_(ids)
        )
        return set((await self._session.scalars(query.distinct())).all())


# A node whose agent has not refreshed its row for this long counts as down: it is given no new
# containers, and the Berth client does not hand it operations.
NODE_LIVENESS = timedelta(seconds=NODE_LIVENESS_SECONDS)


class NodeRepository:
    """Nodes and their liveness."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def register(
        self, name: str, bridge: str, subnet: str, endpoint: str | None = None
    ) -> None:
        """Insert or refresh the node's row (idempotent), with its endpoint's address."""
        values = {"bridge": bridge, "subnet": subnet, "endpoint": endpoint}
        statement = insert(Node).values(name=name, **values)
        await self._session.execute(
            statement.on_conflict_do_update(
                index_elements=[Node.name], set_={**values, "last_seen_at": func.now()}
            )
        )

    async def names(self) -> list[str]:
        return list((await self._session.scalars(select(Node.name).order_by(Node.name))).all())

    async def leave(self, name: str) -> None:
        """Mark the node's agent as gone (a clean shutdown), so placement skips it at once."""
        await self._session.execute(
            update(Node).where(Node.name == name).values(last_seen_at=func.to_timestamp(0))
        )

    async def is_live(self, name: str, max_age: timedelta = NODE_LIVENESS) -> bool:
        """Whether the node's agent refreshed its row within ``max_age``."""
        query = select(Node.name).where(Node.name == name, Node.last_seen_at > func.now() - max_age)
        return (await self._session.scalar(query)) is not None

    async def endpoint(self, name: str, max_age: timedelta = NODE_LIVENESS) -> str | None:
        """host:port of the node's endpoint, if its agent refreshed its row within ``max_age``."""
        query = select(Node.endpoint).where(
            Node.name == name, Node.last_seen_at > func.now() - max_age
        )
        found: str | None = await self._session.scalar(query)
        return found

    async def live_names(self, max_age: timedelta = NODE_LIVENESS) -> list[str]:
        """Nodes whose agent refreshed its row within ``max_age`` (its heartbeat)."""
        query = select(Node.name).where(Node.last_seen_at > func.now() - max_age)
        return list((await self._session.scalars(query.order_by(Node.name))).all())


class MountHolderRepository:
    """The holder sets that reference-count rootfs mounts."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def acquire(self, node: str, target: str, holder: str, container_id: str) -> None:
        """Add ``holder`` to the target's set; adding it again changes nothing."""
        statement = insert(MountHolder).values(
            node=node, target=target, holder=holder, container_id=container_id
        )
        await self._session.execute(statement.on_conflict_do_nothing())

    async def release(self, node: str, target: str, holder: str) -> int:
        """Remove ``holder`` and return how many holders remain."""
        await self._session.execute(
            delete(MountHolder).where(
                MountHolder.node == node, MountHolder.target == target, MountHolder.holder == holder
            )
        )
        return await self.count(node, target)

    async def count(self, node: str, target: str) -> int:
        query = select(func.count()).where(MountHolder.node == node, MountHolder.target == target)
        return int((await self._session.scalar(query)) or 0)

    async def lock_target(self, node: str, target: str) -> None:
        """Serialise acquire/release of one target across processes (a transaction lock)."""
        await self._session.execute(
            select(func.pg_advisory_xact_lock(func.hashtext(f"mount:{node}:{target}")))
        )

    async def holders(self, node: str) -> Sequence[MountHolder]:
        return (
            await self._session.scalars(select(MountHolder).where(MountHolder.node == node))
        ).all()


class NetworkAttachmentRepository:
    """Network namespaces and CNI attachments, recorded before they are made."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def intend(self, container_id: str, node: str, mode: str, netns_path: str | None) -> None:
        statement = insert(NetworkAttachment).values(
            container_id=container_id, node=node, mode=mode, netns_path=netns_path
        )
        await self._session.execute(
            statement.on_conflict_do_update(
                index_elements=[NetworkAttachment.container_id],
                set_={"node": node, "mode": mode, "netns_path": netns_path},
            )
        )

    async def record_ip(self, container_id: str, ip: str | None) -> None:
        attachment = await self._session.get(NetworkAttachment, container_id)
        if attachment is not None:
            attachment.ip = ip

    async def forget(self, container_id: str) -> None:
        await self._session.execute(
            delete(NetworkAttachment).where(NetworkAttachment.container_id == container_id)
        )

    async def on_node(self, node: str) -> Sequence[NetworkAttachment]:
        query = select(NetworkAttachment).where(NetworkAttachment.node == node)
        return (await self._session.scalars(query)).all()


class SagaStepRepository:
    """The per-operation journal of steps and compensations."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def record(
        self,
        operation: str,
        container_id: str,
        step: str,
        status: str,
        handle: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        statement = insert(SagaStep).values(
            operation=operation,
            container_id=container_id,
            step=step,
            status=status,
            handle=handle or {},
            error=error,
        )
        await self._session.execute(
            statement.on_conflict_do_update(
                constraint="uq_saga_steps_operation",
                set_={
                    "status": status,
                    "handle": handle or {},
                    "error": error,
                    "updated_at": func.now(),
                },
            )
        )
