"""Host paths a client names (bind sources, seccomp profiles): only under the node's allow-list.

Checked lexically when the container is created (the control plane may not share the node's
filesystem), then on the node at every use: the path is opened (following links, as the kernel
will), and the path the kernel reports for the opened file is what is checked against the
resolved allowed roots. So a link planted after create, or a directory a container swapped for a
link to ``/`` between two restarts, cannot lead outside the allowed roots.

At task creation a bind source is used through its open ``O_PATH`` descriptor
(``pinned_bind_sources``): the agent bind-mounts the descriptor's file at a pin under its own
state directory, and the spec given to runc names the pin, so what runc mounts is the very
directory that was checked, whatever a container does to the path in between (the
CVE-2021-30465 class of swaps). The descriptor's path itself (``/proc/<pid>/fd/<n>``) cannot be
the source: runc mounts from a new mount namespace, and the kernel refuses (EINVAL) to bind a
mount of another namespace. The pins live only while the task is created.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from berth.config import make_private_dir
from berth.contract import BindMount
from berth.errors import Forbidden, InvalidParameter
from berth.runtime.mounts import MNT_DETACH, bind_mount_fd, mounts_under, umount


def _under(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def _refuse(field: str, shown: str, allowed_roots: Sequence[Path]) -> Forbidden:
    allowed = ", ".join(map(str, allowed_roots)) or "none are allowed"
    return Forbidden(f"{field}: host path {shown} is not under an allowed host path ({allowed})")


def check_host_path(path: str, allowed_roots: Sequence[Path], field: str) -> None:
    """Raise ``Forbidden`` naming ``field`` unless ``path`` is lexically under an allowed root."""
    if not _under(Path(os.path.normpath(path)), [Path(root) for root in allowed_roots]):
        raise _refuse(field, path, allowed_roots)


def check_bind_sources(
    binds: Sequence[BindMount], allowed_roots: Sequence[Path], *, resolve: bool
) -> None:
    """Raise ``Forbidden`` naming the first bind whose source is outside every allowed root.

    ``resolve=False`` is the control plane's lexical check; ``resolve=True`` resolves links on
    this host (the spec step then uses ``resolve_bind_sources``, which also returns the paths).
    """
    if resolve:
        resolve_bind_sources(binds, allowed_roots)
        return
    for index, bind in enumerate(binds):
        check_host_path(bind.source, allowed_roots, f"config.binds[{index}].source")


def open_confined(path: str, allowed_roots: Sequence[Path], field: str) -> int:
    """An ``O_PATH`` descriptor of ``path`` (links followed) whose real path is under a root.

    The check is made on what was opened, not on a second resolution of the name, so there is no
    window between check and use for the descriptor's holder.

    Raises:
        InvalidParameter: ``path`` does not exist on this host.
        Forbidden: what ``path`` leads to is outside every allowed root.
    """
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise InvalidParameter(f"{field}: host path {path} does not exist on this node") from None
    except OSError as err:
        raise InvalidParameter(f"{field}: host path {path}: {err.strerror}") from None
    try:
        # The kernel's name for the opened file; " (deleted)" or a detached one never matches.
        real = Path(os.readlink(f"/proc/self/fd/{fd}"))
        roots = [Path(os.path.realpath(root)) for root in allowed_roots]
        if not real.is_absolute() or not _under(real, roots):
            raise _refuse(field, f"{path} (resolved to {real})", allowed_roots)
    except BaseException:
        os.close(fd)
        raise
    return fd


def resolve_bind_sources(binds: Sequence[BindMount], allowed_roots: Sequence[Path]) -> list[str]:
    """Each bind's source resolved on this host, checked to be under an allowed root."""
    resolved: list[str] = []
    for index, bind in enumerate(binds):
        fd = open_confined(bind.source, allowed_roots, f"config.binds[{index}].source")
        try:
            resolved.append(os.readlink(f"/proc/self/fd/{fd}"))
        finally:
            os.close(fd)
    return resolved


@contextlib.contextmanager
def pinned_bind_sources(
    binds: Sequence[BindMount], allowed_roots: Sequence[Path], pins: Path
) -> Iterator[list[str]]:
    """Checked sources for ``binds`` that stay what was checked while the context is open.

    Each source is opened and checked (``open_confined``), then bind-mounted from its descriptor
    at ``pins/<index>`` (a directory of the agent's own that no container sees); those paths are
    yielded, and unmounted and removed on exit. Pins a crash left behind are cleared first.
    """
    release_pins(pins)
    fds: list[int] = []
    try:
        for index, bind in enumerate(binds):
            fds.append(open_confined(bind.source, allowed_roots, f"config.binds[{index}].source"))
        make_private_dir(pins)
        sources: list[str] = []
        for index, fd in enumerate(fds):
            target = pins / str(index)
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                target.mkdir(mode=0o700)
            else:
                os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW))
            bind_mount_fd(fd, target)
            sources.append(str(target))
        yield sources
    finally:
        for fd in fds:
            os.close(fd)
        release_pins(pins)


def release_pins(pins: Path) -> None:
    """Unmount and remove the pins under ``pins``; idempotent.

    Never recursive: a pin whose unmount failed is left (its removal fails) rather than having
    the container's data under it deleted.
    """
    for point in reversed(mounts_under(pins)):
        umount(point, MNT_DETACH)
    if not pins.is_dir():
        return
    for entry in pins.iterdir():
        with contextlib.suppress(OSError):
            if entry.is_dir() and not entry.is_symlink():
                entry.rmdir()
            else:
                entry.unlink()
    with contextlib.suppress(OSError):
        pins.rmdir()
