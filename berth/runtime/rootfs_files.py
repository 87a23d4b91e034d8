"""Files under a container's rootfs, opened by the node agent without trusting any of them.

A container controls every name under its rootfs and may change any of them at any moment (a
file swapped for a symlink, a FIFO, a device node, a huge file). Everything here therefore:

- walks from a directory fd of the rootfs, one component at a time, each opened with
  ``O_PATH | O_NOFOLLOW`` relative to its parent's fd: no host path lookup ever goes through a
  container-controlled name, so no symlink, ``..`` or race can lead outside the rootfs;
- resolves symlinks, when asked to, as ``chroot`` would: an absolute target restarts at the
  rootfs, ``..`` stops at it, at most :data:`MAX_SYMLINK_HOPS` links;
- never leaves the rootfs' filesystem (``st_dev``): a mount seen under it is not followed;
- reads only regular files, re-opened from the ``O_PATH`` fd already checked with ``fstat`` (via
  ``/proc/self/fd``), so a swap between the check and the open cannot change what is read, and a
  device node or FIFO is never opened at all (``O_PATH`` does not call the driver's open);
- bounds what it reads (:data:`MAX_FILE_BYTES` unless told otherwise).

Resolution is a user-space walk rather than ``openat2(RESOLVE_IN_ROOT)``: it needs no kernel 5.6
and works under seccomp profiles that answer ``openat2`` with ``ENOSYS`` (older container engines'
defaults, which an agent run in a container may inherit), at a cost of one ``openat`` + ``fstat``
per path component (microseconds; ``/etc/passwd`` is two).

Every function here blocks; callers on an event loop run them in a thread.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from berth.errors import InvalidParameter

MAX_FILE_BYTES = 1 << 20
MAX_SYMLINK_HOPS = 40
# Deeper directory trees are refused rather than walked: the walk holds one fd per level.
MAX_DEPTH = 256

_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFLNK: "a symlink",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def kind(mode: int) -> str:
    """What a file of this mode is, for error messages."""
    return _KINDS.get(stat.S_IFMT(mode), "a regular file")


def open_root(rootfs: Path) -> int:
    """An ``O_PATH`` directory fd of the rootfs itself (a path Berth derives, so trusted)."""
    return os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def open_entry(dir_fd: int, name: str) -> int:
    """An ``O_PATH`` fd of ``name`` in ``dir_fd``, never following it if it is a symlink."""
    return os.open(name, _PATH_FLAGS, dir_fd=dir_fd)


def reopen(path_fd: int, flags: int) -> int:
    """Open the very inode behind ``path_fd`` (an ``O_PATH`` fd) for I/O with ``flags``.

    The reopen goes through ``/proc/self/fd``, which names the open file, not a path: whatever
    the container renamed meanwhile, this is the inode that was ``fstat``-ed.
    """
    return os.open(f"/proc/self/fd/{path_fd}", flags | os.O_CLOEXEC | os.O_NOCTTY)


def read_link(path_fd: int) -> str:
    """The target of the symlink behind ``path_fd`` (an ``O_PATH | O_NOFOLLOW`` fd)."""
    return os.readlink("", dir_fd=path_fd)


def open_regular(path_fd: int, shown: str) -> int:
    """A read-only fd of the regular file behind ``path_fd``, never blocking.

    Raises:
        InvalidParameter: the file is not a regular file (naming ``shown``).
    """
    mode = os.fstat(path_fd).st_mode
    if not stat.S_ISREG(mode):
        raise InvalidParameter(f"{shown} in the container's rootfs is {kind(mode)}, not a file")
    return reopen(path_fd, os.O_RDONLY | os.O_NONBLOCK)


def read_regular(path_fd: int, shown: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The contents of the regular file behind ``path_fd``, at most ``limit`` bytes.

    Raises:
        InvalidParameter: the file is not a regular file, or is larger than ``limit`` (also when
            it grows while being read), naming ``shown``.
    """
    size = os.fstat(path_fd).st_size
    if size > limit:
        raise InvalidParameter(f"{shown} in the container's rootfs is larger than {limit} bytes")
    fd = open_regular(path_fd, shown)
    try:
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, limit + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    finally:
        os.close(fd)
    if total > limit:
        raise InvalidParameter(f"{shown} in the container's rootfs is larger than {limit} bytes")
    return b"".join(chunks)


def resolve(root_fd: int, path: str) -> int | None:
    """An ``O_PATH`` fd of ``path`` inside the rootfs at ``root_fd``, resolved as chroot would.

    Symlinks are followed (the last component too) but only ever inside the rootfs. Returns None
    when the path does not exist there (or a component on the way is not a directory).

    Raises:
        InvalidParameter: more than :data:`MAX_SYMLINK_HOPS` symlinks, or the path crosses into
            another filesystem than the rootfs'.
    """
    shown = "/" + path.lstrip("/")
    root_dev = os.fstat(root_fd).st_dev
    # The directories walked so far, the rootfs first; ``..`` pops one, never the rootfs.
    stack = [os.dup(root_fd)]
    pending = _components(path)
    hops = 0
    try:
        while pending:
            part = pending.pop(0)
            if part == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            try:
                fd = open_entry(stack[-1], part)
            except (FileNotFoundError, NotADirectoryError):
                return None
            info = os.fstat(fd)
            mode = info.st_mode
            if info.st_dev != root_dev:
                os.close(fd)
                raise InvalidParameter(f"{shown}: crosses a mount inside the container's rootfs")
            if stat.S_ISLNK(mode):
                hops += 1
                try:
                    target = read_link(fd)
                finally:
                    os.close(fd)
                if hops > MAX_SYMLINK_HOPS:
                    raise InvalidParameter(f"{shown}: too many levels of symbolic links")
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                pending = _components(target) + pending
            elif pending:
                if not stat.S_ISDIR(mode):
                    os.close(fd)
                    return None
                stack.append(fd)
            else:
                return fd
        return os.dup(stack[-1])
    finally:
        for fd in stack:
            os.close(fd)


def read_file(rootfs: Path, path: str, limit: int = MAX_FILE_BYTES) -> bytes | None:
    """The bytes of ``path`` in ``rootfs`` (resolved inside it); None when there is none.

    Raises:
        InvalidParameter: the file is not a regular file, is larger than ``limit``, or its path
            loops or crosses a mount, naming the file.
    """
    shown = "/" + path.lstrip("/")
    root_fd = open_root(rootfs)
    try:
        fd = resolve(root_fd, path)
    finally:
        os.close(root_fd)
    if fd is None:
        return None
    try:
        return read_regular(fd, shown, limit)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Entry:
    """One file met by :func:`walk`: its path in the rootfs, its ``fstat`` and an ``O_PATH`` fd.

    ``fd`` is the walk's, valid until the walk moves on; read through it (:func:`read_link`,
    :func:`open_regular`), never through ``path``.
    """

    path: str
    stat: os.stat_result
    fd: int


@dataclass
class Skipped:
    """Entries a walk did not descend into or list (mounts seen under the rootfs)."""

    paths: list[str]


def walk(root_fd: int, skipped: Skipped | None = None) -> Iterator[Entry]:
    """Every entry under the rootfs at ``root_fd``, parents before children, names sorted.

    Nothing is followed: a symlink is an entry, a directory is listed through an fd re-opened
    from the one that was ``fstat``-ed, and an entry on another filesystem than the rootfs (a
    mount) is left out and recorded in ``skipped``. Entries that vanish meanwhile are left out.

    Raises:
        InvalidParameter: the tree is deeper than :data:`MAX_DEPTH`.
    """
    root_dev = os.fstat(root_fd).st_dev
    # Per level: the readable directory fd, its path prefix, and the names still to visit.
    levels: list[tuple[int, str, list[str]]] = []
    try:
        first = reopen(root_fd, os.O_RDONLY | os.O_DIRECTORY)
        levels.append((first, "", sorted(os.listdir(first), reverse=True)))
        while levels:
            dir_fd, prefix, names = levels[-1]
            if not names:
                os.close(levels.pop()[0])
                continue
            name = names.pop()
            path = prefix + name
            try:
                fd = open_entry(dir_fd, name)
            except FileNotFoundError:
                continue
            try:
                info = os.fstat(fd)
                if info.st_dev != root_dev:
                    if skipped is not None:
                        skipped.paths.append(path)
                    continue
                yield Entry(path, info, fd)
                if stat.S_ISDIR(info.st_mode):
                    if len(levels) >= MAX_DEPTH:
                        raise InvalidParameter(
                            f"rootfs: directories nested deeper than {MAX_DEPTH} at /{path}"
                        )
                    child = reopen(fd, os.O_RDONLY | os.O_DIRECTORY)
                    try:
                        children = sorted(os.listdir(child), reverse=True)
                    except BaseException:
                        os.close(child)
                        raise
                    levels.append((child, path + "/", children))
            finally:
                os.close(fd)
    finally:
        for dir_fd, _, _ in levels:
            with contextlib.suppress(OSError):
                os.close(dir_fd)


def _components(path: str) -> list[str]:
    return [part for part in PurePosixPath(path).parts if part not in ("/", ".", "")]
