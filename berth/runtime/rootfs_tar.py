"""Tar streams out of and into a container's rootfs (docker export, cp), never through a link.

Out (:func:`write_tar`, :func:`write_path`): the walk of :mod:`berth.runtime.rootfs_files`, one
for the workflow's export and the endpoint's streams. Every entry is opened relative to its
parent's fd without following it, symlinks are stored as symlinks, a file's header comes from
``fstat`` of the fd its bytes are read from, device nodes and FIFOs are stored as headers and
never opened, and nothing on another filesystem (a mount under the rootfs) is entered.

In (:func:`extract`): a tar's members written under a directory fd. Each member's parent is
reached from that fd one component at a time with ``O_NOFOLLOW`` (a missing one is created, a
symlink on the way is refused), its name may not be absolute or climb out with ``..``, an
existing non-directory at its name is unlinked rather than written through, and a hard link
may only name a member already under the target. The same code extracts on the node (into the
rootfs, owned by the container's root as docker cp does) and on the client's host.

Where a member lands follows docker cp: :func:`placement` decides from the destination and the
source whether the tar goes into the destination or replaces it (its top-level name renamed).

Every function here blocks; callers on an event loop run them in a thread.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import tarfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from berth.errors import InvalidParameter, NotFound
from berth.runtime import rootfs_files

log = logging.getLogger(__name__)

_BUFFER = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Stopped(Exception):
    """The tar was cancelled (its ``stop`` event set) while it was being written or read."""


class Progress:
    """How far a tar has got; written by the walk's thread, read by a heartbeat."""

    def __init__(self) -> None:
        self.entries = 0
        self.bytes = 0


# --- out: rootfs to tar ---------------------------------------------------------------------


def write_tar(
    rootfs: Path, stream: BinaryIO, stop: threading.Event, progress: Progress
) -> list[str]:
    """Write the tar of the whole ``rootfs`` (members ``.`` and ``./<path>``) to ``stream``.

    Returns the mounts under the rootfs that were left out.
    """
    root_fd = rootfs_files.open_root(rootfs)
    try:
        return _write(root_fd, ".", stream, stop, progress)
    finally:
        os.close(root_fd)


def write_path(
    rootfs: Path,
    path: str,
    stream: BinaryIO,
    stop: threading.Event,
    progress: Progress,
    mounts: Sequence[str] = (),
    follow_link: bool = False,
    top: str | None = None,
) -> list[str]:
    """Write the tar of ``path`` in ``rootfs`` to ``stream``, its top member named by its basename.

    The path's directories are resolved inside the rootfs as chroot would; its last component is
    not followed (a symlink is copied as one, as docker cp does) unless the path ends with ``/``
    or ``/.`` or ``follow_link`` is set (docker cp -L). A path ending with ``/.`` or naming ``/``
    has the top member ``.`` (its contents); ``top`` names it otherwise.

    Raises:
        NotFound: nothing is at ``path``.
        InvalidParameter: the path crosses a mount, loops, has a trailing ``/`` on a
            non-directory, or resolves at or under one of the container's ``mounts``.
    """
    root_fd = rootfs_files.open_root(rootfs)
    try:
        fd = open_source(root_fd, path, follow_link)
    finally:
        os.close(root_fd)
    try:
        refuse_mounted(rootfs, fd, path, mounts)
        return _write(fd, top or top_name(path), stream, stop, progress)
    finally:
        os.close(fd)


def top_name(path: str) -> str:
    """The tar's top member for a copy of ``path``: its basename, or ``.`` for its contents."""
    pure = PurePosixPath("/" + path.lstrip("/"))
    if path.endswith("/.") or pure.name in ("", ".."):
        return "."
    return pure.name


def refuse_mounted(rootfs: Path, fd: int, shown: str, mounts: Sequence[str]) -> None:
    """Refuse what ``fd`` (resolved in ``rootfs``) is when it is at or under a mount target.

    The container's binds, volumes and tmpfs are mounted in its own mount namespace, not at the
    node's view of its rootfs: there, a mount target is the empty directory beneath the mount.

    Raises:
        InvalidParameter: the file is at or under one of ``mounts``.
    """
    if not mounts:
        return
    resolved = PurePosixPath(os.readlink(f"/proc/self/fd/{fd}"))
    inside = PurePosixPath("/") / resolved.relative_to(os.path.realpath(rootfs))
    for target in mounts:
        mount = PurePosixPath(target)
        if inside == mount or mount in inside.parents:
            raise InvalidParameter(
                f"{shown}: is on the container's mount {target} (a bind, volume or tmpfs);"
                " cp reaches the container's own filesystem only"
            )


def open_source(root_fd: int, path: str, follow_link: bool = False) -> int:
    """An ``O_PATH`` fd of what ``path`` names in the rootfs at ``root_fd`` (see write_path)."""
    shown = "/" + path.lstrip("/")
    parent, _, name = shown.rstrip("/").rpartition("/")
    follow = follow_link or shown.endswith(("/", "/.")) or name in ("", ".", "..")
    if follow:
        fd = rootfs_files.resolve(root_fd, shown)
    else:
        parent_fd = rootfs_files.resolve(root_fd, parent or "/")
        fd = None
        if parent_fd is not None:
            try:
                if stat.S_ISDIR(os.fstat(parent_fd).st_mode):
                    with contextlib.suppress(FileNotFoundError):
                        fd = rootfs_files.open_entry(parent_fd, name)
            finally:
                os.close(parent_fd)
    if fd is None:
        raise NotFound(f"Could not find the file {shown} in container")
    info = os.fstat(fd)
    if info.st_dev != os.fstat(root_fd).st_dev:
        os.close(fd)
        raise InvalidParameter(f"{shown}: crosses a mount inside the container's rootfs")
    if follow and shown.endswith("/") and not stat.S_ISDIR(info.st_mode):
        os.close(fd)
        raise InvalidParameter(f"{shown}: not a directory")
    return fd


def _write(
    top_fd: int, top: str, stream: BinaryIO, stop: threading.Event, progress: Progress
) -> list[str]:
    skipped = rootfs_files.Skipped([])
    # The first name each multiply-linked file was stored under, for hard-link members.
    stored: dict[tuple[int, int], str] = {}
    info = os.fstat(top_fd)
    with tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, top, rootfs_files.Entry(top, info, top_fd), stored, progress)
        if stat.S_ISDIR(info.st_mode):
            for entry in rootfs_files.walk(top_fd, skipped):
                if stop.is_set():
                    raise Stopped
                _add(tar, f"{top}/{entry.path}", entry, stored, progress)
    if skipped.paths:
        log.info("tar of %s left out mounts: %s", top, skipped.paths)
    return skipped.paths


def _add(
    tar: tarfile.TarFile,
    name: str,
    entry: rootfs_files.Entry,
    stored: dict[tuple[int, int], str],
    progress: Progress,
) -> None:
    info = _header(name, entry.stat)
    mode = entry.stat.st_mode
    progress.entries += 1
    if stat.S_ISREG(mode):
        key = (entry.stat.st_dev, entry.stat.st_ino)
        if entry.stat.st_nlink > 1 and key in stored:
            info.type, info.linkname, info.size = tarfile.LNKTYPE, stored[key], 0
            tar.addfile(info)
            return
        stored[key] = info.name
        info.size = entry.stat.st_size
        fd = rootfs_files.open_regular(entry.fd, f"/{entry.path}")
        with os.fdopen(fd, "rb", buffering=0) as data:
            tar.addfile(info, _Exactly(data, info.size))
        progress.bytes += info.size
    elif stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif stat.S_ISLNK(mode):
        info.type, info.linkname = tarfile.SYMTYPE, rootfs_files.read_link(entry.fd)
        tar.addfile(info)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(entry.stat.st_rdev), os.minor(entry.stat.st_rdev)
        tar.addfile(info)
    elif stat.S_ISFIFO(mode):
        info.type = tarfile.FIFOTYPE
        tar.addfile(info)
    # A socket has no tar form (as with tar(1) and docker export): left out.


def _header(name: str, info: os.stat_result) -> tarfile.TarInfo:
    header = tarfile.TarInfo(name)
    header.mode = stat.S_IMODE(info.st_mode)
    header.uid, header.gid = info.st_uid, info.st_gid
    # Numeric owners only: names would come from the host's user database, not the container's.
    header.uname = header.gname = ""
    header.mtime = int(info.st_mtime)
    return header


class _Exactly:
    """``size`` bytes of a file that a running container may be changing: cut or zero-padded."""

    def __init__(self, stream: BinaryIO, size: int) -> None:
        self._stream = stream
        self._left = size

    def read(self, size: int = _BUFFER) -> bytes:
        want = min(size, self._left)
        chunk = self._stream.read(want) or b""
        if len(chunk) < want:  # the file shrank: keep the header's size
            chunk += b"\0" * (want - len(chunk))
        self._left -= want
        return chunk


# --- where a copy lands (docker cp) ---------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    """What is at a copy's destination: a directory, something else, or nothing."""

    exists: bool
    is_dir: bool
    # The path ended with ``/`` (docker: then it must be an existing directory).
    trailing_slash: bool


@dataclass(frozen=True)
class Placement:
    """Where a source tar lands: in the destination itself or in its parent, and renamed how.

    ``top`` replaces the tar's top member's name: None keeps it, ``""`` drops it (its contents
    go straight into the directory), a name renames it.
    """

    into_parent: bool
    top: str | None


def placement(
    destination: Destination, name: str, source_is_dir: bool, contents: bool
) -> Placement:
    """docker cp's rules for a source tar arriving at a destination named ``name``.

    ``contents`` is a source ending with ``/.`` (or ``/``): its contents, not itself.

    Raises:
        InvalidParameter: a directory onto a file, or a file onto a missing ``dir/``.
    """
    if destination.exists and destination.is_dir:
        return Placement(into_parent=False, top="" if contents else None)
    if destination.exists:
        if source_is_dir:
            raise InvalidParameter(f"cannot copy a directory to a file: {name}")
        if destination.trailing_slash:
            raise InvalidParameter(f"{name} is not a directory")
        return Placement(into_parent=True, top=name)
    if destination.trailing_slash and not source_is_dir:
        raise InvalidParameter(f"destination directory {name}/ must exist")
    return Placement(into_parent=True, top=name)


# --- in: tar to a directory -----------------------------------------------------------------


@dataclass(frozen=True)
class Extracted:
    """What an extraction wrote: members and bytes of file data."""

    entries: int
    bytes: int


# Given the tar's first member (None for an empty tar): the directory fd to extract into (the
# extraction closes it) and the name replacing the top member's (see Placement.top).
Place = Callable[[tarfile.TarInfo | None], tuple[int, str | None]]


def extract(
    stream: BinaryIO,
    place: Place,
    owner: tuple[int, int] | None,
    devices: bool = False,
    stop: threading.Event | None = None,
) -> Extracted:
    """Extract the tar in ``stream`` under the directory ``place`` picks, as the module doc says.

    ``owner`` (uid, gid) owns every member when given; None keeps the tar's owners. Device nodes
    are made only with ``devices``, else left out.

    Raises:
        InvalidParameter: not a tar, a member's name is absolute or climbs out, its parent is a
            symlink or not a directory, it would replace a directory with a non-directory, or a
            hard link names something outside the target.
    """
    stop = stop or threading.Event()
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            first = tar.next()
            dir_fd, top = place(first)
            writer = _Writer(dir_fd, owner, devices)
            try:
                member = first
                prefix: list[str] | None = None
                while member is not None:
                    if stop.is_set():
                        raise Stopped
                    parts = member_parts(member.name)
                    if prefix is None:
                        prefix = parts
                    link = None
                    if member.islnk():
                        link = _rebase(member_parts(member.linkname), prefix, top, member.name)
                    writer.write(tar, member, _rebase(parts, prefix, top, member.name), link)
                    member = tar.next()
                writer.finish()
            finally:
                writer.close()
    except tarfile.TarError as error:
        raise InvalidParameter(f"not a tar stream: {error}") from None
    return Extracted(writer.entries, writer.bytes)


def member_parts(name: str) -> list[str]:
    """A member's path components; absolute names and ``..`` are refused."""
    if name.startswith("/"):
        raise InvalidParameter(f"tar member {name!r}: absolute names are refused")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise InvalidParameter(f"tar member {name!r}: '..' is refused")
    return parts


def _rebase(parts: list[str], prefix: list[str], top: str | None, name: str) -> list[str]:
    """``parts`` with the top member's ``prefix`` replaced as ``top`` says."""
    if top is None:
        return parts
    if parts[: len(prefix)] != prefix:
        raise InvalidParameter(f"tar member {name!r} is not under the first member")
    return ([top] if top else []) + parts[len(prefix) :]


class _Writer:
    """Writes members under one directory fd, never following a link on the way."""

    def __init__(self, root_fd: int, owner: tuple[int, int] | None, devices: bool) -> None:
        self._root = root_fd
        self._dev = os.fstat(root_fd).st_dev
        self._owner = owner
        self._devices = devices
        # The last parent opened (members come parents first): its components and fd.
        self._cached: tuple[tuple[str, ...], int] | None = None
        # Directories' metadata, set when everything under them is written (as tar does).
        self._dirs: list[tuple[list[str], tarfile.TarInfo]] = []
        self.entries = 0
        self.bytes = 0

    def write(
        self,
        tar: tarfile.TarFile,
        member: tarfile.TarInfo,
        parts: list[str],
        link: list[str] | None = None,
    ) -> None:
        """Write ``member`` at ``parts`` under the root; ``link``: a hard link's target."""
        if not parts:
            return  # the target directory itself: its own metadata stays
        if link is not None:
            self._hard_link(parts, link, member)
            self.entries += 1
            return
        parent = self._parent(parts[:-1], member.name, create=True)
        name = parts[-1]
        if member.isdir():
            if not self._clear(parent, name, member.name, keep_dir=True):
                os.mkdir(name, 0o700, dir_fd=parent)
            self._dirs.append((parts, member))
        elif member.isreg():
            self._clear(parent, name, member.name)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(name, flags, 0o600, dir_fd=parent)
            with os.fdopen(fd, "wb") as out:
                data = tar.extractfile(member)
                if data is not None:
                    while chunk := data.read(_BUFFER):
                        out.write(chunk)
                        self.bytes += len(chunk)
                self._attributes(fd, member)
        elif member.issym():
            self._clear(parent, name, member.name)
            os.symlink(member.linkname, name, dir_fd=parent)
            self._link_attributes(parent, name, member)
        elif member.isfifo() or (member.isdev() and self._devices):
            self._clear(parent, name, member.name)
            kinds = {tarfile.FIFOTYPE: stat.S_IFIFO, tarfile.CHRTYPE: stat.S_IFCHR}
            kind = kinds.get(member.type, stat.S_IFBLK)
            device = os.makedev(member.devmajor, member.devminor) if member.isdev() else 0
            os.mknod(name, 0o600 | kind, device, dir_fd=parent)
            self._link_attributes(parent, name, member)
            # Through an O_PATH fd of the node just made: a swapped name cannot redirect it.
            node = rootfs_files.open_entry(parent, name)
            try:
                if not stat.S_ISLNK(os.fstat(node).st_mode):
                    os.chmod(f"/proc/self/fd/{node}", member.mode & 0o7777)
            finally:
                os.close(node)
        else:
            return  # devices when not allowed, and types tar has no file for
        self.entries += 1

    def finish(self) -> None:
        """Directories' owners, modes and times, deepest first."""
        for parts, member in reversed(self._dirs):
            try:
                fd = self._parent(parts, member.name, create=False)
            except (InvalidParameter, FileNotFoundError):
                continue
            self._attributes(fd, member)

    def close(self) -> None:
        if self._cached is not None:
            os.close(self._cached[1])
            self._cached = None
        os.close(self._root)

    def _parent(self, parts: list[str], shown: str, create: bool) -> int:
        """The directory ``parts`` under the root as an fd (cached; the writer closes it)."""
        key = tuple(parts)
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        fd = os.dup(self._root)
        try:
            for part in parts:
                child = self._open_dir(fd, part, shown, create)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        if self._cached is not None:
            os.close(self._cached[1])
        self._cached = (key, fd)
        return fd

    def _open_dir(self, parent: int, name: str, shown: str, create: bool) -> int:
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(name, 0o755, dir_fd=parent)
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                raise InvalidParameter(
                    f"tar member {shown!r}: {name} is a symlink or not a directory here; "
                    "not followed"
                ) from None
            raise
        if os.fstat(fd).st_dev != self._dev:
            os.close(fd)
            raise InvalidParameter(f"tar member {shown!r}: {name} is another filesystem's")
        return fd

    def _clear(self, parent: int, name: str, shown: str, keep_dir: bool = False) -> bool:
        """Unlink a non-directory at ``name`` (never written through); True if a dir is kept."""
        try:
            mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(mode):
            if keep_dir:
                return True
            raise InvalidParameter(f"tar member {shown!r}: a directory is in the way")
        os.unlink(name, dir_fd=parent)
        return False

    def _hard_link(self, parts: list[str], source: list[str], member: tarfile.TarInfo) -> None:
        """A hard link to a member already under the target, reached without following links."""
        if not source:
            raise InvalidParameter(f"tar member {member.name!r}: links to the target itself")
        try:
            source_parent = os.dup(self._parent(source[:-1], member.linkname, create=False))
        except FileNotFoundError:
            raise InvalidParameter(
                f"tar member {member.name!r}: links to {member.linkname!r}, not in the tar"
            ) from None
        try:
            parent = self._parent(parts[:-1], member.name, create=True)
            self._clear(parent, parts[-1], member.name)
            os.link(
                source[-1],
                parts[-1],
                src_dir_fd=source_parent,
                dst_dir_fd=parent,
                follow_symlinks=False,
            )
        except FileNotFoundError:
            raise InvalidParameter(
                f"tar member {member.name!r}: links to {member.linkname!r}, not in the tar"
            ) from None
        finally:
            os.close(source_parent)

    def _attributes(self, fd: int, member: tarfile.TarInfo) -> None:
        # Owner first: a chown clears setuid bits that the chmod then sets.
        if self._owner is not None:
            os.fchown(fd, *self._owner)
        elif os.geteuid() == 0:
            os.fchown(fd, member.uid, member.gid)
        os.fchmod(fd, member.mode & 0o7777)
        os.utime(fd, (member.mtime, member.mtime))

    def _link_attributes(self, parent: int, name: str, member: tarfile.TarInfo) -> None:
        uid, gid = self._owner if self._owner is not None else (member.uid, member.gid)
        if self._owner is not None or os.geteuid() == 0:
            os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
        os.utime(name, (member.mtime, member.mtime), dir_fd=parent, follow_symlinks=False)
