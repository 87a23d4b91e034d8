"""PostgreSQL and Temporal look-ups of a fleet restart (control worker, run as local activities).

``begin_fleet_run`` snapshots the selection into ``fleet_items`` once (a run that exists is only
read back, so it converges when run again and after continue-as-new; a run recorded under
another fleet's name is a ``Conflict``); ``next_fleet_items`` pages
the pending ones; ``record_fleet_item`` and ``set_fleet_status`` write outcomes, idempotently.
``check_healthy`` is the health gate, ``stalled_children`` the check for node agents that do not
pick up their work. None of them touches a host.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.api.enums.v1 import PendingWorkflowTaskState
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from berth.contract import ContainerState, FleetSelector, HealthCheck
from berth.db.models import Container, ContainerHealth, FleetItem, FleetRun
from berth.errors import Conflict
from berth.health import has_health_check
from berth.steps import (
    BeginFleetInput,
    FleetItemRef,
    FleetItems,
    FleetStatusInput,
    FleetTally,
    HealthInput,
    HealthOutput,
    NextItemsInput,
    RecordItemInput,
    StalledInput,
    StalledOutput,
)


def selection(selector: FleetSelector) -> Any:
    """The ``WHERE`` clause of a selector: every criterion given must match."""
    clauses: list[Any] = []
    if selector.ids:
        names = [ref.lstrip("/") for ref in selector.ids]
        clauses.append(or_(Container.id.in_(selector.ids), Container.name.in_(names)))
    if selector.labels:
        clauses.append(Container.config["labels"].contains(selector.labels))
    if selector.node is not None:
        clauses.append(Container.node == selector.node)
    if selector.state is not None:
        clauses.append(Container.state == selector.state.value)
    return and_(True, *clauses)


async def _with_health_check(session: AsyncSession, container_ids: list[str]) -> set[str]:
    """Which of these containers have a health check (declared, or probed from the image)."""
    if not container_ids:
        return set()
    rows = await session.execute(
        select(Container.id, Container.config["healthcheck"], ContainerHealth.container_id)
        .outerjoin(ContainerHealth, ContainerHealth.container_id == Container.id)
        .where(Container.id.in_(container_ids))
    )
    return {
        container_id
        for container_id, declared, probed in rows.all()
        if has_health_check(
            None if declared is None else HealthCheck.model_validate(declared),
            probed=probed is not None,
        )
    }


def interleaved(rows: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """(id, name, node) rows ordered round-robin over nodes, so every node gets work early."""
    rank: Counter[str] = Counter()
    keyed = []
    for row in sorted(rows, key=lambda r: (r[2], r[1])):
        keyed.append(((rank[row[2]], row[2]), row))
        rank[row[2]] += 1
    return [row for _, row in sorted(keyed)]


class FleetActivities:
    """A fleet run's records in PostgreSQL, and what Temporal says of its children."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], temporal: Client) -> None:
        self._sessions = sessions
        self._temporal = temporal

    @activity.defn(name="begin_fleet_run")
    async def begin_fleet_run(self, request: BeginFleetInput) -> FleetTally:
        """Record the run and its selection once; return the tally (also after continue-as-new)."""
        async with self._sessions.begin() as session:
            run = await session.get(FleetRun, request.run_id)
            if run is not None and run.name != request.name:
                raise Conflict(
                    f"fleet run {request.run_id} belongs to fleet restart {run.name}, "
                    f"not {request.name}"
                )
            if run is None:
                found = await session.execute(
                    select(Container.id, Container.name, Container.node).where(
                        selection(request.selector)
                    )
                )
                rows = interleaved([(r[0], r[1], r[2]) for r in found.all()])
                session.add(
                    FleetRun(
                        id=request.run_id,
                        name=request.name,
                        status="running",
                        spec=request.spec,
                        total=len(rows),
                    )
                )
                await session.flush()
                if rows:
                    await session.execute(
                        insert(FleetItem),
                        [
                            {
                                "run_id": request.run_id,
                                "seq": seq,
                                "container_id": cid,
                                "container_name": name,
                                "node": node,
                            }
                            for seq, (cid, name, node) in enumerate(rows, start=1)
                        ],
                    )
            return await self._tally(session, request.run_id)

    async def _tally(self, session: AsyncSession, run_id: str) -> FleetTally:
        counted = await session.execute(
            select(FleetItem.node, FleetItem.outcome, func.count())
            .where(FleetItem.run_id == run_id)
            .group_by(FleetItem.node, FleetItem.outcome)
        )
        nodes: dict[str, dict[str, int]] = {}
        for node, outcome, count in counted.all():
            nodes.setdefault(node, {})[outcome] = count
        errors = await session.scalars(
            select(FleetItem.error)
            .where(FleetItem.run_id == run_id, FleetItem.outcome == "failed")
            .order_by(FleetItem.finished_at.desc())
            .limit(10)
        )
        return FleetTally(nodes=nodes, errors=[e for e in errors.all() if e])

    @activity.defn(name="next_fleet_items")
    async def next_fleet_items(self, request: NextItemsInput) -> FleetItems:
        """The next page of pending items after ``after_seq``, in selection order."""
        async with self._sessions() as session:
            found = await session.scalars(
                select(FleetItem)
                .where(
                    FleetItem.run_id == request.run_id,
                    FleetItem.seq > request.after_seq,
                    FleetItem.outcome == "pending",
                )
                .order_by(FleetItem.seq)
                .limit(request.limit)
            )
            items = found.all()
            checked = await _with_health_check(session, [i.container_id for i in items])
            return FleetItems(
                items=[
                    FleetItemRef(
                        seq=i.seq,
                        container_id=i.container_id,
                        name=i.container_name,
                        node=i.node,
                        health_check=i.container_id in checked,
                    )
                    for i in items
                ]
            )

    @activity.defn(name="record_fleet_item")
    async def record_fleet_item(self, request: RecordItemInput) -> None:
        """Write one item's outcome and timings (the same write again changes nothing)."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(FleetItem)
                .where(FleetItem.run_id == request.run_id, FleetItem.seq == request.seq)
                .values(
                    outcome=request.outcome,
                    error=request.error,
                    pid=request.pid,
                    started_at=request.started_at,
                    finished_at=request.finished_at,
                )
            )

    @activity.defn(name="set_fleet_status")
    async def set_fleet_status(self, request: FleetStatusInput) -> None:
        """Record the run's status (running, paused, cancelling, completed, aborted, cancelled)."""
        async with self._sessions.begin() as session:
            values: dict[str, Any] = {"status": request.status, "reason": request.reason or None}
            if request.finished:
                values["finished_at"] = datetime.now(UTC)
            await session.execute(
                update(FleetRun).where(FleetRun.id == request.run_id).values(**values)
            )

    @activity.defn(name="check_healthy")
    async def check_healthy(self, request: HealthInput) -> HealthOutput:
        """The health gate: the container still runs, with the task its restart started."""
        async with self._sessions() as session:
            container = await session.get(Container, request.container_id)
        if container is None:
            return HealthOutput(healthy=False, reason="removed during its health check")
        if container.state is not ContainerState.RUNNING or container.pid != request.pid:
            return HealthOutput(
                healthy=False,
                reason=f"not healthy: {container.state} (exit code {container.exit_code}), "
                f"pid {container.pid} instead of {request.pid}",
            )
        return HealthOutput(healthy=True)

    @activity.defn(name="stalled_children")
    async def stalled_children(self, request: StalledInput) -> StalledOutput:
        """Children whose workflow task has waited for a poller (their agent) that long.

        A child that runs, or waits on its own timers, has no such task: only a node whose
        agent is down leaves a task scheduled and never started.
        """
        now = datetime.now(UTC)
        limit = timedelta(seconds=request.waited_seconds)
        stalled = []
        for workflow_id in request.workflow_ids:
            try:
                described = await self._temporal.get_workflow_handle(workflow_id).describe()
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    continue
                raise
            raw = described.raw_description
            if not raw.HasField("pending_workflow_task"):
                continue
            task = raw.pending_workflow_task
            if task.state != PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_SCHEDULED:
                continue
            if now - task.scheduled_time.ToDatetime(tzinfo=UTC) >= limit:
                stalled.append(workflow_id)
        return StalledOutput(workflow_ids=stalled)
