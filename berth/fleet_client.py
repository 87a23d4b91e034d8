"""The Python client of fleet restarts: start ``FleetRestart``, steer it, read its record.

Example::

    async with await BerthClient.connect(Settings()) as berth:
        await berth.fleet.restart(FleetRestartInput(name="web", selector=FleetSelector(
            labels={"app": "web"}), max_parallel=8, max_parallel_per_node=3))
        print((await berth.fleet.progress("web")).counts)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from berth.config import Settings
from berth.contract import FleetProgress, FleetRestartInput
from berth.db.fleet_repository import FleetRepository
from berth.db.models import FleetItem, FleetRun
from berth.errors import Conflict, InvalidParameter, NotFound, as_berth_error
from berth.steps import fleet_workflow_id as workflow_id


class FleetClient:
    """Fleet restarts by name: ``fleet-restart-<name>`` in Temporal, ``fleet_runs`` in SQL."""

    def __init__(
        self, temporal: Client, sessions: async_sessionmaker[AsyncSession], settings: Settings
    ) -> None:
        self._temporal = temporal
        self._sessions = sessions
        self._settings = settings

    async def restart(self, request: FleetRestartInput) -> WorkflowHandle[Any, FleetProgress]:
        """Start a fleet restart; ``Conflict`` while one of the same name runs.

        ``carry`` is the workflow's own state across continue-as-new: a caller's is refused.
        """
        if request.carry is not None:
            raise InvalidParameter("carry: set only by a fleet restart continuing as new")
        try:
            return await self._temporal.start_workflow(
                "FleetRestart",
                request,
                id=workflow_id(request.name),
                task_queue=self._settings.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                result_type=FleetProgress,
            )
        except WorkflowAlreadyStartedError:
            raise Conflict(f"fleet restart {request.name} is already running") from None

    def handle(self, name: str) -> WorkflowHandle[Any, FleetProgress]:
        return self._temporal.get_workflow_handle(workflow_id(name), result_type=FleetProgress)

    async def progress(self, name: str) -> FleetProgress:
        """Where the run stands: its query while it runs, its result once it ended."""
        handle = self.handle(name)
        try:
            described = await handle.describe()
            if described.status == WorkflowExecutionStatus.RUNNING:
                return await handle.query("progress", result_type=FleetProgress)
            return await handle.result()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise NotFound(f"No such fleet restart: {name}") from None
            raise
        except WorkflowFailureError as err:
            raise as_berth_error(err.cause) from None

    async def wait(self, name: str) -> FleetProgress:
        """Block until the run ends; its final progress."""
        try:
            return await self.handle(name).result()
        except WorkflowFailureError as err:
            raise as_berth_error(err.cause) from None

    async def pause(self, name: str) -> FleetProgress:
        return await self._update(name, "pause")

    async def resume(self, name: str) -> FleetProgress:
        return await self._update(name, "resume")

    async def cancel(self, name: str) -> FleetProgress:
        return await self._update(name, "cancel")

    async def _update(self, name: str, update: str) -> FleetProgress:
        try:
            return await self.handle(name).execute_update(update, result_type=FleetProgress)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise NotFound(f"No running fleet restart named {name}") from None
            raise

    async def show(self, name: str) -> tuple[FleetRun, Sequence[FleetItem]]:
        """The latest recorded run of that name and its items, in selection order."""
        async with self._sessions() as session:
            fleet = FleetRepository(session)
            run = await fleet.latest_run(name)
            if run is None:
                raise NotFound(f"No such fleet restart: {name}")
            return run, await fleet.items(run.id)
