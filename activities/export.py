"""Step ``export``: a tar of a container's filesystem, read from its mounted rootfs.

The rootfs is held for the export through the mount step's holder set (holder
``export:<operation>``), so an export of a running container reuses its mount and an export of
a stopped one mounts it; the mount goes away when the last holder releases it. This module only
looks the container up (``begin_export``) and writes the tar (``export_rootfs``).

Where the tar goes is a client's choice, so it is confined, on the node, at every export: the
output's directory must be at or below an allowed export directory (the node's own
``<state_dir>/nodes/<node>/exports``, created 0700 on first use, plus the operator's
``allowed_export_paths``), reached from that directory one component at a time with
``O_NOFOLLOW`` (a symlink on the way is ``Forbidden``), and an existing output must be a regular
file or a symlink. The tar is written to a temporary file created (``O_EXCL | O_NOFOLLOW``)
relative to that directory's fd, then renamed over the output: a symlink at the output is
replaced, never followed. A failed export leaves no temporary file; running it again writes the
same tar.

What goes into the tar is the container's, so the rootfs is walked by
:func:`berth.runtime.rootfs_tar.write_tar` (the walk the node endpoint's streamed export and cp
use too): every entry is opened relative to its parent's fd without following it, symlinks are
stored as symlinks, device nodes and FIFOs are stored as headers and never opened, and nothing on
another filesystem (a mount under the rootfs) is entered. The walk runs in a thread and the
activity heartbeats while it runs; a cancel stops the walk and removes the temporary file.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import stat
import threading
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from berth.activities.state import facts_of
from berth.config import NodePaths
from berth.db.repository import ContainerRepository
from berth.errors import Forbidden, InvalidParameter, System
from berth.faults import NO_FAULTS, FaultHook, fault_point
from berth.runtime import rootfs_files
from berth.runtime.rootfs_tar import Progress, Stopped, write_tar
from berth.state_machine import decide_export
from berth.steps import BeginExportInput, ExportRootfsInput, ExportRootfsOutput, ExportTarget

HEARTBEAT_SECONDS = 2.0


class ExportActivities:
    """Exports of one node's container filesystems."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        paths: NodePaths,
        faults: FaultHook = NO_FAULTS,
        allowed_export_paths: Sequence[Path] = (),
    ) -> None:
        self._sessions = sessions
        self._paths = paths
        self._faults = faults
        self._allowed_export_paths = allowed_export_paths

    @activity.defn(name="begin_export")
    async def begin_export(self, request: BeginExportInput) -> ExportTarget:
        """The container to export; ``Conflict`` when it is being removed or dead."""
        async with self._sessions() as session:
            container = await ContainerRepository(session).get(request.container)
        decision = decide_export(facts_of(container))
        if decision.error is not None:
            raise decision.error
        return ExportTarget(
            container_id=container.id,
            name=container.name,
            node=container.node,
            image=container.image,
        )

    @activity.defn(name="export_rootfs")
    @fault_point("export")
    async def export_rootfs(self, request: ExportRootfsInput) -> ExportRootfsOutput:
        """Write the tar of the mounted rootfs to ``request.output``, heartbeating meanwhile."""
        rootfs = self._paths.rootfs(request.container_id)
        stop = threading.Event()
        written = Progress()
        work = asyncio.ensure_future(
            asyncio.to_thread(
                export_to,
                rootfs,
                Path(request.output),
                ExportDirectories(self._paths.exports_dir, self._allowed_export_paths),
                stop,
                written,
            )
        )
        try:
            while not (await asyncio.wait({work}, timeout=HEARTBEAT_SECONDS))[0]:
                if not activity.info().is_local:
                    activity.heartbeat(written.entries)
        except asyncio.CancelledError:
            stop.set()  # the walk stops at its next entry and removes its temporary file
            await asyncio.wait({work})
            raise
        return ExportRootfsOutput(size_bytes=work.result())


class ExportDirectories:
    """Where exports may be written on this node: its own directory and the operator's."""

    def __init__(self, own: Path, allowed: Sequence[Path] = ()) -> None:
        self.own = own
        self.allowed = list(allowed)

    def roots(self) -> list[Path]:
        """Every allowed directory, resolved now (the operator's may be reached via symlinks)."""
        return [Path(os.path.realpath(root)) for root in (self.own, *self.allowed)]


def export_to(
    rootfs: Path,
    output: Path,
    directories: ExportDirectories,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
) -> int:
    """Tar ``rootfs`` into ``output`` (confined to ``directories``); returns the tar's size.

    Raises:
        InvalidParameter: ``output`` is not an absolute file path, or its directory is missing.
        Forbidden: ``output`` is outside every allowed export directory, reached through a
            symlink, or an existing file there is not a regular file.
        System: the tar could not be written.
    """
    dir_fd, name = open_output_directory(output, directories)
    partial = f".{name}.{secrets.token_hex(4)}.partial"
    try:
        fd = os.open(
            partial,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=dir_fd,
        )
        try:
            with os.fdopen(fd, "wb") as stream:
                write_tar(rootfs, stream, stop or threading.Event(), progress or Progress())
            _check_replaceable(dir_fd, name, output)
            os.replace(partial, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_size
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial, dir_fd=dir_fd)
            raise
    except Stopped:
        raise System(f"export to {output}: cancelled") from None
    except OSError as error:
        raise System(f"export to {output}: {error.strerror or error}") from error
    finally:
        os.close(dir_fd)


def open_output_directory(output: Path, directories: ExportDirectories) -> tuple[int, str]:
    """The output's directory as an fd, walked without following symlinks, and the file name.

    Raises:
        InvalidParameter: the path is not absolute, has ``..`` or no name, or the directory is
            missing or not a directory.
        Forbidden: the directory is outside every allowed export directory or is reached
            through a symlink, or an existing output is not a regular file or a symlink.
    """
    if not output.is_absolute() or ".." in output.parts or not output.name:
        raise InvalidParameter(f"output: {output} must be an absolute file path without '..'")
    directory = output.parent
    roots = directories.roots()
    root = next((r for r in roots if directory == r or r in directory.parents), None)
    if root is None:
        raise Forbidden(
            f"output: {output} is not in an allowed export directory of this node "
            f"({', '.join(map(str, roots))})"
        )
    if root == Path(os.path.realpath(directories.own)):
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        raise InvalidParameter(f"output: export directory {root}: {error.strerror}") from error
    try:
        for part in directory.relative_to(root).parts:
            child = _open_subdirectory(fd, part, directory)
            os.close(fd)
            fd = child
        _check_replaceable(fd, output.name, output)
    except BaseException:
        os.close(fd)
        raise
    return fd, output.name


def _open_subdirectory(parent: int, name: str, directory: Path) -> int:
    """``name`` in ``parent`` as a directory fd, never through a symlink."""
    try:
        return os.open(
            name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent
        )
    except OSError as error:
        if error.errno in (errno.ENOTDIR, errno.ELOOP) and _is_symlink(parent, name):
            raise Forbidden(f"output: directory {directory} is reached through a symlink") from None
        if error.errno == errno.ENOENT:
            raise InvalidParameter(f"output: directory {directory} does not exist") from None
        raise InvalidParameter(f"output: directory {directory}: {error.strerror}") from None


def _is_symlink(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _check_replaceable(dir_fd: int, name: str, output: Path) -> None:
    """Only a regular file or a symlink (replaced, not followed) may be overwritten."""
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise Forbidden(f"output: {output} exists and is {rootfs_files.kind(mode)}")
