"""Reading rotated container logs: whole, tail (backwards) and follow (across rotations)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from berth.container_logs import CHUNK_BYTES, follow_log, read_log, remove_log
from berth.log_driver import RotatingFile


def lines(first: int, last: int) -> bytes:
    return b"".join(b"line-%06d\n" % n for n in range(first, last + 1))


def write_rotated(log: Path, first: int, last: int, max_bytes: int, max_files: int) -> bytes:
    """Write lines through the driver's rotation; what the files keep, oldest first."""
    sink = RotatingFile(str(log), max_bytes, max_files)
    for n in range(first, last + 1):
        sink.write(lines(n, n))
    sink.close()
    kept = b""
    for index in range(max_files - 1, 0, -1):
        rotated = log.with_name(f"{log.name}.{index}")
        if rotated.exists():
            kept += rotated.read_bytes()
    return kept + log.read_bytes()


def test_read_log_rotated_files_streams_oldest_first_in_bounded_chunks(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    kept = write_rotated(log, 1, 30_000, max_bytes=100_000, max_files=3)

    chunks = list(read_log(log))

    assert b"".join(chunks) == kept
    assert max(len(c) for c in chunks) <= CHUNK_BYTES
    assert kept.endswith(lines(30_000, 30_000))


def test_read_log_tail_crosses_rotated_files(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    write_rotated(log, 1, 30_000, max_bytes=100_000, max_files=3)
    live_lines = log.read_bytes().count(b"\n")

    tail = b"".join(read_log(log, tail=live_lines + 5))

    assert tail == lines(30_000 - live_lines - 4, 30_000)


def test_read_log_tail_last_line_without_newline_counts(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_bytes(b"a\nb\nc")

    assert b"".join(read_log(log, tail=2)) == b"b\nc"
    assert b"".join(read_log(log, tail=0)) == b""
    assert b"".join(read_log(log, tail=10)) == b"a\nb\nc"


def test_read_log_tail_is_the_lines_there_when_asked_not_what_comes_after(
    tmp_path: Path,
) -> None:
    log = tmp_path / "c.log"
    log.write_bytes(lines(1, 30_000))  # several chunks
    chunks = read_log(log, tail=30_000)

    first = next(chunks)
    with log.open("ab") as writer:  # the container writes on while the tail is read
        writer.write(b"later\n")
    rest = b"".join(chunks)

    assert first + rest == lines(1, 30_000)


def test_read_log_missing_log_is_empty(tmp_path: Path) -> None:
    assert list(read_log(tmp_path / "none.log")) == []


async def test_follow_log_reads_across_rotations_until_the_container_stops(
    tmp_path: Path,
) -> None:
    log = tmp_path / "c.log"
    sink = RotatingFile(str(log), 1000, 3)
    sink.write(lines(1, 10))
    running = True

    async def still_running() -> bool:
        return running

    async def writer() -> None:
        nonlocal running
        for n in range(11, 2001):  # many rotations while the follower reads
            sink.write(lines(n, n))
            if n % 20 == 0:
                await asyncio.sleep(0.01)
        running = False

    received = bytearray()

    async def reader() -> None:
        async for chunk in follow_log(log, 5, still_running, poll_seconds=0.005):
            received.extend(chunk)

    following = asyncio.create_task(reader())
    await asyncio.sleep(0.1)  # the follower has read the tail and waits for more
    await asyncio.wait_for(asyncio.gather(writer(), following), 30)
    sink.close()

    assert bytes(received) == lines(6, 2000)


def test_remove_log_removes_the_log_and_its_rotations_only(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    write_rotated(log, 1, 1000, max_bytes=1000, max_files=3)
    other = tmp_path / "c.log.partial"
    other.write_bytes(b"")

    remove_log(log)
    remove_log(log)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.log.partial"]
