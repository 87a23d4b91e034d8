"""The binary:// log driver, run as the runc shim runs it: pipes on fds 3 and 4, ready on fd 5.

It writes Docker's json-file entries (raw bytes in head mode, a health probe's output)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from berth import log_driver
from berth.container_logs import LogPolicy, driver_uri, parse_rfc3339


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


def entries(*paths: Path) -> list[dict[str, str]]:
    """The json-file entries of ``paths``, in order; every line must be one."""
    return [json.loads(line) for path in paths for line in path.read_bytes().splitlines()]


def finish(driver: Driver) -> None:
    driver.close_pipes()
    assert driver.wait() == 0


def test_log_driver_closes_ready_fd_once_started(spawn: Spawn, tmp_path: Path) -> None:
    driver = spawn(tmp_path / "c.log", LogPolicy())

    assert os.read(driver.ready, 1) == b""  # the shim's wait: EOF once the driver is ready
    finish(driver)


def test_log_driver_lines_are_json_file_entries_with_stream_and_utc_time(
    spawn: Spawn, tmp_path: Path
) -> None:
    log = tmp_path / "c.log"
    before = time.time_ns()
    driver = spawn(log, LogPolicy())
    os.read(driver.ready, 1)
    os.write(driver.stdout, b'say "hi"\tthere\n')
    finish(driver)
    after = time.time_ns()

    (entry,) = entries(log)
    assert (entry["log"], entry["stream"]) == ('say "hi"\tthere\n', "stdout")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", entry["time"])
    assert not entry["time"].endswith("0Z")  # Go's RFC3339Nano drops trailing zeros
    assert before - 1_000 <= parse_rfc3339(entry["time"]) <= after


def test_log_driver_stderr_is_kept_apart_from_stdout(spawn: Spawn, tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    driver = spawn(log, LogPolicy())
    os.read(driver.ready, 1)
    os.write(driver.stdout, b"to stdout\n")
    os.write(driver.stderr, b"to stderr\n")
    finish(driver)

    assert sorted((e["stream"], e["log"]) for e in entries(log)) == [
        ("stderr", "to stderr\n"),
        ("stdout", "to stdout\n"),
    ]


def test_log_driver_output_past_its_bound_rotates_whole_entries_within_max_size_and_max_file(
    spawn: Spawn,
    tmp_path: Path,
) -> None:
    log = tmp_path / "c.log"
    driver = spawn(log, LogPolicy(max_bytes=1000, max_files=3))
    os.read(driver.ready, 1)
    for n in range(1, 1001):
        os.write(driver.stdout, lines(n, n))
    finish(driver)

    files = [log.with_name("c.log.2"), log.with_name("c.log.1"), log]
    assert sorted(tmp_path.glob("c.log*")) == sorted(files)
    assert all(f.stat().st_size <= 1000 for f in files)
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}
    kept = "".join(e["log"] for e in entries(*files)).encode()  # every line parses: whole
    first = int(kept[5:11])
    assert kept == lines(first, 1000)  # in order, ending with the newest
    assert all(f.stat().st_size > 1000 - 100 for f in files[:2])  # rotated files are full


def test_log_driver_line_longer_than_16k_is_partial_entries(spawn: Spawn, tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    driver = spawn(log, LogPolicy(max_bytes=4096, max_files=5))
    os.read(driver.ready, 1)
    os.write(driver.stdout, b"x" * 40_000 + b"\n")
    finish(driver)

    rotated = [log.with_name(f"c.log.{n}") for n in (2, 1)]
    logged = [e["log"] for e in entries(*rotated, log)]
    assert logged == ["x" * 16_384, "x" * 16_384, "x" * 7_232 + "\n"]
    assert [len(p.read_bytes().splitlines()) for p in (*rotated, log)] == [1, 1, 1]  # alone


def test_log_driver_last_line_without_newline_is_a_partial_entry_at_end_of_file(
    spawn: Spawn, tmp_path: Path
) -> None:
    log = tmp_path / "c.log"
    driver = spawn(log, LogPolicy())
    os.read(driver.ready, 1)
    os.write(driver.stdout, b"one\ntwo")
    os.write(driver.stderr, b"\xffbad")
    finish(driver)

    assert sorted(e["log"] for e in entries(log)) == ["one\n", "two", "\ufffdbad"]


def test_log_driver_begun_line_waiting_is_written_as_partial_entry(
    spawn: Spawn, tmp_path: Path
) -> None:
    log = tmp_path / "c.log"
    driver = spawn(log, LogPolicy())
    os.read(driver.ready, 1)
    os.write(driver.stdout, b"/ # ")  # a shell's prompt, the pipe still open
    deadline = time.monotonic() + 10
    while not log.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.02)
    os.write(driver.stdout, b"ls\n")
    finish(driver)

    assert [e["log"] for e in entries(log)] == ["/ # ", "ls\n"]


def test_log_driver_sigterm_writes_what_is_buffered_and_exits(spawn: Spawn, tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    driver = spawn(log, LogPolicy())
    os.read(driver.ready, 1)
    os.write(driver.stdout, b"last words\n")
    os.write(driver.stderr, b"unfinished")
    os.kill(driver.pid, signal.SIGTERM)  # the shim's cancel at task delete; pipes still open

    assert driver.wait() == 0
    assert sorted(e["log"] for e in entries(log)) == ["last words\n", "unfinished"]


def test_log_driver_appends_to_the_log_of_an_earlier_task(spawn: Spawn, tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    for word in (b"first\n", b"second\n"):  # a restart: a new task, a new driver, one file
        driver = spawn(log, LogPolicy())
        os.read(driver.ready, 1)
        os.write(driver.stdout, word)
        finish(driver)

    assert [e["log"] for e in entries(log)] == ["first\n", "second\n"]


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


def test_install_for_this_interpreter_compiles_its_copy_and_repairs_a_changed_one(
    driver_path: Path, spawn: Spawn, tmp_path: Path
) -> None:
    copy = driver_path.with_name("_berth_log_driver.py")
    (compiled,) = (driver_path.parent / "__pycache__").glob("_berth_log_driver.*.pyc")
    copy.write_text("raise SystemExit(3)\n")  # changed behind the agent's back

    log_driver.install(driver_path)
    log = tmp_path / "c.log"
    driver = spawn(log, LogPolicy())
    os.read(driver.ready, 1)
    os.write(driver.stdout, b"still a driver\n")
    finish(driver)

    assert copy.read_text() == Path(log_driver.__file__).read_text()
    assert compiled.read_bytes()[4:8] == b"\x03\x00\x00\x00"  # checked against the source hash
    assert [e["log"] for e in entries(log)] == ["still a driver\n"]
