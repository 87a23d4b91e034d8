"""Named volumes on the node's filesystem (docker's ``local`` driver).

A volume is a directory of the node's own, ``<workload root>/volumes/<name>``, whose ``_data``
is what containers mount. The name is checked by the contract (one path component, no ``..``),
and the path is derived from it here, never taken from a client.

``_data`` appears only whole: a container's first start builds it in a directory of its own
(``.init-<container id>``), copies in what the image has at the mount's target (docker copies
an image's content into an empty new volume), and renames it into place; a start that finds
``_data`` there uses it as it is. So a step that crashed mid-copy, a retry, or two containers
starting on one new volume at once all converge to one populated ``_data``.

The image's files are the container's, so untrusted: the target is walked one component at a
time without following a link, links are copied as links, only directories, regular files and
links are copied (no device, FIFO or socket), with their owner and mode.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

from berth.config import NodePaths, make_private_dir
from berth.contract import VolumeMount

DATA = "_data"
# Docker's mode for a new volume's _data when the image has nothing at the target.
DATA_MODE = 0o755


def volumes_dir(paths: NodePaths) -> Path:
    """The parent of this deployment's volumes on the node."""
    return paths.workload_root / "volumes"


def volume_dir(paths: NodePaths, name: str) -> Path:
    """The volume's own directory (``_data`` is under it)."""
    return volumes_dir(paths) / name


def data_dir(paths: NodePaths, name: str) -> Path:
    """What a container mounts: the volume's ``_data``."""
    return volume_dir(paths, name) / DATA


def make_volume_dir(paths: NodePaths, name: str) -> Path:
    """Create the volume's directory (0700; ``_data`` comes at first use); idempotent."""
    return make_private_dir(volume_dir(paths, name))


def volume_names(paths: NodePaths) -> frozenset[str]:
    """The names of the volume directories on the node."""
    try:
        return frozenset(entry.name for entry in volumes_dir(paths).iterdir())
    except FileNotFoundError:
        return frozenset()


def remove_volume_dir(paths: NodePaths, name: str) -> None:
    """Delete the volume's directory and its data; a missing one is success.

    ``shutil.rmtree`` works from directory descriptors and does not follow links, so a link a
    container planted in the volume cannot lead the deletion outside it.
    """
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(volume_dir(paths, name))


def prepare_volumes(
    paths: NodePaths, container_id: str, volumes: Sequence[VolumeMount], rootfs: Path
) -> list[str]:
    """Each volume's ``_data`` path, made (and filled from the image) where it is missing."""
    sources = []
    for volume in volumes:
        data = data_dir(paths, volume.name)
        if not data.is_dir():
            _populate(make_volume_dir(paths, volume.name), container_id, rootfs, volume.target)
        sources.append(str(data))
    return sources


def _populate(volume: Path, container_id: str, rootfs: Path, target: str) -> None:
    """Build ``_data`` from the image's content at ``target`` and move it into place."""
    building = volume / f".init-{container_id}"
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(building)  # what a crashed try of this container left
    source = _open_in_rootfs(rootfs, target)
    try:
        building.mkdir(mode=DATA_MODE)
        os.chmod(building, DATA_MODE)  # whatever the umask
        if source is not None:
            _copy_dir(source, building)
    finally:
        if source is not None:
            os.close(source)
    try:
        building.rename(volume / DATA)
    except OSError as err:
        # Another start populated it first: keep its _data, drop this copy.
        if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        shutil.rmtree(building)


def _open_in_rootfs(rootfs: Path, target: str) -> int | None:
    """A descriptor of the directory at ``target`` under ``rootfs``, reached without following
    a link; None when there is none (nothing to copy)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(rootfs, flags)
    for part in [part for part in target.split("/") if part]:
        try:
            child = os.open(part, flags, dir_fd=fd)
        except OSError as err:
            # Missing, a link (ELOOP) or not a directory: the volume starts empty.
            if err.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                os.close(fd)
                return None
            os.close(fd)
            raise
        os.close(fd)
        fd = child
    return fd


def _copy_dir(source: int, into: Path) -> None:
    """Copy the directory open at ``source`` into the existing ``into``, owner and mode too."""
    for entry in os.scandir(source):
        info = os.stat(entry.name, dir_fd=source, follow_symlinks=False)
        out = into / entry.name
        if stat.S_ISDIR(info.st_mode):
            child = os.open(
                entry.name,
                os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                dir_fd=source,
            )
            try:
                out.mkdir(mode=0o700)
                _copy_dir(child, out)
            finally:
                os.close(child)
        elif stat.S_ISREG(info.st_mode):
            _copy_file(source, entry.name, out)
        elif stat.S_ISLNK(info.st_mode):
            os.symlink(os.readlink(entry.name, dir_fd=source), out)
        else:
            continue  # a device, FIFO or socket: not data a volume starts with
        os.chown(out, info.st_uid, info.st_gid, follow_symlinks=False)
        if not stat.S_ISLNK(info.st_mode):
            os.chmod(out, stat.S_IMODE(info.st_mode))
    top = os.fstat(source)
    os.chown(into, top.st_uid, top.st_gid)
    os.chmod(into, stat.S_IMODE(top.st_mode))


def _copy_file(directory: int, name: str, out: Path) -> None:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
    try:
        with (
            os.fdopen(fd, "rb", closefd=False) as reader,
            open(out, "xb") as writer,
        ):
            shutil.copyfileobj(reader, writer, 1 << 20)
    finally:
        os.close(fd)
