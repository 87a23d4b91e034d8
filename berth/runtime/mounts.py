"""Kernel mounts of a container's rootfs, made with mount(2) and read back from mountinfo.

``mount_rootfs`` mounts containerd's snapshot mounts at a target; ``unmount_rootfs`` undoes it.
Both converge when run again: the kernel's mount table (``/proc/self/mountinfo``) is the only
record they consult, so a step that half-happened before a crash is finished or undone on retry.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import re
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from berth.errors import InvalidParameter, System
from berth.runtime.types import Mount

MOUNTINFO = Path("/proc/self/mountinfo")

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MNT_DETACH = 0x2

# Option name -> (clear the flag instead of setting it, flag); containerd's parseMountOptions.
_FLAG_OPTIONS: dict[str, tuple[bool, int]] = {
    "async": (True, MS_SYNCHRONOUS),
    "atime": (True, MS_NOATIME),
    "bind": (False, MS_BIND),
    "defaults": (False, 0),
    "dev": (True, MS_NODEV),
    "diratime": (True, MS_NODIRATIME),
    "dirsync": (False, MS_DIRSYNC),
    "exec": (True, MS_NOEXEC),
    "mand": (False, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME),
    "nodev": (False, MS_NODEV),
    "nodiratime": (False, MS_NODIRATIME),
    "noexec": (False, MS_NOEXEC),
    "nomand": (True, MS_MANDLOCK),
    "norelatime": (True, MS_RELATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "nosuid": (False, MS_NOSUID),
    "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME),
    "remount": (False, MS_REMOUNT),
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "strictatime": (False, MS_STRICTATIME),
    "suid": (True, MS_NOSUID),
    "sync": (False, MS_SYNCHRONOUS),
}
_PROPAGATION_OPTIONS: dict[str, int] = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}
# mount(2) copies at most one page of data; longer overlay options need relative lowerdirs.
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_UNMOUNT_BUSY_RETRIES = 5
_UNMOUNT_BUSY_SLEEP_SECONDS = 0.1

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.mount.restype = ctypes.c_int
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.umount2.restype = ctypes.c_int


@dataclass(frozen=True)
class MountEntry:
    """One line of ``/proc/self/mountinfo``."""

    mount_point: Path
    root: str
    fs_type: str
    source: str


def mount_table() -> list[MountEntry]:
    """Every mount in this process's mount namespace, parents before children."""
    entries = []
    for line in MOUNTINFO.read_text().splitlines():
        fields = line.split(" ")
        # Optional fields (shared:N, master:N) end at a lone "-".
        separator = fields.index("-", 6)
        entries.append(
            MountEntry(
                mount_point=Path(_unescape(fields[4])),
                root=_unescape(fields[3]),
                fs_type=fields[separator + 1],
                source=_unescape(fields[separator + 2]),
            )
        )
    return entries


def _unescape(field: str) -> str:
    """Undo the kernel's octal escapes (``\\040`` for a space) in a mountinfo field."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


def _canonical(path: Path) -> Path:
    """The path as mountinfo spells it: absolute, symlinks resolved."""
    return Path(os.path.realpath(path))


def is_mounted(target: Path) -> bool:
    """Whether ``target`` is a mount point in this mount namespace."""
    wanted = _canonical(target)
    return any(entry.mount_point == wanted for entry in mount_table())


def mounts_under(directory: Path) -> list[Path]:
    """Every mount point at or below ``directory``, once each, parents before children."""
    top = _canonical(directory)
    found: list[Path] = []
    for entry in mount_table():
        point = entry.mount_point
        if (point == top or top in point.parents) and point not in found:
            found.append(point)
    return found


def mount_rootfs(mounts: Iterable[Mount], target: Path) -> None:
    """Mount containerd's snapshot mounts at ``target``, creating it; a no-op if already mounted.

    Raises:
        InvalidParameter: no mounts were given, or an option is malformed.
        System: mount(2) failed; the message carries the errno text.
    """
    mounts = list(mounts)
    if not mounts:
        raise InvalidParameter(f"no mounts given for rootfs {target}")
    target.mkdir(parents=True, exist_ok=True)
    if is_mounted(target):
        return
    done = 0
    try:
        for mount in mounts:
            _mount_one(mount, target)
            done += 1
    except BaseException:
        # Leave nothing half-mounted, so a retry is not mistaken for a finished mount.
        for _ in range(done):
            _unmount_point(_canonical(target))
        raise


def _mount_one(mount: Mount, target: Path) -> None:
    flags, clear, propagation, data = _parse_options(mount.options)
    flags &= ~clear
    fs_type = None if mount.type == "bind" else mount.type
    if mount.type == "bind":
        flags |= MS_BIND
    if mount.type == "overlay" and len(data.encode()) >= _PAGE_SIZE:
        _mount_overlay_compacted(mount, target, flags, data)
    else:
        _mount(mount.source, target, fs_type, flags, data)
    # The kernel ignores read-only and the like on a fresh bind; a remount applies them.
    if flags & MS_BIND and flags & ~(MS_BIND | MS_REC | MS_REMOUNT):
        _mount(None, target, None, (flags & ~MS_REC) | MS_REMOUNT, None)
    if propagation:
        _mount(None, target, None, propagation, None)


def _parse_options(options: Iterable[str]) -> tuple[int, int, int, str]:
    """Split mount options into (flags, flags to clear, propagation flags, data string)."""
    flags = clear = propagation = 0
    data = []
    for option in options:
        if option in _FLAG_OPTIONS:
            negate, flag = _FLAG_OPTIONS[option]
            if negate:
                clear |= flag
                flags &= ~flag
            else:
                flags |= flag
                clear &= ~flag
        elif option in _PROPAGATION_OPTIONS:
            propagation |= _PROPAGATION_OPTIONS[option]
        elif option:
            data.append(option)
    return flags, clear, propagation, ",".join(data)


def _mount(
    source: str | None, target: Path, fs_type: str | None, flags: int, data: str | None
) -> None:
    result = _libc.mount(
        os.fsencode(source) if source is not None else None,
        os.fsencode(target),
        os.fsencode(fs_type) if fs_type is not None else None,
        flags,
        os.fsencode(data) if data else None,
    )
    if result != 0:
        code = ctypes.get_errno()
        raise System(f"mount {fs_type or 'bind'} {source or ''} at {target}: {os.strerror(code)}")


def _mount_overlay_compacted(mount: Mount, target: Path, flags: int, data: str) -> None:
    """Mount an overlay whose options exceed a page, with lowerdirs relative to their parent.

    The relative paths need a working directory, and ours is shared by every thread, so the
    mount runs in a child process (mount(8)) started in that directory, as containerd does.
    """
    options = data.split(",")
    lower_index = next((i for i, o in enumerate(options) if o.startswith("lowerdir=")), None)
    if lower_index is None:
        raise InvalidParameter(f"overlay options for {target} are longer than a page")
    lowers = options[lower_index].removeprefix("lowerdir=").split(":")
    common = os.path.commonpath(lowers)
    if not os.path.isdir(common) or common == "/":
        raise InvalidParameter(f"overlay lowerdirs for {target} share no directory to start in")
    options[lower_index] = "lowerdir=" + ":".join(os.path.relpath(d, common) for d in lowers)
    compacted = ",".join(options)
    if len(compacted.encode()) >= _PAGE_SIZE:
        raise InvalidParameter(f"overlay options for {target} are too long even when compacted")
    flag_names = [
        name for name, (negate, f) in _FLAG_OPTIONS.items() if not negate and f and flags & f
    ]
    command = ["mount", "-t", "overlay", "-o", ",".join([*flag_names, compacted])]
    command += [mount.source, os.fspath(_canonical(target))]
    completed = subprocess.run(command, cwd=common, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise System(f"mount overlay at {target}: {completed.stderr.strip()}")


def unmount_rootfs(target: Path) -> None:
    """Unmount everything at or below ``target`` and remove the then-empty directory.

    Idempotent: a target that is not mounted, or does not exist, is already done. A busy mount
    is retried briefly, then detached lazily so the kernel frees it when its last user leaves.

    Raises:
        System: umount2(2) failed for a reason other than busy or not mounted.
    """
    for point in reversed(mounts_under(target)):
        _unmount_point(point)
    try:
        target.rmdir()
    except FileNotFoundError:
        pass
    except OSError as error:
        # A non-empty directory is not a mount; keep its content rather than guess.
        if error.errno not in (errno.ENOTEMPTY, errno.EBUSY):
            raise System(f"remove rootfs directory {target}: {error.strerror}") from error


def _unmount_point(point: Path) -> None:
    """Unmount every mount stacked at ``point``; a missing or unmounted point is success."""
    for _ in range(64):
        code = umount(point)
        if code in (errno.EINVAL, errno.ENOENT):
            return
        if code == errno.EBUSY:
            code = _unmount_busy(point)
        if code not in (0, errno.EINVAL, errno.ENOENT):
            raise System(f"unmount {point}: {os.strerror(code)}")
    raise System(f"unmount {point}: still mounted after unmounting 64 times")


def _unmount_busy(point: Path) -> int:
    for _ in range(_UNMOUNT_BUSY_RETRIES):
        time.sleep(_UNMOUNT_BUSY_SLEEP_SECONDS)
        code = umount(point)
        if code != errno.EBUSY:
            return code
    return umount(point, MNT_DETACH)


def bind_mount_fd(fd: int, target: Path) -> None:
    """Bind what the open descriptor ``fd`` refers to (recursively) at ``target``, private.

    The kernel follows ``/proc/self/fd/<fd>`` to the very file the descriptor holds, so no name
    is looked up again. Private: the pin's unmount does not propagate to other namespaces.

    Raises:
        System: the kernel refused.
    """
    _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC, None)
    _mount(None, target, None, MS_PRIVATE | MS_REC, None)


def umount(target: Path, flags: int = 0) -> int:
    """umount2(2); returns 0 or the errno, so callers decide which failures are success."""
    if _libc.umount2(os.fsencode(target), flags) == 0:
        return 0
    return ctypes.get_errno()
