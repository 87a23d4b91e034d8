"""The node endpoint's ``Files`` service (berth/node_api/files.proto): cp and a streamed export.

Each call holds the container's rootfs as a mount holder of its own for as long as it runs,
through the mount step's own code (:class:`berth.activities.mount.MountActivities`, called
directly): a running container's mount is reused (one more holder), a stopped one's is mounted
and unmounted with the last holder. The holder is ``endpoint:<agent>:<call>``
(:mod:`berth.endpoint.holders`): the call releases it when it ends, also when the client goes
away mid-stream (the handler is cancelled, and the call's done-callback releases it too); a
holder left by an agent that crashed names a process that is gone, which the reconciler
releases. A container being removed is refused (``Conflict``), as the workflow's export does.

The tar is walked or extracted by :mod:`berth.runtime.rootfs_tar` in a thread: out of the rootfs
without following a link out of it, into it one ``O_NOFOLLOW`` component at a time, owned by the
container's root unless the client keeps the tar's owners (docker cp ``-a``). Bytes cross
between the thread and the event loop through a bounded queue, so a slow client slows the walk
rather than filling the agent's memory (:mod:`berth.endpoint.streams`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import tarfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, TypeVar

import grpc

from berth.activities.export import ExportActivities
from berth.activities.mount import MountActivities
from berth.db.repository import ContainerRepository
from berth.endpoint.deps import EndpointDeps
from berth.endpoint.holders import agent_identity, call_holder
from berth.endpoint.streams import ThreadReader, ThreadWriter
from berth.errors import BerthError, InvalidParameter, NotFound, System
from berth.node_api import files_pb2, files_pb2_grpc
from berth.runtime import rootfs_files, rootfs_tar
from berth.steps import BeginExportInput, ExportTarget, MountRootfsInput, ReleaseRootfsInput

T = TypeVar("T")

# The owner of what a copy writes into a container (its root, as docker cp does).
CONTAINER_ROOT = (0, 0)
# What the runtime mounts in every container (berth.runtime.oci_spec), over its rootfs' dirs.
RUNTIME_MOUNTS = ("/proc", "/sys", "/dev")

Write = Callable[[BinaryIO, threading.Event, rootfs_tar.Progress], object]


def register(server: grpc.aio.Server, deps: EndpointDeps) -> None:
    """Add the ``Files`` servicer to ``server``."""
    files_pb2_grpc.add_FilesServicer_to_server(FilesServicer(deps), server)


class FilesServicer(files_pb2_grpc.FilesServicer):
    """cp in and out of a container's rootfs, and its export, as tar streams."""

    def __init__(self, deps: EndpointDeps) -> None:
        agent = agent_identity()
        if agent is None:
            raise System("node endpoint: cannot read this process's identity from /proc")
        self._agent = agent
        self._node = deps.settings.node
        self._paths = deps.paths
        self._sessions = deps.sessions
        self._mounts = MountActivities(deps.sessions, deps.containerd, deps.paths)
        self._containers = ExportActivities(deps.sessions, deps.paths)

    async def CopyFrom(
        self, request: files_pb2.CopyFromRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[files_pb2.Chunk]:
        """A tar of ``request.path`` in the container, its top member named by its basename."""
        async with self._held(request.container_id, context) as (rootfs, call):
            path, follow = request.path or "/", request.follow_link

            def write(out: BinaryIO, stop: threading.Event, progress: rootfs_tar.Progress) -> None:
                rootfs_tar.write_path(rootfs, path, out, stop, progress, call.mounts, follow)

            async for chunk in _stream(write, call):
                yield chunk

    async def Export(
        self, request: files_pb2.ExportRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[files_pb2.Chunk]:
        """A tar of the container's whole filesystem, as the workflow's export writes it."""
        async with self._held(request.container_id, context) as (rootfs, call):

            def write(out: BinaryIO, stop: threading.Event, progress: rootfs_tar.Progress) -> None:
                rootfs_tar.write_tar(rootfs, out, stop, progress)

            async for chunk in _stream(write, call):
                yield chunk

    async def CopyTo(
        self,
        request_iterator: AsyncIterator[files_pb2.CopyToInput],
        context: grpc.aio.ServicerContext,
    ) -> files_pb2.CopyToResult:
        """Extract the streamed tar at the target (the first input) in the container."""
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("target"):
            raise InvalidParameter("CopyTo: the first input must be the target")
        target = first.target
        async with self._held(target.container_id, context) as (rootfs, call):
            loop = asyncio.get_running_loop()
            source = ThreadReader(loop, _data(request_iterator), call.stop)
            owner = None if target.keep_owners else CONTAINER_ROOT

            def extract() -> rootfs_tar.Extracted:
                return rootfs_tar.extract(
                    source,  # type: ignore[arg-type]  # read() is all tarfile's stream uses
                    lambda first: _place_in_rootfs(rootfs, target, first, call.mounts),
                    owner,
                    devices=True,
                    stop=call.stop,
                )

            done = await call.run(extract)
            return files_pb2.CopyToResult(entries=done.entries, bytes=done.bytes)

    @contextlib.asynccontextmanager
    async def _held(
        self, container: str, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[tuple[Path, _Call]]:
        """The container's rootfs, held as this call's own holder until the block ends."""
        found = await self._containers.begin_export(BeginExportInput(container=container))
        if found.node != self._node:
            raise NotFound(f"container {found.name} is on node {found.node}, not {self._node}")
        call = _Call(self._mounts, found, self._node, call_holder(self._agent))
        call.mounts = await self._mount_targets(found.container_id)
        context.add_done_callback(lambda _: call.end_soon())
        try:
            await self._mounts.mount_rootfs(
                MountRootfsInput(
                    container_id=found.container_id,
                    node=self._node,
                    image=found.image,
                    holder=call.holder,
                )
            )
            call.mounted = True
            if call.stop.is_set():
                raise System("the client went away")
            yield self._paths.rootfs(found.container_id), call
        finally:
            await asyncio.shield(call.end())

    async def _mount_targets(self, container_id: str) -> tuple[str, ...]:
        """Where the container has mounts of its own (none is at the node's rootfs view)."""
        async with self._sessions() as session:
            config = (await ContainerRepository(session).get(container_id)).config
        binds = [mount["target"] for mount in config.get("binds", [])]
        volumes = [mount["target"] for mount in config.get("volumes", [])]
        return (*RUNTIME_MOUNTS, *binds, *volumes, *config.get("tmpfs", {}))


class _Call:
    """One call's holder and the thread working for it; ``end`` stops both, once."""

    def __init__(
        self, mounts: MountActivities, target: ExportTarget, node: str, holder: str
    ) -> None:
        self.holder = holder
        self.stop = threading.Event()
        # Set once the holder is taken: a release before then could precede the acquire.
        self.mounted = False
        # The container's own mount targets, which a copy may not read or write beneath.
        self.mounts: tuple[str, ...] = ()
        self._mounts = mounts
        self._release = ReleaseRootfsInput(
            container_id=target.container_id, node=node, holder=holder
        )
        self._work: asyncio.Future[Any] | None = None
        self._ended: asyncio.Task[None] | None = None

    async def run(self, work: Callable[[], T]) -> T:
        """Run ``work`` in a thread; a cancelled caller stops it (``end`` waits for it)."""
        self._work = asyncio.ensure_future(asyncio.to_thread(_as_berth_error, work))
        return await asyncio.shield(self._work)  # type: ignore[no-any-return]

    def end_soon(self) -> None:
        """From the call's done-callback: the client went away or the call finished."""
        self.stop.set()
        if not self.mounted:
            return  # the block's own end releases it, once its mount step is over
        with contextlib.suppress(RuntimeError):  # no loop: the agent is shutting down
            asyncio.get_running_loop()
            self._start_end()

    def end(self) -> Awaitable[None]:
        self.stop.set()
        return self._start_end()

    def _start_end(self) -> asyncio.Task[None]:
        if self._ended is None:
            self._ended = asyncio.ensure_future(self._finish())
        return self._ended

    async def _finish(self) -> None:
        if self._work is not None:
            await asyncio.wait({self._work})  # the thread has no fd of the rootfs left
            if not self._work.cancelled():
                self._work.exception()  # seen: a call cut short has nobody else to see it
        await self._mounts.release_rootfs(self._release)


def _as_berth_error(work: Callable[[], T]) -> T:
    """``work()``, with what a walk or an extraction raises as Berth's errors."""
    try:
        return work()
    except BerthError:
        raise
    except rootfs_tar.Stopped:
        raise System("the call was cancelled") from None
    except OSError as error:
        raise System(f"{error.strerror or error}") from error


async def _stream(write: Write, call: _Call) -> AsyncIterator[files_pb2.Chunk]:
    """Run ``write`` in a thread and yield what it writes, in chunks, as it writes it."""
    out = ThreadWriter(asyncio.get_running_loop(), call.stop)

    def produce() -> None:
        try:
            write(out, call.stop, rootfs_tar.Progress())  # type: ignore[arg-type]
        finally:
            out.close()

    work = asyncio.ensure_future(call.run(produce))
    try:
        async for chunk in out.chunks():
            yield files_pb2.Chunk(data=chunk)
        await work  # the walk's error, if it failed
    finally:
        # A client gone mid-stream: the walk ends with ``Stopped``, which nobody awaits.
        work.add_done_callback(lambda done: done.cancelled() or done.exception())


async def _data(inputs: AsyncIterator[files_pb2.CopyToInput]) -> AsyncIterator[bytes]:
    """The tar's bytes from a CopyTo's inputs after the first."""
    async for message in inputs:
        if message.HasField("target"):
            raise InvalidParameter("CopyTo: only the first input may be the target")
        yield message.data


def _place_in_rootfs(
    rootfs: Path,
    target: files_pb2.CopyTarget,
    first: tarfile.TarInfo | None,
    mounts: tuple[str, ...],
) -> tuple[int, str | None]:
    """The directory (an fd) a copy into the container extracts into, and its top's new name.

    The destination is resolved inside the rootfs as chroot would (its symlinks followed, but
    never out of the rootfs); docker cp's rules then pick it or its parent
    (:func:`berth.runtime.rootfs_tar.placement`).
    """
    path = "/" + target.path.lstrip("/")
    root_fd = rootfs_files.open_root(rootfs)
    try:
        found = rootfs_files.resolve(root_fd, path)
        is_dir = found is not None and stat.S_ISDIR(os.fstat(found).st_mode)
        if target.mode == files_pb2.COPY_MODE_ARCHIVE:
            if found is None:
                raise NotFound(f"Could not find the file {path} in container")
            if not is_dir:
                os.close(found)
                raise InvalidParameter(f"extraction point {path} is not a directory")
            return _directory(found, rootfs, path, mounts), None
        destination = rootfs_tar.Destination(found is not None, is_dir, path.endswith("/"))
        name = PurePosixPath(path).name
        where = rootfs_tar.placement(
            destination,
            name,
            source_is_dir=first is not None and first.isdir(),
            contents=target.mode == files_pb2.COPY_MODE_CONTENTS,
        )
        if not where.into_parent and found is not None:
            return _directory(found, rootfs, path, mounts), where.top
        if found is not None:
            os.close(found)
        parent = rootfs_files.resolve(root_fd, str(PurePosixPath(path).parent))
        if parent is None or not stat.S_ISDIR(os.fstat(parent).st_mode):
            if parent is not None:
                os.close(parent)
            raise NotFound(f"Could not find the file {PurePosixPath(path).parent} in container")
        return _directory(parent, rootfs, path, mounts), where.top
    finally:
        os.close(root_fd)


def _directory(path_fd: int, rootfs: Path, shown: str, mounts: tuple[str, ...]) -> int:
    """A readable directory fd of the very inode behind the ``O_PATH`` fd ``path_fd``, which
    must not be at or under one of the container's mounts."""
    try:
        rootfs_tar.refuse_mounted(rootfs, path_fd, shown, mounts)
        return rootfs_files.reopen(path_fd, os.O_RDONLY | os.O_DIRECTORY)
    finally:
        os.close(path_fd)
