"""Step ``shim create``: the containerd container and its task (runc v2 shim), not yet started.

Do: create the containerd container with the spec (replacing a stale one left by a crashed
attempt), then create its task with stdout and stderr to ``<node>/logs/<id>.log``. Undo: delete
the task (killing it if it runs), then the container; "not found" is success at each.
"""

from __future__ import annotations

from temporalio import activity

from activities.types import ContainerRef, StepModel
from berth.config import NodePaths
from berth.faults import NO_FAULTS, FaultHook, fault_point
from berth.runtime.containerd import ContainerdClient


class CreateShimInput(StepModel):
    container_id: str
    node: str
    image: str
    spec: dict[str, object]
    labels: dict[str, str]


class CreateShimOutput(StepModel):
    pid: int


class ShimActivities:
    """containerd containers and tasks of one node."""

    def __init__(
        self, containerd: ContainerdClient, paths: NodePaths, faults: FaultHook = NO_FAULTS
    ) -> None:
        self._containerd = containerd
        self._paths = paths
        self._faults = faults

    @activity.defn(name="create_shim")
    @fault_point("shim")
    async def create_shim(self, request: CreateShimInput) -> CreateShimOutput:
        """Create the containerd container and its task."""
        await self._containerd.create_container(
            request.container_id,
            request.image,
            snapshot_key=request.container_id,
            spec=request.spec,
            labels=request.labels,
        )
        log = self._paths.log(request.container_id)
        log.parent.mkdir(parents=True, exist_ok=True)
        pid = await self._containerd.create_task(request.container_id, stdout=log, stderr=log)
        return CreateShimOutput(pid=pid)

    @activity.defn(name="delete_shim")
    @fault_point("undo-shim")
    async def delete_shim(self, request: ContainerRef) -> None:
        """Delete the task and the containerd container."""
        await self._containerd.delete_task(request.container_id)
        await self._containerd.delete_container(request.container_id)
