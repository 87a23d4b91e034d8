"""The node agent's exit monitor: tasks that exit by themselves become durable workflows.

It follows containerd's ``/tasks/exit`` events of its namespace and, every ``interval``, sweeps
what PostgreSQL says runs on this node against containerd's tasks. Either way, a container that
PostgreSQL says is running (or paused), that no lifecycle operation holds, and whose task is
gone or stopped gets a ``ContainerExitedOnNode`` workflow with the id
``container-exit-<id>-<pid>``: duplicates of one exit collapse, and the workflow re-checks under
the row lock. The sweep is also the catch-up after the agent was down, and it catches exits
that raced a start (the task died before the start committed, while the start held the row).
The workflow is told only the container and the task's pid: it asks containerd itself whether
that task ended and how, as it must for a report from any other client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from berth.config import node_task_queue
from berth.db.models import Container
from berth.db.repository import ContainerRepository
from berth.runtime.containerd import ContainerdClient
from berth.runtime.types import TaskStatus
from berth.state_machine import LIVE_STATES
from berth.steps import UNKNOWN_EXIT_CODE, ExitInput, container_attributes, exit_workflow_id

log = logging.getLogger("berth.exit_monitor")


class ExitMonitor:
    """Watches one node's task exits and hands each to a durable workflow."""

    def __init__(
        self,
        temporal: Client,
        sessions: async_sessionmaker[AsyncSession],
        containerd: ContainerdClient,
        node: str,
        interval: float = 1.0,
    ) -> None:
        self._temporal = temporal
        self._sessions = sessions
        self._containerd = containerd
        self._node = node
        self._interval = interval

    async def run(self) -> None:
        """Follow exit events and sweep until cancelled."""
        follower = asyncio.create_task(self._follow())
        try:
            while True:
                try:
                    await self.sweep()
                except Exception:
                    log.exception("exit sweep on node %s failed; trying again", self._node)
                await asyncio.sleep(self._interval)
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower

    async def _follow(self) -> None:
        while True:
            try:
                async for exited in self._containerd.subscribe_task_exits():
                    container = await self._live(exited.container_id)
                    if container is not None and container.pid == exited.pid:
                        await self._report(container, exited.pid, exited.exit_status)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("task-exit events of node %s failed; resubscribing", self._node)
            await asyncio.sleep(self._interval)

    async def sweep(self) -> None:
        """Report every live container of this node whose task is gone or stopped."""
        async with self._sessions() as session:
            containers = await ContainerRepository(session).live_unheld_on(self._node)
        if not containers:
            return
        tasks = {task.id: task for task in await self._containerd.list_tasks()}
        for container in containers:
            task = tasks.get(container.id)
            if task is None:
                await self._report(container, container.pid or 0, UNKNOWN_EXIT_CODE)
            elif task.status is TaskStatus.STOPPED and task.pid == container.pid:
                await self._report(container, task.pid, task.exit_status)

    async def _live(self, container_id: str) -> Container | None:
        async with self._sessions() as session:
            container = await ContainerRepository(session).by_id(container_id)
        if (
            container is None
            or container.node != self._node
            or container.state not in LIVE_STATES
            or container.operation is not None
        ):
            return None  # an operation that holds it records the exit itself
        return container

    async def _report(self, container: Container, pid: int, exit_code: int) -> None:
        await self._temporal.start_workflow(
            "ContainerExitedOnNode",
            ExitInput(container_id=container.id, pid=pid),
            id=exit_workflow_id(container.id, pid),
            task_queue=node_task_queue(self._node),
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=container_attributes(container.id, container.name, self._node),
            static_summary=f"{container.name} (pid {pid}) exited with {exit_code}",
        )
