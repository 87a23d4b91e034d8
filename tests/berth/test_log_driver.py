"""The binary:// log driver, run as the runc shim runs it: pipes on fds 3 and 4, ready on fd 5."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from berth import log_driver
from berth.container_logs import LogPolicy, driver_uri


@dataclass
class Driver:
    pid: int
    stdout: int
    stderr: int
    ready: int

    def close_pipes(self) -> None:
        for fd in (self.stdout, self.stderr):
            os.close(fd)

    def wait(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.01)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        raise AssertionError("the log driver did not exit")


Spawn = Callable[[Path, LogPolicy], Driver]


def _high(fd: int) -> int:
    """``fd`` moved above 5, so the spawn's dup2 onto 3, 4 and 5 never meets itself."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


@pytest.fixture
def driver_path(tmp_path: Path) -> Path:
    return log_driver.install(tmp_path / "bin" / "berth-log-driver")


@pytest.fixture
def spawn(driver_path: Path) -> Iterator[Spawn]:
    started: list[Driver] = []

    def start(log: Path, policy: LogPolicy) -> Driver:
        query = urlsplit(driver_uri(driver_path, log, policy)).query
        # Go's map order: the shim passes the pairs in any order.
        args = [part for pair in reversed(parse_qsl(query)) for part in pair]
        out_r, out_w = map(_high, os.pipe())
        err_r, err_w = map(_high, os.pipe())
        ready_r, ready_w = map(_high, os.pipe())
        pid = os.posix_spawn(
            str(driver_path),
            [str(driver_path), *args],
            {"CONTAINER_ID": "c1", "CONTAINER_NAMESPACE": "test"},
            file_actions=[
                (os.POSIX_SPAWN_DUP2, out_r, 3),
                (os.POSIX_SPAWN_DUP2, err_r, 4),
                (os.POSIX_SPAWN_DUP2, ready_w, 5),
            ],
        )
        for fd in (out_r, err_r, ready_w):
            os.close(fd)
        driver = Driver(pid, out_w, err_w, ready_r)
        started.append(driver)
        return driver

    yield start
    for driver in started:
        for fd in (driver.stdout, driver.stderr, driver.ready):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(driver.pid, signal.SIGKILL)
            os.waitpid(driver.pid, 0)


def lines(first: int, last: int) -> bytes:
    return b"".join(b"line-%06d\n" % n for n in range(first, last + 1))


def test_log_driver_closes_ready_fd_once_started(spawn: Spawn, tmp_path: Path) -> None:
    driver = spawn(tmp_path / "c.log", LogPolicy())

    assert os.read(driver.ready, 1) == b""  # the shim's wait: EOF once the driver is ready
    driver.close_pipes()
    assert driver.wait() == 0


def test_log_driver_output_past_its_bound_rotates_within_max_size_and_max_file(
    spawn: Spawn,
    tmp_path: Path,
) -> None:
    log = tmp_path / "c.log"
    driver = spawn(log, LogPolicy(max_bytes=1000, max_files=3))
    os.read(driver.ready, 1)
    for n in range(1, 1001):  # 12 kB of whole lines, 12 bytes each
        os.write(driver.stdout, lines(n, n))
    driver.close_pipes()
    assert driver.wait() == 0

    files = sorted(tmp_path.glob("c.log*"))
    assert [f.name for f in files] == ["c.log", "c.log.1", "c.log.2"]
    assert all(f.stat().st_size <= 1000 for f in files)
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}
    kept = (
        log.with_name("c.log.2").read_bytes()
        + log.with_name("c.log.1").read_bytes()
        + log.read_bytes()
    )
    first = int(kept[5:11])
    assert kept == lines(first, 1000)  # whole lines, in order, ending with the newest
    assert (log.with_name("c.log.1").stat().st_size, log.with_name("c.log.2").stat().st_size) == (
        996,
        996,
    )  # rotated files are cut after the last whole line that fits


def test_log_driver_stderr_goes_to_the_same_file(spawn: Spawn, tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    driver = spawn(log, LogPolicy())
    os.read(driver.ready, 1)
    os.write(driver.stderr, b"to stderr\n")
    driver.close_pipes()
    assert driver.wait() == 0

    assert log.read_bytes() == b"to stderr\n"


def test_log_driver_line_longer_than_a_file_is_split(spawn: Spawn, tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    driver = spawn(log, LogPolicy(max_bytes=4096, max_files=2))
    os.read(driver.ready, 1)
    os.write(driver.stdout, b"x" * 6000 + b"\n")
    driver.close_pipes()
    assert driver.wait() == 0

    assert log.with_name("c.log.1").read_bytes() + log.read_bytes() == b"x" * 6000 + b"\n"
    assert log.with_name("c.log.1").stat().st_size == 4096


def test_log_driver_sigterm_writes_what_is_buffered_and_exits(spawn: Spawn, tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    driver = spawn(log, LogPolicy())
    os.read(driver.ready, 1)
    os.write(driver.stdout, b"last words\n")
    os.kill(driver.pid, signal.SIGTERM)  # the shim's cancel at task delete; pipes still open

    assert driver.wait() == 0
    assert log.read_bytes() == b"last words\n"


def test_log_driver_head_mode_keeps_the_first_bytes_and_never_blocks_the_writer(
    spawn: Spawn,
    tmp_path: Path,
) -> None:
    out = tmp_path / "probe.out"
    driver = spawn(out, LogPolicy(max_bytes=4097, max_files=1, head=True))
    os.read(driver.ready, 1)
    data = bytes(range(256)) * 4096  # 1 MiB: far more than a pipe holds
    view = memoryview(data)
    while view:
        view = view[os.write(driver.stdout, view) :]
    driver.close_pipes()
    assert driver.wait() == 0

    assert out.read_bytes() == data[:4097]


def test_install_is_executable_by_absolute_interpreter_and_idempotent(tmp_path: Path) -> None:
    target = tmp_path / "bin" / "driver"
    log_driver.install(target, python="/usr/bin/python3")
    first = target.stat()
    log_driver.install(target, python="/usr/bin/python3")

    assert target.read_text().startswith("#!/usr/bin/python3 -IS\n")
    assert stat.S_IMODE(first.st_mode) == 0o700
    assert target.stat().st_ino == first.st_ino  # unchanged: not rewritten
