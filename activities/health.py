"""Health status look-up for orchestration: what a container's health check says of a task.

``container_health`` reads PostgreSQL only (the node agent's prober writes it), so it runs on
the control worker, as the fleet restart's health gate. It has no side effect and no undo.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from berth.db.health_repository import HealthRepository
from berth.db.repository import ContainerRepository
from berth.health import health_report
from berth.steps import ContainerHealthInput, ContainerHealthOutput


class HealthActivities:
    """Reads of the health records the node agents keep."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name="container_health")
    async def container_health(self, request: ContainerHealthInput) -> ContainerHealthOutput:
        """The container's health for the task ``pid``, and whether it still runs that task."""
        async with self._sessions() as session:
            container = await ContainerRepository(session).by_id(request.container_id)
            record = await HealthRepository(session).get(request.container_id)
        return health_report(container, record, request.pid)
