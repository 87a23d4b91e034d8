"""Step ``export``: a tar of a container's filesystem, read from its mounted rootfs.

The rootfs is held for the export through the mount step's holder set (holder
``export:<workflow id>``), so an export of a running container reuses its mount and an export of
a stopped one mounts it; the mount goes away when the last holder releases it. This module only
looks the container up (``begin_export``) and writes the tar (``export_rootfs``).

The tar is written to a temporary file created (``O_EXCL | O_NOFOLLOW``) in the output's
directory, which is opened without following symlinks, then renamed over the output: a symlink
at the output is replaced, never followed, so nothing is written outside that directory. A
failed export leaves no temporary file; running it again writes the same tar.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tarfile
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.types import StepModel
from berth.config import NodePaths
from berth.contract import ContainerState
from berth.db.repository import ContainerRepository
from berth.errors import Conflict, InvalidParameter, System
from berth.faults import NO_FAULTS, FaultHook, fault_point


class BeginExportInput(StepModel):
    container: str


class ExportTarget(StepModel):
    """The container an export reads: enough to hold and find its rootfs."""

    container_id: str
    name: str
    node: str
    image: str


class ExportRootfsInput(StepModel):
    container_id: str
    node: str
    output: str


class ExportRootfsOutput(StepModel):
    size_bytes: int


class ExportActivities:
    """Exports of one node's container filesystems."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        paths: NodePaths,
        faults: FaultHook = NO_FAULTS,
    ) -> None:
        self._sessions = sessions
        self._paths = paths
        self._faults = faults

    @activity.defn(name="begin_export")
    async def begin_export(self, request: BeginExportInput) -> ExportTarget:
        """The container to export; ``Conflict`` when it is being removed or dead."""
        async with self._sessions() as session:
            container = await ContainerRepository(session).get(request.container)
        if container.state in (ContainerState.REMOVING, ContainerState.DEAD):
            raise Conflict(f"container {container.name} is marked for removal")
        return ExportTarget(
            container_id=container.id,
            name=container.name,
            node=container.node,
            image=container.image,
        )

    @activity.defn(name="export_rootfs")
    @fault_point("export")
    async def export_rootfs(self, request: ExportRootfsInput) -> ExportRootfsOutput:
        """Write the tar of the mounted rootfs to ``request.output``."""
        rootfs = self._paths.rootfs(request.container_id)
        size = await asyncio.to_thread(write_tar, rootfs, Path(request.output))
        return ExportRootfsOutput(size_bytes=size)


def write_tar(rootfs: Path, output: Path) -> int:
    """Tar ``rootfs`` (symlinks kept as links) into ``output``; returns the tar's size.

    Raises:
        InvalidParameter: the output path is not absolute, or its directory is missing, not a
            directory, or reached through a symlink.
        System: the tar could not be written.
    """
    directory, name = _checked_output(output)
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as error:
        raise InvalidParameter(f"output directory {directory}: {error.strerror}") from error
    partial = f".{name}.{secrets.token_hex(4)}.partial"
    try:
        fd = os.open(
            partial,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=dir_fd,
        )
        try:
            with os.fdopen(fd, "wb") as stream, tarfile.open(fileobj=stream, mode="w") as tar:
                tar.add(os.fspath(rootfs), arcname=".", recursive=True)
            os.replace(partial, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_size
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial, dir_fd=dir_fd)
            raise
    except OSError as error:
        raise System(f"export to {output}: {error.strerror or error}") from error
    finally:
        os.close(dir_fd)


def _checked_output(output: Path) -> tuple[Path, str]:
    if not output.is_absolute() or ".." in output.parts or not output.name:
        raise InvalidParameter(f"output {output}: must be an absolute file path without '..'")
    directory = output.parent
    if os.path.realpath(directory) != os.fspath(directory):
        raise InvalidParameter(
            f"output directory {directory} is reached through a symlink; "
            f"give the resolved path {os.path.realpath(directory)}"
        )
    if not directory.is_dir():
        raise InvalidParameter(f"output directory {directory} does not exist")
    return directory, output.name
