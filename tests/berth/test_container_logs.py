"""Reading rotated container logs: bytes (whole, tail read backwards, follow across rotations) and
json-file entries (tail, since, until, streams, follow across rotations and a restart)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from berth.container_logs import (
    CHUNK_BYTES,
    LogEntry,
    LogFilter,
    follow_file,
    format_rfc3339,
    parse_entry,
    parse_rfc3339,
    parse_time_argument,
    read_entries,
    read_log,
    remove_log,
    stream_entries,
)
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


async def test_follow_file_reads_across_rotations_until_the_container_stops(
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
        async for chunk in follow_file(log, 5, still_running, poll_seconds=0.005):
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


# --- entries ---------------------------------------------------------------------------------

SECOND = 1_000_000_000
T0 = 1_800_000_000 * SECOND  # 2027-01-15T08:00:00Z


def entry_line(stream: str, line: bytes, time_ns: int) -> bytes:
    return (
        json.dumps({"log": line.decode(), "stream": stream, "time": format_rfc3339(time_ns)}) + "\n"
    ).encode()


def write_entries(sink: RotatingFile, first: int, last: int, stream: str = "stdout") -> None:
    """Entries ``line-<n>``, a second apart from ``T0 + n`` s, through the driver's rotation."""
    for n in range(first, last + 1):
        sink.write(entry_line(stream, lines(n, n), T0 + n * SECOND))


def joined(batches: list[list[LogEntry]]) -> bytes:
    return b"".join(entry.line for batch in batches for entry in batch)


def test_parse_rfc3339_keeps_nanoseconds_and_reads_offsets() -> None:
    assert parse_rfc3339("2027-01-15T08:00:00.000000001Z") == T0 + 1
    assert parse_rfc3339("2027-01-15T08:00:00.5Z") == T0 + SECOND // 2
    assert parse_rfc3339("2027-01-15T09:00:00+01:00") == T0
    assert format_rfc3339(T0 + 1) == "2027-01-15T08:00:00.000000001Z"
    with pytest.raises(ValueError):
        parse_rfc3339("yesterday")


def test_parse_time_argument_takes_docker_forms() -> None:
    now = T0 + 3600 * SECOND
    assert parse_time_argument("10m", now) == now - 600 * SECOND
    assert parse_time_argument("1h30m", now) == now - 5400 * SECOND
    assert parse_time_argument("1800000000.25", now) == T0 + SECOND // 4
    assert parse_time_argument("2027-01-15T08:00:00Z", now) == T0
    assert parse_time_argument("2027-01-15T08:00:00.000000007Z", now) == T0 + 7
    with pytest.raises(ValueError):
        parse_time_argument("soon", now)


def test_parse_entry_malformed_line_is_none() -> None:
    assert parse_entry(entry_line("stderr", b"x\n", T0)) == LogEntry("stderr", b"x\n", T0)
    assert parse_entry(b'{"log":"x"}') is None
    assert parse_entry(b"raw bytes") is None


def test_read_entries_tail_counts_entries_across_rotated_files(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    sink = RotatingFile(str(log), 10_000, 3)
    write_entries(sink, 1, 500)  # about 90 bytes each: several rotations
    sink.close()
    live = len(log.read_bytes().splitlines())

    batches = list(read_entries(log, LogFilter(tail=live + 5)))

    assert joined(batches) == lines(500 - live - 4, 500)
    assert list(read_entries(log, LogFilter(tail=0))) == []


def test_read_entries_rotated_files_read_oldest_first(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    sink = RotatingFile(str(log), 10_000, 3)
    write_entries(sink, 1, 5000)
    sink.close()

    got = joined(list(read_entries(log)))

    first = int(got[5:11])
    assert got == lines(first, 5000)
    assert len(list(tmp_path.glob("c.log*"))) == 3


def test_read_entries_since_until_and_streams_select_as_docker(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    sink = RotatingFile(str(log), 1_000_000, 3)
    write_entries(sink, 1, 10)
    write_entries(sink, 11, 12, stream="stderr")
    sink.close()

    def select(selection: LogFilter) -> bytes:
        return joined(list(read_entries(log, selection)))

    since, until = T0 + 4 * SECOND, T0 + 6 * SECOND
    assert select(LogFilter(since_ns=since, until_ns=until)) == lines(4, 6)  # both inclusive
    assert select(LogFilter(stdout=False)) == lines(11, 12)
    assert select(LogFilter(stderr=False, tail=3)) == lines(10, 10)  # tail counts all streams
    assert select(LogFilter(tail=5, since_ns=T0 + 10 * SECOND)) == lines(10, 12)


def test_read_entries_incomplete_last_line_waits(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_bytes(entry_line("stdout", b"whole\n", T0) + entry_line("stdout", b"cut", T0)[:20])

    assert joined(list(read_entries(log))) == b"whole\n"


async def test_stream_entries_follow_continues_across_rotation_and_restart_until_stopped(
    tmp_path: Path,
) -> None:
    log = tmp_path / "c.log"
    sink = RotatingFile(str(log), 5_000, 3)
    write_entries(sink, 1, 10)
    running = True

    async def still_running() -> bool:
        return running

    async def container() -> None:
        nonlocal running, sink
        for n in range(11, 1001):  # many rotations while the follower reads
            if n == 500:  # a restart: the old task's driver ends, a new one appends
                sink.close()
                sink = RotatingFile(str(log), 5_000, 3)
            write_entries(sink, n, n, stream="stderr" if n % 2 else "stdout")
            if n % 20 == 0:
                await asyncio.sleep(0.01)
        running = False

    received: list[list[LogEntry]] = []

    async def follower() -> None:
        selection = LogFilter(tail=5)
        async for batch in stream_entries(log, selection, True, still_running, 0.005):
            received.append(batch)

    following = asyncio.create_task(follower())
    await asyncio.sleep(0.1)  # the follower has read the tail and waits for more
    await asyncio.wait_for(asyncio.gather(container(), following), 30)
    sink.close()

    assert joined(received) == lines(6, 1000)
    assert {e.stream for batch in received for e in batch} == {"stdout", "stderr"}
    assert len(received) < 200  # batches of a chunk's entries, not one per line


async def test_stream_entries_follow_ends_at_an_entry_past_until(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    sink = RotatingFile(str(log), 1_000_000, 3)
    write_entries(sink, 1, 10)
    sink.close()

    async def forever() -> bool:
        return True

    selection = LogFilter(until_ns=T0 + 5 * SECOND)
    batches = [b async for b in stream_entries(log, selection, True, forever, 0.005)]

    assert joined(batches) == lines(1, 5)
