"""Step ``shim create``: the containerd container and its task (runc v2 shim), not yet started.

Do: create the containerd container with the spec (replacing a stale one left by a crashed
attempt), then create its task with stdout and stderr to ``<node>/logs/<id>.log`` through the
node's log driver (``berth.container_logs``: the shim runs it beside the task; it rotates the file
within the node's ``log_max_bytes * log_max_files``). Undo: delete the task (killing it if it
runs), then the container; "not found" is success at each.

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
from berth.runtime.containerd import ContainerdClient
from berth.runtime.oci_spec import client_bind_indexes, with_bind_sources
from berth.runtime.types import TaskStatus
from berth.steps import (
    ContainerRef,
    CreateShimInput,
    CreateShimOutput,
    ReplaceTaskInput,
    ReplaceTaskOutput,
)


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
            log = await asyncio.to_thread(self._log_uri, request.container_id)
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
            log = await asyncio.to_thread(self._log_uri, cid)
            await self._containerd.create_task(cid, stdout=log, stderr=log)
        return ReplaceTaskOutput(pid=await self._containerd.start_task(cid))

    @activity.defn(name="delete_shim")
    @fault_point("undo-shim")
    async def delete_shim(self, request: ContainerRef) -> None:
        """Delete the task and the containerd container."""
        await self._containerd.delete_task(request.container_id)
        await self._containerd.delete_container(request.container_id)
        # Pins a crash left between pinning and task creation.
        await asyncio.to_thread(release_pins, self._paths.bind_pins(request.container_id))
