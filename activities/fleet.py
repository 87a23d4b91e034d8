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

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.api.enums.v1 import PendingWorkflowTaskState
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from berth.contract import ContainerState, HealthCheck
from berth.db.fleet_repository import FleetRepository
from berth.db.health_repository import HealthRepository
from berth.db.repository import ContainerRepository
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
            fleet = FleetRepository(session)
            run = await fleet.run(request.run_id)
            if run is not None and run.name != request.name:
                raise Conflict(
                    f"fleet run {request.run_id} belongs to fleet restart {run.name}, "
                    f"not {request.name}"
                )
            if run is None:
                selected = await ContainerRepository(session).selected(request.selector)
                await fleet.create_run(
                    request.run_id, request.name, request.spec, interleaved(selected)
                )
            return FleetTally(
                nodes=await fleet.outcome_counts(request.run_id),
                errors=await fleet.recent_errors(request.run_id),
            )

    @activity.defn(name="next_fleet_items")
    async def next_fleet_items(self, request: NextItemsInput) -> FleetItems:
        """The next page of pending items after ``after_seq``, in selection order."""
        async with self._sessions() as session:
            items = await FleetRepository(session).pending_items(
                request.run_id, request.after_seq, request.limit
            )
            checks = await HealthRepository(session).declared_and_probed(
                [i.container_id for i in items]
            )
            checked = {
                container_id
                for container_id, declared, probed in checks
                if has_health_check(
                    None if declared is None else HealthCheck.model_validate(declared), probed
                )
            }
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
            await FleetRepository(session).record_item(
                request.run_id,
                request.seq,
                request.outcome,
                request.error,
                request.pid,
                request.started_at,
                request.finished_at,
            )

    @activity.defn(name="set_fleet_status")
    async def set_fleet_status(self, request: FleetStatusInput) -> None:
        """Record the run's status (running, paused, cancelling, completed, aborted, cancelled)."""
        async with self._sessions.begin() as session:
            await FleetRepository(session).set_status(
                request.run_id,
                request.status,
                request.reason or None,
                datetime.now(UTC) if request.finished else None,
            )

    @activity.defn(name="check_healthy")
    async def check_healthy(self, request: HealthInput) -> HealthOutput:
        """The health gate: the container still runs, with the task its restart started."""
        async with self._sessions() as session:
            container = await ContainerRepository(session).by_id(request.container_id)
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
