"""Step ``shim create``: the containerd container and its task (runc v2 shim), not yet started.

Do: create the containerd container with the spec (replacing a stale one left by a crashed
attempt), then create its task with stdout and stderr to ``<node>/logs/<id>.log`` through the
node's log driver (``berth.container_logs``: the shim runs it beside the task; it rotates the file
within the node's ``log_max_bytes * log_max_files``). A container created with ``-t`` gets a
console (the shim copies it to the same log) and a stdin FIFO in its own directory, for attach;
any other task's stdio is as it always was. Undo: delete the task (killing it if it runs), then
the container; "not found" is success at each.

A containerd SIGKILLed while it created a task leaves that task's shim running with no task
containerd lists (and, once runc had created it, the container's init process in its cgroup);
containerd's next create of the task then waits on that shim forever. So before a task is
created, and in the undo, a shim of this container on this node whose task containerd does not
list is ended by its pid (``berth.runtime.shims``), with whatever runs in the container's cgroup.

A restart of a running container replaces only the task (``replace_task``): the containerd
container, its spec, the rootfs mount and the network namespace stay, as a Kubernetes pod
sandbox does across container restarts. Its undo is the stop's whole release (the caller's).

Every task creation checks the container's bind sources again on this host (a container may have
turned a directory under an allowed root into a link to ``/`` since the last check) and hands
runc each source as an open descriptor of what was checked (``berth.host_paths``), so the mount
is of that directory whatever happens to the path meanwhile. Any other bind mount in the spec
must be of the node's own files; anything else refuses the creation with ``Forbidden``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from temporalio import activity

from berth.config import NodePaths
from berth.container_logs import DEFAULT_LOG_POLICY, LogPolicy, prepare_log
from berth.contract import BindMount
from berth.errors import Forbidden, NotFound
from berth.faults import NO_FAULTS, FaultHook, fault_point
from berth.host_paths import pinned_bind_sources, release_pins
from berth.runtime.cgroups import container_cgroups, kill_cgroup_processes
from berth.runtime.containerd import ContainerdClient
from berth.runtime.containerd_daemon import task_bundle
from berth.runtime.exec_io import init_stdio
from berth.runtime.oci_spec import client_bind_indexes, with_bind_sources
from berth.runtime.shims import ShimProcess, kill_shim, list_shims
from berth.runtime.types import TaskStatus
from berth.steps import (
    ContainerRef,
    CreateShimInput,
    CreateShimOutput,
    ReplaceTaskInput,
    ReplaceTaskOutput,
)

logger = logging.getLogger(__name__)


class ShimActivities:
    """containerd containers and tasks of one node."""

    def __init__(
        self,
        containerd: ContainerdClient,
        paths: NodePaths,
        faults: FaultHook = NO_FAULTS,
        log_policy: LogPolicy = DEFAULT_LOG_POLICY,
        allowed_host_paths: Sequence[Path] = (),
    ) -> None:
        self._containerd = containerd
        self._paths = paths
        self._faults = faults
        self._log_policy = log_policy
        self._allowed_host_paths = allowed_host_paths

    @contextlib.asynccontextmanager
    async def _checked(
        self, container_id: str, spec: dict[str, Any], binds: Sequence[BindMount]
    ) -> AsyncIterator[dict[str, Any]]:
        """``spec`` with its bind sources checked on this host and pinned until the exit.

        Raises:
            Forbidden: a bind source now outside the allowed roots, or a bind mount in the spec
                that is neither one of ``binds`` nor of the node's own files.
            InvalidParameter: a bind source that no longer exists.
        """
        ours = set(client_bind_indexes(spec, binds))
        own, pins = self._paths.workload_root, self._paths.bind_pins(container_id)
        for index, mount in enumerate(spec.get("mounts", [])):
            source = Path(str(mount.get("source", "")))
            node_own = own in source.parents and pins.parent not in source.parents
            if mount.get("type") == "bind" and index not in ours and not node_own:
                raise Forbidden(
                    f"spec mount {mount.get('destination')!r}: bind source {source} is neither "
                    "one of the container's binds nor the node's own"
                )
        if not binds:
            yield spec
            return
        pinned = pinned_bind_sources(binds, self._allowed_host_paths, pins)
        sources = await asyncio.to_thread(pinned.__enter__)
        try:
            yield with_bind_sources(spec, binds, sources)
        finally:
            await asyncio.to_thread(pinned.__exit__, None, None, None)

    def _log_uri(self, container_id: str) -> str:
        """The task's stdio: the node's log driver writing ``<node>/logs/<id>.log``."""
        return prepare_log(self._paths.log_driver, self._paths.log(container_id), self._log_policy)

    async def _end_orphaned_shims(self, container_id: str) -> None:
        """End this container's shims if containerd lists no task for it (see the module doc).

        Looked for only when the task's bundle is there (a stat; scanning /proc costs ~30 ms).
        """
        containerd = self._containerd
        bundle = task_bundle(self._paths, containerd.namespace, container_id)
        if not await asyncio.to_thread(bundle.exists):
            return
        try:
            await self._containerd.get_task(container_id)
        except NotFound:
            pass
        else:
            return
        ended = await asyncio.to_thread(
            end_orphaned_shims, self._containerd.socket, self._containerd.namespace, container_id
        )
        for shim in ended:
            logger.warning(
                "ended shim pid %d of container %s on node %s: containerd lists no task for it",
                shim.pid,
                container_id,
                self._containerd.node,
            )

    @activity.defn(name="create_shim")
    @fault_point("shim")
    async def create_shim(self, request: CreateShimInput) -> CreateShimOutput:
        """Create the containerd container and its task."""
        async with self._checked(request.container_id, dict(request.spec), request.binds) as spec:
            await self._containerd.create_container(
                request.container_id,
                request.image,
                snapshot_key=request.container_id,
                spec=spec,
                labels=request.labels,
            )
            await self._end_orphaned_shims(request.container_id)
            log = await asyncio.to_thread(self._log_uri, request.container_id)
            stdin, terminal = await init_stdio(self._paths, request.container_id, spec)
            pid = await self._containerd.create_task(
                request.container_id, stdout=log, stderr=log, stdin=stdin, terminal=terminal
            )
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
        if task is not None and task.pid != request.old_pid and task.status is TaskStatus.RUNNING:
            return ReplaceTaskOutput(pid=task.pid)
        stored = await self._containerd.container_spec(cid)
        # Checked (and the sources pinned) before the old task goes: a refusal leaves it as is.
        async with self._checked(cid, stored, request.binds) as spec:
            if task is not None and (
                task.pid == request.old_pid or task.status is not TaskStatus.CREATED
            ):
                await self._containerd.delete_task(cid)
            if request.binds:
                await self._containerd.set_container_spec(cid, spec)
            await self._end_orphaned_shims(cid)
            log = await asyncio.to_thread(self._log_uri, cid)
            stdin, terminal = await init_stdio(self._paths, cid, spec)
            await self._containerd.create_task(
                cid, stdout=log, stderr=log, stdin=stdin, terminal=terminal
            )
        return ReplaceTaskOutput(pid=await self._containerd.start_task(cid))

    @activity.defn(name="delete_shim")
    @fault_point("undo-shim")
    async def delete_shim(self, request: ContainerRef) -> None:
        """Delete the task and the containerd container."""
        await self._containerd.delete_task(request.container_id)
        await self._end_orphaned_shims(request.container_id)
        await self._containerd.delete_container(request.container_id)
        # Pins a crash left between pinning and task creation.
        await asyncio.to_thread(release_pins, self._paths.bind_pins(request.container_id))


def end_orphaned_shims(socket: Path, namespace: str, container_id: str) -> list[ShimProcess]:
    """SIGKILL the container's shims of the containerd at ``socket`` and its cgroup's processes.

    Only for a container whose task containerd does not list: its shims are leftovers. Returns
    the shims ended.
    """
    shims = [shim for shim in list_shims(socket, namespace) if shim.container_id == container_id]
    for shim in shims:
        kill_shim(shim)
    if shims:
        # A ``runc init`` a killed create left waits in the cgroup the new task will use.
        kill_cgroup_processes(container_cgroups().get(container_id, ()))
    return shims
