"""``berth logs`` through the node endpoint, as from another host: docker's json-file semantics.

The CLI runs as a subprocess whose state directory is an empty one of its own (so it cannot read
the node's log files) and whose client certificate is a copy of the suite's: all it has is the
endpoint address PostgreSQL records and its certificate.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from berth.container_logs import LogEntry, format_rfc3339
from berth.errors import NotFound
from tests.integration.conftest import Stack
from tests.integration.test_cli import BERTH, cli_env
from tests.integration.test_cli_transport import SDK_ORM_AND_SETTINGS, modules_loaded_by

RFC3339_NANO = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z "
# One line a stream, 0.1 s apart, so the two streams' order is the order written.
BOTH_STREAMS = "for i in 1 2 3 4 5; do echo out-$i; sleep 0.1; echo err-$i >&2; sleep 0.1; done"


@pytest.fixture
def remote_env(stack: Stack, tmp_path: Path) -> dict[str, str]:
    """The CLI's environment on "another host": no node state, a copy of the client pair."""
    certs = tmp_path / "certs"
    certs.mkdir(mode=0o700)
    for name in ("ca.pem", "client.pem", "client-key.pem"):
        shutil.copy(stack.settings.state_dir / "endpoint" / name, certs / name)
    (certs / "client-key.pem").chmod(0o600)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return {
        **cli_env(stack),
        "BERTH_STATE_DIR": str(elsewhere),
        "BERTH_ENDPOINT_TLS_CA_FILE": str(certs / "ca.pem"),
        "BERTH_ENDPOINT_TLS_CERT_FILE": str(certs / "client.pem"),
        "BERTH_ENDPOINT_TLS_KEY_FILE": str(certs / "client-key.pem"),
    }


async def logs(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    # In a thread: the agent that serves the CLI runs on this test's event loop.
    return await asyncio.to_thread(
        subprocess.run, [str(BERTH), "logs", *args], capture_output=True, env=env, timeout=60
    )


async def entries(stack: Stack, container_id: str) -> list[LogEntry]:
    return [e async for batch in stack.berth.stream_logs(container_id) for e in batch]


async def wait_for(check: Callable[[], object], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def written(stack: Stack, container_id: str, count: int) -> list[LogEntry]:
    """The container's entries once it has written ``count`` of them."""
    deadline = time.monotonic() + 60
    while len(found := await entries(stack, container_id)) < count:
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.2)
    return found


class Follower:
    """``berth logs -f`` running as a subprocess; its stdout lines collected by a thread."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.process = subprocess.Popen(
            [str(BERTH), "logs", "-f", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.lines: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    async def ended(self, timeout: float = 30) -> int:
        code = await asyncio.to_thread(self.process.wait, timeout)
        await asyncio.to_thread(self._reader.join, 5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def followers() -> Iterator[list[Follower]]:
    started: list[Follower] = []
    yield started
    for follower in started:
        follower.kill()


async def test_logs_follow_sees_new_lines_and_continues_across_a_restart_until_stopped(
    stack: Stack, remote_env: dict[str, str], followers: list[Follower]
) -> None:
    script = (
        "echo boot; trap 'exit 0' TERM; i=0;"
        " while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done"
    )
    container_id = await stack.create(cmd=["sh", "-c", script])
    await stack.berth.start(container_id)
    await written(stack, container_id, 2)

    follower = Follower(remote_env, "--tail", "0", container_id)
    followers.append(follower)
    await wait_for(lambda: len(follower.lines) >= 3)  # lines written after it started
    await stack.berth.restart(container_id, timeout=5)
    await wait_for(lambda: b"boot\n" in follower.lines)  # the restarted task's first line
    await wait_for(lambda: follower.lines[-1] != b"boot\n")
    assert follower.process.poll() is None  # still following
    await stack.berth.stop(container_id, timeout=5)

    assert await follower.ended() == 0  # docker's follow ends when the container stops
    restart = follower.lines.index(b"boot\n")
    assert all(line.startswith(b"tick-") for line in follower.lines[:restart])
    assert follower.lines[restart + 1] == b"tick-1\n"


async def test_logs_follow_of_a_stopped_container_prints_it_and_ends(
    stack: Stack, remote_env: dict[str, str]
) -> None:
    container_id = await stack.create(cmd=["sh", "-c", "echo done-once"])
    await stack.berth.start(container_id)
    await stack.berth.wait(container_id)

    done = await logs(remote_env, "-f", container_id)

    assert (done.returncode, done.stdout) == (0, b"done-once\n")


async def test_logs_stderr_apart_from_stdout_with_tail_and_timestamps(
    stack: Stack, remote_env: dict[str, str]
) -> None:
    container_id = await stack.create(cmd=["sh", "-c", f"{BOTH_STREAMS}; sleep 600"])
    await stack.berth.start(container_id)
    await written(stack, container_id, 10)

    everything = await logs(remote_env, container_id)
    tail = await logs(remote_env, "--tail", "3", container_id)
    stamped = await logs(remote_env, "-t", "--tail", "2", container_id)

    assert everything.stdout == b"".join(b"out-%d\n" % i for i in range(1, 6))
    assert everything.stderr == b"".join(b"err-%d\n" % i for i in range(1, 6))
    # The last 3 entries of the log, whichever stream: err-4, out-5, err-5.
    assert (tail.stdout, tail.stderr) == (b"out-5\n", b"err-4\nerr-5\n")
    assert re.fullmatch(RFC3339_NANO + rb"out-5\n", stamped.stdout)
    assert re.fullmatch(RFC3339_NANO + rb"err-5\n", stamped.stderr)


async def test_logs_since_and_until_select_by_the_entries_times(
    stack: Stack, remote_env: dict[str, str]
) -> None:
    container_id = await stack.create(cmd=["sh", "-c", f"{BOTH_STREAMS}; sleep 600"])
    await stack.berth.start(container_id)
    found = await written(stack, container_id, 10)
    at = {entry.line: entry.time_ns for entry in found}

    since = await logs(remote_env, "--since", format_rfc3339(at[b"out-4\n"]), container_id)
    until = await logs(remote_env, "--until", format_rfc3339(at[b"err-2\n"]), container_id)
    recent = await logs(remote_env, "--since", "10m", container_id)
    future = await logs(remote_env, "--since", str(time.time() + 3600), container_id)
    bad = await logs(remote_env, "--since", "yesterday", container_id)

    assert (since.stdout, since.stderr) == (b"out-4\nout-5\n", b"err-4\nerr-5\n")
    assert (until.stdout, until.stderr) == (b"out-1\nout-2\n", b"err-1\nerr-2\n")
    assert recent.stdout.count(b"\n") == 5 and recent.stderr.count(b"\n") == 5
    assert (future.returncode, future.stdout, future.stderr) == (0, b"", b"")
    assert bad.returncode != 0 and b"yesterday" in bad.stderr


async def test_logs_client_streams_and_missing_container(stack: Stack) -> None:
    container_id = await stack.create(cmd=["sh", "-c", f"{BOTH_STREAMS}; sleep 600"])
    await stack.berth.start(container_id)
    await written(stack, container_id, 10)

    errors = [e async for b in stack.berth.stream_logs(container_id, stdout=False) for e in b]

    assert [e.line for e in errors] == [b"err-%d\n" % i for i in range(1, 6)]
    assert {e.stream for e in errors} == {"stderr"}
    with pytest.raises(NotFound):
        await stack.berth.logs("no-such-container-7d1f")


def open_fds_to(path: Path) -> int:
    """How many of this process's descriptors (the agent's: it runs in the test) read ``path``."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                count += 1
        except OSError:
            continue
    return count


async def test_logs_follow_ends_on_the_node_when_the_client_leaves(
    stack: Stack, remote_env: dict[str, str], followers: list[Follower]
) -> None:
    container_id = await stack.create(cmd=["sh", "-c", "while true; do echo x; sleep 0.2; done"])
    await stack.berth.start(container_id)
    log = stack.settings.node_paths().log(container_id)
    follower = Follower(remote_env, container_id)
    followers.append(follower)
    await wait_for(lambda: len(follower.lines) >= 2)
    assert open_fds_to(log) >= 1  # the endpoint's reader has the log open

    follower.kill()

    await wait_for(lambda: open_fds_to(log) == 0, timeout=20)


async def test_logs_cli_loads_no_asyncpg_protobuf_sdk_orm_or_settings_model(
    stack: Stack, tmp_path: Path
) -> None:
    container_id = await stack.create(cmd=["sh", "-c", "echo light"])
    await stack.berth.start(container_id)
    heavy = (*SDK_ORM_AND_SETTINGS, "asyncpg", "pydantic", "google")

    loaded = await asyncio.to_thread(
        modules_loaded_by, stack, tmp_path, "logs", "--tail", "1", container_id, heavy=heavy
    )

    # Its reads are berth.db.wire's, its messages berth.endpoint.logs_wire's; grpc brings asyncio.
    assert loaded == []


async def test_logs_follow_ends_when_the_container_is_removed(
    stack: Stack, remote_env: dict[str, str], followers: list[Follower]
) -> None:
    container_id = await stack.create(cmd=["sh", "-c", "while true; do echo y; sleep 0.2; done"])
    await stack.berth.start(container_id)
    follower = Follower(remote_env, container_id)
    followers.append(follower)
    await wait_for(lambda: len(follower.lines) >= 2)

    await stack.berth.remove(container_id, force=True)

    assert await follower.ended() == 0
    assert set(follower.lines) == {b"y\n"}
