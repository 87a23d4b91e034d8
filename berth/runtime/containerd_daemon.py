"""One containerd per node: its config, its process and its socket, all under the node's paths.

Everything a stop needs is derived from ``NodePaths``: the pid is in ``containerd.pid`` and the
log in ``containerd.log`` under ``paths.containerd_dir``. Starting is idempotent (a live daemon
that answers is reused) and stopping signals only the pid in the pidfile.

containerd gets an allow-listed environment (``daemon_environment``), never the agent's: the
shims and runc inherit it, and the agent's carries ``BERTH_*`` settings and secrets. Its
directory, config and log are the owner's alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import signal
import time
from collections.abc import Mapping
from pathlib import Path

from berth.config import NodePaths, make_private_dir
from berth.errors import BerthError, System
from berth.runtime.containerd import ContainerdClient

START_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 10.0
_POLL_SECONDS = 0.05
_LOG_TAIL_BYTES = 4000
# What containerd, and the shims and runc it starts, take from the agent's environment: PATH (to
# find runc and containerd-shim-runc-v2), the temporary directory and time zone, and the Go
# runtime's knobs. No proxy variables (containerd pulls nothing here; they may embed
# credentials), nothing of Berth's (BERTH_*: the database URL, codec keys, API key).
DAEMON_ENV_ALLOWED = ("PATH", "TMPDIR", "TZ", "GOMAXPROCS", "GOGC", "GOMEMLIMIT", "GOTRACEBACK")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def config_path(paths: NodePaths) -> Path:
    """The node's containerd config file."""
    return paths.containerd_dir / "config.toml"


def pid_path(paths: NodePaths) -> Path:
    """The node's containerd pidfile."""
    return paths.containerd_dir / "containerd.pid"


def log_path(paths: NodePaths) -> Path:
    """The node's containerd log."""
    return paths.containerd_dir / "containerd.log"


def task_bundle(paths: NodePaths, namespace: str, container_id: str) -> Path:
    """A task's bundle in this node's containerd state dir (the runc v2 shim's working dir).

    containerd removes it when it deletes the task; one whose task containerd does not list is
    what a containerd killed while it created the task left (its ``address`` file names the
    shim's socket, ``init.pid`` the container's init once runc created it).
    """
    return (
        paths.containerd_dir / "state" / "io.containerd.runtime.v2.task" / namespace / container_id
    )


def daemon_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """containerd's environment: the allow-listed variables of ``environ``, and a PATH."""
    env = {name: environ[name] for name in DAEMON_ENV_ALLOWED if environ.get(name)}
    env.setdefault("PATH", DEFAULT_PATH)
    return env


def render_config(paths: NodePaths) -> str:
    """This node's containerd config.toml: private root, state and sockets; no CRI or listeners."""
    base = paths.containerd_dir
    socket = paths.containerd_socket

    def q(value: Path | str) -> str:
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "\n".join(
        [
            "version = 2",
            f"root = {q(base / 'root')}",
            f"state = {q(base / 'state')}",
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
            "",
            "[grpc]",
            f"  address = {q(socket)}",
            "",
            "[ttrpc]",
            f"  address = {q(str(socket) + '.ttrpc')}",
            "",
            "[debug]",
            '  address = ""',
            "",
            "[metrics]",
            '  address = ""',
            "",
            '[plugins."io.containerd.internal.v1.opt"]',
            f"  path = {q(base / 'opt')}",
            "",
        ]
    )


def _read_pid(paths: NodePaths) -> int | None:
    try:
        return int(pid_path(paths).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _reap(pid: int) -> str:
    """Reap ``pid`` if it is our exited child (a zombie must not look alive); how it ended."""
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return "not our child"
    if reaped == 0:
        return "still running"
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (reaping it if it is our exited child)."""
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    if stat.rpartition(")")[2].split()[0] in ("Z", "X"):
        # It may have exited after the first reap. A multi-threaded process (containerd is Go)
        # shows its leader as a zombie while its other threads still exit: not reapable yet,
        # so still there.
        return _reap(pid) == "still running"
    return True


def _is_our_containerd(pid: int, paths: NodePaths) -> bool:
    """Whether ``pid`` is alive and is the containerd started with this node's config.

    Only for a pid read from the pidfile; a process's cmdline reads empty while it execs or
    exits, so a pid already known to be ours is watched with ``_alive`` instead.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return _alive(pid) and str(config_path(paths)).encode() in cmdline


async def _answers(paths: NodePaths, timeout: float = 1.0) -> bool:
    if not paths.containerd_socket.exists():
        return False
    try:
        async with ContainerdClient(paths.containerd_socket, "default", "") as client:
            await asyncio.wait_for(client.version(), timeout)
    except (BerthError, TimeoutError):
        return False
    return True


def _log_tail(paths: NodePaths) -> str:
    try:
        with log_path(paths).open("rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - _LOG_TAIL_BYTES))
            return log.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log)"


async def containerd_running(paths: NodePaths) -> bool:
    """Whether this node's containerd process is alive and answers on its socket."""
    pid = _read_pid(paths)
    return pid is not None and _is_our_containerd(pid, paths) and await _answers(paths)


async def start_containerd(paths: NodePaths, timeout: float = START_TIMEOUT_SECONDS) -> int:
    """Start this node's containerd (or reuse the live one) and return its pid once it answers.

    Raises:
        System: the binary is missing, or the daemon died or did not answer within ``timeout``;
            the message carries the tail of its log.
    """
    pid = _read_pid(paths)
    if pid is not None and _is_our_containerd(pid, paths):
        await _wait_until_answering(paths, pid, timeout)
        return pid

    binary = shutil.which("containerd")
    if binary is None:
        raise System("containerd binary not found on PATH (install the Debian package containerd)")
    make_private_dir(paths.containerd_dir)
    config_path(paths).write_text(render_config(paths))
    with contextlib.suppress(FileNotFoundError):
        paths.containerd_socket.unlink()  # a stale socket from a dead daemon
    log_fd = os.open(log_path(paths), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(log_fd, 0o600)  # a log an older version created with the umask's mode
        pid = os.posix_spawn(
            binary,
            [binary, "--config", str(config_path(paths))],
            daemon_environment(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log_fd, 1),
                (os.POSIX_SPAWN_DUP2, log_fd, 2),
            ],
            # Its own session: the daemon outlives the process that started it.
            setsid=True,
        )
    finally:
        os.close(log_fd)
    pid_path(paths).write_text(f"{pid}\n")
    try:
        await _wait_until_answering(paths, pid, timeout)
    except BaseException:
        await _terminate(paths, pid, timeout=1.0)  # never leave a daemon that did not come up
        raise
    return pid


async def _wait_until_answering(paths: NodePaths, pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        ended = _reap(pid)
        if ended != "still running" and (ended != "not our child" or not _alive(pid)):
            raise System(
                f"containerd (pid {pid}) exited during start ({ended}); "
                f"log {log_path(paths)}:\n{_log_tail(paths)}"
            )
        if await _answers(paths):
            return
        if time.monotonic() >= deadline:
            raise System(
                f"containerd (pid {pid}) did not answer on {paths.containerd_socket} within "
                f"{timeout:.0f}s; log {log_path(paths)}:\n{_log_tail(paths)}"
            )
        await asyncio.sleep(_POLL_SECONDS)


async def stop_containerd(paths: NodePaths, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """Stop this node's containerd: SIGTERM its pidfile's pid, SIGKILL after ``timeout``.

    Only the pid in the pidfile is signalled, and only when it is this node's containerd; the
    running shims (and so the containers) are left alone, as containerd itself leaves them.
    """
    pid = _read_pid(paths)
    if pid is not None and _is_our_containerd(pid, paths):
        await _terminate(paths, pid, timeout)
    with contextlib.suppress(FileNotFoundError):
        pid_path(paths).unlink()


async def _terminate(paths: NodePaths, pid: int, timeout: float) -> None:
    """SIGTERM ``pid`` (known to be this node's containerd), SIGKILL it after ``timeout``."""
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            _signal(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        await asyncio.sleep(_POLL_SECONDS)
    with contextlib.suppress(FileNotFoundError):
        pid_path(paths).unlink()


def _signal(pid: int, signum: signal.Signals) -> None:
    try:
        os.kill(pid, signum)
    except OSError as exc:
        if exc.errno != errno.ESRCH:
            raise
