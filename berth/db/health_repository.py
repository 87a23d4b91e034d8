"""The health records (``container_health``) the node agents' probers keep, and their reads.

A record belongs to one task pid: :meth:`HealthRepository.begin` makes it the task's (a new pid
starts over at ``starting``, the same pid keeps its streak); the probe in flight is written as
``exec_id`` before the exec exists and cleared after it is deleted, so an agent that restarts
finds what a crashed one left.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from berth.db.models import Container, ContainerHealth


class HealthRepository:
    """Health records of containers, by container id."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, container_id: str, *, for_update: bool = False) -> ContainerHealth | None:
        """The container's record as PostgreSQL has it now (not a stale copy of the session)."""
        return await self._session.get(
            ContainerHealth, container_id, with_for_update=for_update, populate_existing=True
        )

    async def begin(self, container_id: str, node: str, pid: int, status: str) -> None:
        """Make the record the task ``pid``'s: create it, or start it over at ``status`` (with
        no failing streak) when it belonged to another task; the same task keeps its own."""
        await self._session.execute(
            insert(ContainerHealth)
            .values(container_id=container_id, node=node, pid=pid, status=status, failing_streak=0)
            .on_conflict_do_nothing()
        )
        await self._session.execute(
            update(ContainerHealth)
            .where(
                ContainerHealth.container_id == container_id,
                ContainerHealth.pid.is_distinct_from(pid),
            )
            .values(pid=pid, node=node, status=status, failing_streak=0)
        )

    async def set_exec(self, container_id: str, exec_id: str) -> None:
        """Record the probe about to run, before its exec is created."""
        await self._session.execute(
            update(ContainerHealth)
            .where(ContainerHealth.container_id == container_id)
            .values(exec_id=exec_id)
        )

    async def clear_exec(self, container_id: str, exec_id: str) -> None:
        """Forget the probe ``exec_id`` once its exec is deleted (a later probe's id stays)."""
        await self._session.execute(
            update(ContainerHealth)
            .where(ContainerHealth.container_id == container_id, ContainerHealth.exec_id == exec_id)
            .values(exec_id=None)
        )

    async def execs_on(self, node: str) -> list[tuple[str, str]]:
        """(container id, exec id) of every probe recorded in flight on ``node``."""
        rows = await self._session.execute(
            select(ContainerHealth.container_id, ContainerHealth.exec_id).where(
                ContainerHealth.node == node, ContainerHealth.exec_id.is_not(None)
            )
        )
        return [(container_id, exec_id) for container_id, exec_id in rows.all() if exec_id]

    async def current_statuses(self) -> dict[str, str]:
        """Each container's status whose record belongs to the task it runs now, by id."""
        rows = await self._session.execute(
            select(ContainerHealth.container_id, ContainerHealth.status)
            .join(Container, Container.id == ContainerHealth.container_id)
            .where(ContainerHealth.pid == Container.pid)
        )
        return {container_id: status for container_id, status in rows.all()}

    async def declared_and_probed(
        self, container_ids: list[str]
    ) -> list[tuple[str, dict[str, Any] | None, bool]]:
        """Per container: the check its config declares (raw, or None) and whether its node
        agent has a health record for it (it probed a check from the image)."""
        if not container_ids:
            return []
        rows = await self._session.execute(
            select(Container.id, Container.config["healthcheck"], ContainerHealth.container_id)
            .outerjoin(ContainerHealth, ContainerHealth.container_id == Container.id)
            .where(Container.id.in_(container_ids))
        )
        return [(cid, declared, probed is not None) for cid, declared, probed in rows.all()]
