"""Fleet restarts in PostgreSQL: a run (``fleet_runs``) and the items it selected (``fleet_items``).

A run's items are written once, with the run, in the order they are to be restarted (``seq``
from 1); afterwards only their outcomes change, and writing the same outcome again changes
nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from berth.db.models import FleetItem, FleetRun


class FleetRepository:
    """Fleet runs and their items."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def run(self, run_id: str) -> FleetRun | None:
        return await self._session.get(FleetRun, run_id)

    async def latest_run(self, name: str) -> FleetRun | None:
        """The most recently created run of the fleet restart ``name``."""
        query = select(FleetRun).where(FleetRun.name == name).order_by(FleetRun.created_at.desc())
        return (await self._session.scalars(query.limit(1))).first()

    async def create_run(
        self,
        run_id: str,
        name: str,
        spec: dict[str, Any],
        selection: Sequence[tuple[str, str, str]],
    ) -> None:
        """Record a running run and its items: (id, name, node) in restart order."""
        self._session.add(
            FleetRun(id=run_id, name=name, status="running", spec=spec, total=len(selection))
        )
        await self._session.flush()
        if selection:
            await self._session.execute(
                insert(FleetItem),
                [
                    {
                        "run_id": run_id,
                        "seq": seq,
                        "container_id": container_id,
                        "container_name": container_name,
                        "node": node,
                    }
                    for seq, (container_id, container_name, node) in enumerate(selection, start=1)
                ],
            )

    async def set_status(
        self, run_id: str, status: str, reason: str | None, finished_at: datetime | None = None
    ) -> None:
        """Record the run's status; ``finished_at`` when it ended (else left as it is)."""
        values: dict[str, Any] = {"status": status, "reason": reason}
        if finished_at is not None:
            values["finished_at"] = finished_at
        await self._session.execute(update(FleetRun).where(FleetRun.id == run_id).values(**values))

    async def items(self, run_id: str) -> Sequence[FleetItem]:
        """Every item of the run, in restart order."""
        query = select(FleetItem).where(FleetItem.run_id == run_id).order_by(FleetItem.seq)
        return (await self._session.scalars(query)).all()

    async def pending_items(self, run_id: str, after_seq: int, limit: int) -> Sequence[FleetItem]:
        """At most ``limit`` pending items after ``after_seq``, in restart order."""
        query = (
            select(FleetItem)
            .where(
                FleetItem.run_id == run_id,
                FleetItem.seq > after_seq,
                FleetItem.outcome == "pending",
            )
            .order_by(FleetItem.seq)
            .limit(limit)
        )
        return (await self._session.scalars(query)).all()

    async def record_item(
        self,
        run_id: str,
        seq: int,
        outcome: str,
        error: str | None,
        pid: int | None,
        started_at: datetime,
        finished_at: datetime,
    ) -> None:
        """Write one item's outcome and timings."""
        await self._session.execute(
            update(FleetItem)
            .where(FleetItem.run_id == run_id, FleetItem.seq == seq)
            .values(
                outcome=outcome,
                error=error,
                pid=pid,
                started_at=started_at,
                finished_at=finished_at,
            )
        )

    async def outcome_counts(self, run_id: str) -> dict[str, dict[str, int]]:
        """Per node, how many of the run's items have each outcome (``pending`` included)."""
        rows = await self._session.execute(
            select(FleetItem.node, FleetItem.outcome, func.count())
            .where(FleetItem.run_id == run_id)
            .group_by(FleetItem.node, FleetItem.outcome)
        )
        nodes: dict[str, dict[str, int]] = {}
        for node, outcome, count in rows.all():
            nodes.setdefault(node, {})[outcome] = count
        return nodes

    async def recent_errors(self, run_id: str, limit: int = 10) -> list[str]:
        """The errors of the run's most recently failed items, newest first."""
        errors = await self._session.scalars(
            select(FleetItem.error)
            .where(FleetItem.run_id == run_id, FleetItem.outcome == "failed")
            .order_by(FleetItem.finished_at.desc())
            .limit(limit)
        )
        return [error for error in errors.all() if error]
