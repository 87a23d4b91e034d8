"""Containers' cgroups as node resources: found under Berth's cgroup parent, removed when empty.

runc makes each task's cgroup at the spec's ``cgroupsPath`` (``/berth/<container id>``, see
:mod:`berth.runtime.oci_spec`): on cgroup v1 (and the hybrid layout) one directory per
controller, ``/sys/fs/cgroup/<controller>/berth/<id>``, on cgroup v2 ``/sys/fs/cgroup/berth/<id>``.
``runc delete`` removes them; a task whose shim or containerd was killed leaves them behind.

The parent is shared by every Berth deployment on the machine, so a directory says only the
container id: callers decide from their own records which ids are theirs before touching one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

from berth.runtime.oci_spec import CGROUP_PARENT

CGROUP_ROOT = Path("/sys/fs/cgroup")


def container_cgroups(root: Path = CGROUP_ROOT) -> dict[str, tuple[Path, ...]]:
    """Container id -> its cgroup directories (one per hierarchy) under Berth's parent."""
    parent = CGROUP_PARENT.strip("/")
    found: dict[str, list[Path]] = {}
    for base in (root / parent, *root.glob(f"*/{parent}")):
        try:
            entries = list(base.iterdir())
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            if entry.is_dir():
                found.setdefault(entry.name, []).append(entry)
    return {cid: tuple(sorted(dirs)) for cid, dirs in sorted(found.items())}


def cgroup_pids(dirs: Iterable[Path]) -> set[int]:
    """The processes in ``dirs`` and their sub-cgroups."""
    pids: set[int] = set()
    for top in dirs:
        for directory, _, _ in os.walk(top):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                for line in (Path(directory) / "cgroup.procs").read_text().split():
                    pids.add(int(line))
    return pids


def kill_cgroup_processes(dirs: Iterable[Path], timeout: float = 5.0) -> set[int]:
    """SIGKILL every process in ``dirs`` (thawing a frozen cgroup first); those left after.

    Only for the cgroups of a container that no task owns any more: they are its processes.
    """
    dirs = tuple(dirs)
    for top in dirs:
        freezer = top / "freezer.state"
        if freezer.exists():
            with contextlib.suppress(OSError):
                freezer.write_text("THAWED")
        frozen = top / "cgroup.freeze"
        if frozen.exists():
            with contextlib.suppress(OSError):
                frozen.write_text("0")
    deadline = time.monotonic() + timeout
    while True:
        pids = cgroup_pids(dirs)
        if not pids or time.monotonic() >= deadline:
            return pids
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def remove_cgroup(dirs: Iterable[Path]) -> list[Path]:
    """rmdir each directory of ``dirs`` that holds no process, deepest first; those left.

    A missing directory is success; a busy one (EBUSY: it still has processes) stays.
    """
    left = []
    for top in dirs:
        if not top.exists():
            continue
        below = sorted(
            (Path(directory) for directory, _, _ in os.walk(top)),
            key=lambda path: len(path.parts),
            reverse=True,
        )
        for directory in below:
            with contextlib.suppress(FileNotFoundError, OSError):
                directory.rmdir()
        if top.exists():
            left.append(top)
    return left
