"""Named volumes: one row per (node, name), written before the node makes the directory.

``ensure`` is how both ``berth volume create`` and a container create record a volume: it
inserts the row unless one is there (a retried step or a second container keeps the first
row). ``users`` is what refuses a removal: every container of the node whose config names
the volume, whatever its state (docker refuses ``volume rm`` while any container references it).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from berth.db.models import Container, Volume


class VolumeRepository:
    """The named volumes of one deployment's nodes."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def ensure(
        self, node: str, name: str, labels: Mapping[str, str] | None = None
    ) -> tuple[Volume, bool]:
        """The volume's row, inserted if missing; True when this call inserted it."""
        inserted = await self._session.execute(
            insert(Volume)
            .values(node=node, name=name, labels=dict(labels or {}))
            .on_conflict_do_nothing(index_elements=[Volume.node, Volume.name])
            .returning(Volume.name)
        )
        created = inserted.scalar_one_or_none() is not None
        volume = await self.get(node, name, lock=True)
        assert volume is not None  # inserted or already there, and locked now
        return volume, created

    async def get(self, node: str, name: str, *, lock: bool = False) -> Volume | None:
        """The volume's row; ``lock`` holds it until the transaction ends."""
        query = select(Volume).where(Volume.node == node, Volume.name == name)
        if lock:
            query = query.with_for_update()
        return (await self._session.execute(query)).scalar_one_or_none()

    async def list(self, node: str | None = None) -> builtins.list[Volume]:
        """Every volume (or those of ``node``), by node then name."""
        query = select(Volume).order_by(Volume.node, Volume.name)
        if node is not None:
            query = query.where(Volume.node == node)
        return list((await self._session.execute(query)).scalars())

    async def users(self, node: str, name: str) -> builtins.list[str]:
        """The names of the node's containers (any state) whose config names the volume."""
        rows = await self._session.execute(
            select(Container.name)
            .where(
                Container.node == node,
                Container.config.contains({"volumes": [{"name": name}]}),
            )
            .order_by(Container.name)
        )
        return list(rows.scalars())

    async def delete(self, node: str, name: str) -> None:
        """Drop the volume's row; no row is success."""
        await self._session.execute(delete(Volume).where(Volume.node == node, Volume.name == name))
