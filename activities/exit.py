"""Step ``verify_exit``: is the exit a ``ContainerExitedOnNode`` was handed real?

Any Temporal client can start ``ContainerExitedOnNode`` on a node's queue, so the exit it names is
a claim, not a fact. Before anything is recorded or released, this step checks it against
PostgreSQL and this node's containerd: the container is on this node, runs (or is paused) with
no operation holding it, its recorded task pid is the one named, and containerd says that task
is stopped or gone. The exit code is containerd's (unknown when the task is gone), never the
caller's. It only reads, so running it again is harmless.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from berth.db.repository import ContainerRepository
from berth.errors import NotFound
from berth.runtime.containerd import ContainerdClient
from berth.runtime.types import TaskStatus
from berth.state_machine import LIVE_STATES
from berth.steps import VerifiedExit, VerifyExitInput


class ExitActivities:
    """Checks of a reported exit, against this node's containerd and PostgreSQL."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], containerd: ContainerdClient, node: str
    ) -> None:
        self._sessions = sessions
        self._containerd = containerd
        self._node = node

    @activity.defn(name="verify_exit")
    async def verify_exit(self, request: VerifyExitInput) -> VerifiedExit:
        """Whether the task ``pid`` of the container really ended, and with which code."""
        async with self._sessions() as session:
            container = await ContainerRepository(session).by_id(request.container_id)
        if container is None or container.node != self._node:
            return VerifiedExit(exited=False, reason=f"no container {request.container_id} here")
        if container.state not in LIVE_STATES or container.operation is not None:
            return VerifiedExit(
                exited=False, reason=f"{container.name} is {container.state}, not running alone"
            )
        if container.pid is None or container.pid != request.pid:
            return VerifiedExit(
                exited=False, reason=f"{container.name} runs pid {container.pid}, not {request.pid}"
            )
        try:
            task = await self._containerd.get_task(container.id)
        except NotFound:
            return VerifiedExit(exited=True)  # gone: nothing knows how it ended
        if task.pid != request.pid:
            return VerifiedExit(
                exited=False, reason=f"{container.name}'s task is pid {task.pid}, not {request.pid}"
            )
        if task.status is not TaskStatus.STOPPED:
            return VerifiedExit(
                exited=False, reason=f"task {task.pid} of {container.name} is {task.status}"
            )
        return VerifiedExit(exited=True, exit_code=task.exit_status)
