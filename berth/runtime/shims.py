"""containerd's runc shims as node resources: found by their command line, ended by their pid.

containerd starts one ``containerd-shim-runc-v2`` per task, as
``containerd-shim-runc-v2 -namespace <ns> -id <container id> -address <containerd socket>``
(plus ``-publish-binary``/``-debug`` on some versions); the shim outlives containerd, which is
what lets a restarted containerd find its tasks again. A shim whose containerd no longer lists
its task (containerd was SIGKILLed while it created the task, or its bundle was lost) is
unreachable through containerd and lives until someone ends it by pid.

A shim belongs to one node and one deployment: the node's containerd socket (``-address``) and
the containerd namespace (``-namespace``) name them, so nothing of another node, another stack
or another namespace is ever listed here, let alone signalled. A pid is only signalled while it
is still the same process (its start time in ``/proc/<pid>/stat`` unchanged), never by name.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
SHIM_PREFIX = "containerd-shim"
# A shim run for one action (``start`` forks the long-lived shim and exits; ``delete`` cleans a
# bundle up): transient, part of a containerd call in flight, never a resource of its own.
_ACTIONS = frozenset({"start", "delete"})


@dataclass(frozen=True)
class ShimProcess:
    """One live shim: its pid, whose task it serves, and which process it is."""

    pid: int
    container_id: str
    namespace: str
    address: str
    # Clock ticks after boot at which the process started: a reused pid has another.
    start_time: int


def parse_shim_argv(argv: Sequence[str]) -> tuple[str, str, str] | None:
    """``(namespace, id, address)`` of a long-lived shim's command line; None for anything else.

    Both ``-flag value`` and ``-flag=value`` (Go's flag package) are understood.
    """
    if not argv or not Path(argv[0]).name.startswith(SHIM_PREFIX):
        return None
    flags: dict[str, str] = {}
    positional: list[str] = []
    args = list(argv[1:])
    while args:
        arg = args.pop(0)
        if not arg.startswith("-"):
            positional.append(arg)
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        if not eq and name in ("namespace", "id", "address", "publish-binary", "bundle"):
            value = args.pop(0) if args else ""
        flags[name] = value
    if _ACTIONS.intersection(positional):
        return None
    if not flags.get("namespace") or not flags.get("id") or not flags.get("address"):
        return None
    return flags["namespace"], flags["id"], flags["address"]


def _stat(pid: int, proc: Path) -> tuple[str, int] | None:
    """The process state letter and start time of ``pid``; None when it is gone."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # Fields after the parenthesised command name (which may hold spaces): state is the 3rd
    # field of the line, start time the 22nd.
    rest = stat.rpartition(")")[2].split()
    return rest[0], int(rest[19])


def _argv(pid: int, proc: Path) -> list[str]:
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _same_socket(address: str, socket: Path) -> bool:
    path = address.removeprefix("unix://")
    return os.path.realpath(path) == os.path.realpath(socket)


def list_shims(socket: Path, namespace: str | None, proc: Path = PROC) -> list[ShimProcess]:
    """Every live shim of the containerd at ``socket`` (in ``namespace``; None: in any)."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        parsed = parse_shim_argv(_argv(pid, proc))
        if parsed is None:
            continue
        shim_namespace, container_id, address = parsed
        if namespace is not None and shim_namespace != namespace:
            continue
        if not _same_socket(address, socket):
            continue
        stat = _stat(pid, proc)
        if stat is None or stat[0] in ("Z", "X"):
            continue
        found.append(ShimProcess(pid, container_id, shim_namespace, address, stat[1]))
    return sorted(found, key=lambda shim: shim.pid)


def shim_alive(shim: ShimProcess, proc: Path = PROC) -> bool:
    """Whether ``shim``'s pid is still that same shim process (and not a zombie)."""
    stat = _stat(shim.pid, proc)
    if stat is None or stat[0] in ("Z", "X") or stat[1] != shim.start_time:
        return False
    return parse_shim_argv(_argv(shim.pid, proc)) == (
        shim.namespace,
        shim.container_id,
        shim.address,
    )


def wait_shim_gone(shim: ShimProcess, timeout: float, proc: Path = PROC) -> bool:
    """Wait up to ``timeout`` seconds for ``shim`` to end by itself; whether it did."""
    deadline = time.monotonic() + timeout
    while shim_alive(shim, proc):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def kill_shim(shim: ShimProcess, timeout: float = 5.0, proc: Path = PROC) -> bool:
    """SIGKILL ``shim`` by its pid if it is still that process; whether it is gone after.

    The shim's children (a container's processes, its log driver) are not signalled here: the
    container's processes are ended through its cgroup (:mod:`berth.runtime.cgroups`).
    """
    if not shim_alive(shim, proc):
        return True
    try:
        os.kill(shim.pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    return wait_shim_gone(shim, timeout, proc)
