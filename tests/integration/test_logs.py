"""Logs: a start's structured saga lines, and containers' own output (rotated, streamed)."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
import time
import tracemalloc
from pathlib import Path

import pytest

from berth.container_logs import LogFilter, read_entries
from berth.logs import JsonFormatter
from berth.steps import start_workflow_id
from tests.integration.conftest import Stack
from tests.integration.node_agent import Node2


async def test_start_logs_every_phase_with_workflow_container_node_and_step(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    container_id = await stack.create()

    with caplog.at_level(logging.INFO, logger="temporalio.workflow"):
        await stack.berth.start(container_id)

    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records]
    mine = [line for line in lines if line.get("container_id") == container_id]
    assert [line["step"] for line in mine] == [
        "mount",
        "network",
        "spec",
        "shim",
        "task",
        "commit",
        "running",
    ]
    assert {line["workflow_id"] for line in mine} == {start_workflow_id(container_id)}
    assert {line["node"] for line in mine} == {stack.settings.node}
    assert all(line["run_id"] for line in mine)


# --- container logs: rotation, bounded reads, file modes, agent restarts ----------------------

# More than the default bound (10 MiB x 3): ``seq 1 5000000`` prints 38.9 MB.
LAST_LINE = 5_000_000


async def wait_for_line(stack: Stack, container_id: str, line: bytes, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while await stack.berth.logs(container_id, tail=1) != line:
        assert time.monotonic() < deadline, await stack.berth.logs(container_id, tail=1)
        await asyncio.sleep(0.2)


def last_number(log: Path) -> int:
    """The number on the log's last line, read from the node's files."""
    (*_, last) = (entry for batch in read_entries(log, LogFilter(tail=1)) for entry in batch)
    return int(last.line)


def log_driver_pids(log: Path) -> list[int]:
    """The log drivers writing ``log`` (found by their argv)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(log).encode() in argv and any(b"berth-log-driver" in arg for arg in argv):
            found.append(int(proc.name))
    return found


def parent_command(pid: int) -> str:
    ppid = int((Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2]).split()[1])
    return Path(f"/proc/{ppid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


async def test_container_logs_past_the_bound_stay_within_max_size_times_max_file(
    stack: Stack,
) -> None:
    settings = stack.settings
    container_id = await stack.create(cmd=["sh", "-c", f"seq 1 {LAST_LINE}; sleep 3600"])
    await stack.berth.start(container_id)
    await wait_for_line(stack, container_id, b"%d\n" % LAST_LINE)

    log = settings.node_paths().log(container_id)
    files = sorted(log.parent.glob(f"{log.name}*"))
    sizes = [f.stat().st_size for f in files]
    assert [f.name for f in files] == [log.name, f"{log.name}.1", f"{log.name}.2"]
    assert max(sizes) <= settings.log_max_bytes
    assert sum(sizes) <= settings.log_max_bytes * settings.log_max_files < 38_000_000
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    tail = await stack.berth.logs(container_id, tail=3)
    assert tail == b"%d\n%d\n%d\n" % (LAST_LINE - 2, LAST_LINE - 1, LAST_LINE)


async def test_container_logs_stream_reads_rotated_logs_with_bounded_memory(
    stack: Stack,
) -> None:
    container_id = await stack.create(cmd=["sh", "-c", f"seq 1 {LAST_LINE}; sleep 3600"])
    await stack.berth.start(container_id)
    await wait_for_line(stack, container_id, b"%d\n" % LAST_LINE)

    total = lines = batches = 0
    first = last = b""
    tracemalloc.start()
    try:
        async for batch in stack.berth.stream_logs(container_id):
            batches += 1
            lines += len(batch)
            total += sum(len(entry.line) for entry in batch)
            first = first or batch[0].line
            last = batch[-1].line
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # 1.5 MB and more of lines (20 MiB and more of json-file entries) went through the endpoint
    # and the reader, batched by the file's 64 KiB chunks; it never held more than a few.
    assert total > 1_500_000
    assert lines > 100 * batches
    assert peak < 2 * 1024 * 1024
    assert last == b"%d\n" % LAST_LINE
    # A contiguous run of whole lines, oldest rotated file first, ending with the newest one.
    assert lines == LAST_LINE - int(first) + 1


async def test_container_logs_follow_continues_across_a_rotation(stack: Stack) -> None:
    # 400 x 60 kB lines (each 4 partial entries of 16 KiB at most): 24 MB, past two rotations
    # of the default 10 MiB.
    script = (
        "i=0; while [ $i -lt 400 ]; do i=$((i+1)); yes x | head -c 120000 | tr -d '\\n'; "
        "echo; echo mark-$i; sleep 0.01; done"
    )
    container_id = await stack.create(cmd=["sh", "-c", script])
    await stack.berth.start(container_id)

    marks: list[int] = []
    async with asyncio.timeout(120):
        async for batch in stack.berth.stream_logs(container_id, tail=0, follow=True):
            marks += [int(e.line[5:]) for e in batch if e.line.startswith(b"mark-")]

    # 24 MB went by (two rotations and more); the follower saw the end, in order.
    assert marks[-1] == 400
    assert marks == list(range(marks[0], 401))


async def test_container_spec_file_and_its_dir_are_the_agents_alone(stack: Stack) -> None:
    container_id = await stack.create(env=["DB_PASSWORD=spec-secret-5e2a"])
    await stack.berth.start(container_id)

    paths = stack.settings.node_paths()
    spec = paths.spec(container_id)
    assert b"spec-secret-5e2a" in spec.read_bytes()  # the file that holds the env
    assert stat.S_IMODE(spec.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.specs_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(paths.workload_root.stat().st_mode) == 0o700


async def test_container_logs_keep_coming_while_the_node_agent_is_down(node2: Node2) -> None:
    container_id = await node2.create(
        cmd=["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done"]
    )
    await (await node2.start_workflow(container_id)).result()
    berth = node2.stack.berth
    log = node2.settings.node_paths().log(container_id)
    while not await berth.logs(container_id, tail=1):
        await asyncio.sleep(0.1)
    drivers = log_driver_pids(log)
    assert len(drivers) == 1 and "containerd-shim-runc-v2" in parent_command(drivers[0])

    node2.agent.kill()
    # The endpoint is the agent's: while it is down, the node's files tell what was written.
    before = last_number(log)
    await asyncio.sleep(1.0)
    during = last_number(log)
    await node2.agent.start()
    await asyncio.sleep(0.5)
    after = last_number(log)

    assert before < during < after
    assert log_driver_pids(log) == drivers
    assert int(await berth.logs(container_id, tail=1)) >= after  # served again
