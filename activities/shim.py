"""Step ``shim create``: the containerd container and its task (runc v2 shim), not yet started.

Do: create the containerd container with the spec (replacing a stale one left by a crashed
attempt), then create its task with stdout and stderr to ``<node>/logs/<id>.log``. Undo: delete
the task (killing it if it runs), then the container; "not found" is success at each.

A restart of a running container replaces only the task (``replace_task``): the containerd
container, its spec, the rootfs mount and the network namespace stay, as a Kubernetes pod
sandbox does across container restarts. Its undo is the stop's whole release (the caller's).
"""

from __future__ import annotations

from temporalio import activity

from activities.types import ContainerRef, StepModel
from berth.config import NodePaths
from berth.errors import NotFound
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


class ReplaceTaskInput(StepModel):
    container_id: str
    node: str
    # The pid of the task being replaced (already stopped by the caller).
    old_pid: int | None


class ReplaceTaskOutput(StepModel):
    # The new task's pid; None when there is no containerd container to restart in place.
    pid: int | None


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

    @activity.defn(name="replace_task")
    @fault_point("task")
    async def replace_task(self, request: ReplaceTaskInput) -> ReplaceTaskOutput:
        """Delete the stopped task, then create and start a new one in the same container.

        Converges: a running task other than ``old_pid`` is the one an earlier attempt started.
        """
        cid = request.container_id
        try:
            task = await self._containerd.get_task(cid)
        except NotFound:
            if not await self._containerd.has_container(cid):
                return ReplaceTaskOutput(pid=None)
            task = None
        if task is not None and task.pid != request.old_pid and task.status == "RUNNING":
            return ReplaceTaskOutput(pid=task.pid)
        if task is not None and (task.pid == request.old_pid or task.status != "CREATED"):
            await self._containerd.delete_task(cid)
        log = self._paths.log(cid)
        await self._containerd.create_task(cid, stdout=log, stderr=log)
        return ReplaceTaskOutput(pid=await self._containerd.start_task(cid))

    @activity.defn(name="delete_shim")
    @fault_point("undo-shim")
    async def delete_shim(self, request: ContainerRef) -> None:
        """Delete the task and the containerd container."""
        await self._containerd.delete_task(request.container_id)
        await self._containerd.delete_container(request.container_id)
