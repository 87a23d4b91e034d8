"""Step ``task start``: start the created task and record its pid.

Do: start the task (a task already running is success). Undo: kill it, wait for it, delete
it; a missing task is success, so undo is safe when do never ran.
"""

from __future__ import annotations

from temporalio import activity

from activities.types import ContainerRef, StepModel
from berth.runtime.containerd import ContainerdClient


class StartTaskOutput(StepModel):
    pid: int


class TaskActivities:
    """containerd task starts of one node."""

    def __init__(self, containerd: ContainerdClient) -> None:
        self._containerd = containerd

    @activity.defn(name="start_task")
    async def start_task(self, request: ContainerRef) -> StartTaskOutput:
        """Start the task; return its pid."""
        return StartTaskOutput(pid=await self._containerd.start_task(request.container_id))

    @activity.defn(name="stop_task")
    async def stop_task(self, request: ContainerRef) -> None:
        """Kill, wait for and delete the task."""
        await self._containerd.delete_task(request.container_id)
