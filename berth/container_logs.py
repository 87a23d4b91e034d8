"""Container logs on a node: where the log driver writes them, and how they are read back.

Each task's stdout and stderr go to ``<node>/ns/<namespace>/logs/<id>.log`` through the
``binary://`` log driver (``berth.log_driver``), which the runc shim runs beside the task and
which writes and rotates the file as Docker's json-file driver does: one JSON entry a line
(``log``, ``stream``, ``time``), ``<id>.log.1`` the newest rotated file, ``<id>.log.<max_files -
1>`` the oldest. A restarted container appends to the same file.

Two layers, both streaming (memory is one chunk at a time, whatever the log's size):

- bytes: ``read_log`` yields the files oldest first in chunks, ``tail_start`` finds where the
  last N lines begin by reading backwards, ``follow_file`` keeps reading across rotations;
- entries: ``read_entries`` and ``stream_entries`` parse those lines into :class:`LogEntry`
  batches (one batch per chunk read) and apply a :class:`LogFilter` as ``docker logs`` does:
  ``tail`` counts the file's entries, then ``since``/``until`` and the stream selection apply.

``follow`` (``docker logs -f``) reads what is written next, through rotations and through a
restart (the file continues), until ``still_running`` says the container is no longer live and
the files hold nothing more: docker's follow ends when the container stops, and so does this
one; a ``restart`` goes from ``stopping`` to ``starting`` without a stopped state in between,
so a follow continues through it. A follow asked of a container that is not running prints what
there is and ends, as docker's does.

Light: the standard library only (the CLI imports this module for its time arguments).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urlencode

from berth import log_driver

CHUNK_BYTES = 64 * 1024
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_FILES = 3
_FOLLOW_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class LogPolicy:
    """How the log driver bounds a file: ``max_bytes`` per file, ``max_files`` kept; ``head``
    keeps only the first ``max_bytes`` (a health probe's output)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_files: int = DEFAULT_MAX_FILES
    head: bool = False


DEFAULT_LOG_POLICY = LogPolicy()

_installed: set[Path] = set()


def ensure_log_driver(target: Path) -> Path:
    """Install the log driver at ``target`` once per process (an upgrade reinstalls it)."""
    if target not in _installed:
        log_driver.install(target)
        _installed.add(target)
    return target


def driver_uri(driver: Path, log: Path, policy: LogPolicy) -> str:
    """The ``binary://`` stdio URI that has the shim run ``driver`` writing ``log``."""
    query = {
        "path": str(log.absolute()),
        "max-size": str(policy.max_bytes),
        "max-file": str(policy.max_files),
        "mode": log_driver.HEAD if policy.head else log_driver.ROTATE,
    }
    return "binary://" + quote(str(driver.absolute())) + "?" + urlencode(query, quote_via=quote)


def prepare_log(driver: Path, log: Path, policy: LogPolicy) -> str:
    """Install the driver, make the log's directory private, and return the stdio URI."""
    # Here, not at the top: the command line reads logs without loading the settings' pydantic.
    from berth.config import make_private_dir

    ensure_log_driver(driver)
    make_private_dir(log.parent)
    return driver_uri(driver, log, policy)


def remove_log(log: Path) -> None:
    """Remove the log and its rotated files (a removed container's); missing ones are success."""
    log.unlink(missing_ok=True)
    for rotation in log.parent.glob(f"{log.name}.*"):
        if rotation.name[len(log.name) + 1 :].isdigit():
            rotation.unlink(missing_ok=True)


# --- reading -----------------------------------------------------------------------------------


def rotated(log: Path, index: int) -> Path:
    return log.with_name(f"{log.name}.{index}")


def _identity(stream: BinaryIO) -> tuple[int, int]:
    info = os.fstat(stream.fileno())
    return info.st_dev, info.st_ino


def open_log_files(log: Path) -> list[BinaryIO]:
    """The log's files, opened, oldest first (the live file last).

    Opened newest first, so a rotation while opening shows the same file twice rather than
    missing one; a file seen twice is kept once.
    """
    streams: list[BinaryIO] = []
    seen: set[tuple[int, int]] = set()
    index = 0
    while True:
        path = log if index == 0 else rotated(log, index)
        try:
            stream = path.open("rb")
        except FileNotFoundError:
            if index == 0:
                index += 1
                continue  # a rotation in progress: the live file is back in a moment
            break
        if _identity(stream) in seen:
            stream.close()
        else:
            seen.add(_identity(stream))
            streams.append(stream)
        index += 1
    streams.reverse()
    return streams


def _close_all(streams: list[BinaryIO]) -> None:
    for stream in streams:
        stream.close()


def _chunks(stream: BinaryIO, end: int | None = None) -> Iterator[bytes]:
    """The stream's chunks from where it stands, to its end (or to byte ``end``)."""
    while chunk := stream.read(
        CHUNK_BYTES if end is None else min(CHUNK_BYTES, end - stream.tell())
    ):
        yield chunk


def read_log(log: Path, tail: int | None = None) -> Iterator[bytes]:
    """The log, oldest first, in chunks of at most ``CHUNK_BYTES``; with ``tail``, only its
    last ``tail`` lines (a last line without a newline counts)."""
    opened = open_log_files(log)
    streams = opened
    try:
        end = None
        if tail is not None and streams:
            # The lines counted are the ones there now: what the container writes meanwhile is
            # not read, so a tail of N is N lines.
            end = os.fstat(streams[-1].fileno()).st_size
            index, offset = tail_start(streams, tail, end)
            streams = streams[index:]
            if streams:
                streams[0].seek(offset)
        for position, stream in enumerate(streams):
            yield from _chunks(stream, end if position == len(streams) - 1 else None)
    finally:
        _close_all(opened)


def tail_start(
    streams: list[BinaryIO], lines: int, newest_end: int | None = None
) -> tuple[int, int]:
    """Where the last ``lines`` lines begin: (index into ``streams``, byte offset).

    Reads backwards one chunk at a time from the newest file (from ``newest_end`` if given,
    else its current end); leaves the files after the returned one at their starts.
    """
    if lines <= 0:
        return len(streams), 0
    remaining = lines
    last_byte = True
    for index in range(len(streams) - 1, -1, -1):
        stream = streams[index]
        end = stream.seek(0, os.SEEK_END)
        if index == len(streams) - 1 and newest_end is not None:
            end = min(end, newest_end)
        while end > 0:
            start = max(0, end - CHUNK_BYTES)
            stream.seek(start)
            block = stream.read(end - start)
            stop = len(block)
            if last_byte:
                last_byte = False
                if block.endswith(b"\n"):
                    stop -= 1  # the log's final newline ends the last line, it starts none
            while (found := block.rfind(b"\n", 0, stop)) >= 0:
                remaining -= 1
                if remaining == 0:
                    return index, start + found + 1
                stop = found
            end = start
        stream.seek(0)  # read forwards from its start once the tail begins in an older file
    return 0, 0


async def follow_file(
    log: Path,
    tail: int | None,
    still_running: Callable[[], Awaitable[bool]],
    poll_seconds: float = _FOLLOW_POLL_SECONDS,
) -> AsyncIterator[bytes]:
    """The log (or its last ``tail`` lines), then what is written to it, across rotations,
    until ``still_running`` says the container stopped and the files hold nothing more."""
    streams = await asyncio.to_thread(open_log_files, log)
    try:
        if tail is not None and streams:
            index, offset = await asyncio.to_thread(tail_start, streams, tail)
            if index == len(streams):  # --tail 0: only what comes next
                index, offset = len(streams) - 1, streams[-1].seek(0, os.SEEK_END)
            _close_all(streams[:index])
            streams = streams[index:]
            streams[0].seek(offset)
        stopping = False
        while True:
            idle = True
            for stream in streams:
                while chunk := await asyncio.to_thread(stream.read, CHUNK_BYTES):
                    idle = False
                    yield chunk
            _close_all(streams[:-1])
            streams = streams[-1:]
            newer = await asyncio.to_thread(newer_files, log, streams[0] if streams else None)
            if newer:
                streams += newer  # the live file is read to its end first, then the newer ones
                continue
            if idle and stopping:
                return
            if idle:
                # One more pass after the container stopped: the driver may still be writing.
                stopping = not await still_running()
                await asyncio.sleep(poll_seconds)
    finally:
        _close_all(streams)


def newer_files(log: Path, live: BinaryIO | None) -> list[BinaryIO]:
    """The files written after ``live`` (rotated away since it was opened), oldest first.

    Empty while ``live`` is still the live file. Rotation renames ``log`` to ``log.1`` and
    shifts the others up, so ``live`` is now some ``log.k`` and the newer ones are
    ``log.k-1`` ... ``log.1`` and ``log``; when ``live`` has already been dropped, every file
    is newer.
    """
    try:
        current = log.stat()
    except FileNotFoundError:
        return []  # mid-rotation: look again on the next poll
    if live is None:
        return open_log_files(log)
    mine = _identity(live)
    if (current.st_dev, current.st_ino) == mine:
        return []
    found: int | None = None
    index = 1
    while True:
        try:
            info = rotated(log, index).stat()
        except FileNotFoundError:
            break
        if (info.st_dev, info.st_ino) == mine:
            found = index
            break
        index += 1
    candidates = [rotated(log, k) for k in range((found or index) - 1, 0, -1)] + [log]
    streams: list[BinaryIO] = []
    for path in candidates:
        with contextlib.suppress(FileNotFoundError):
            stream = path.open("rb")
            if _identity(stream) == mine or any(_identity(s) == _identity(stream) for s in streams):
                stream.close()
            else:
                streams.append(stream)
    return streams


# --- entries -----------------------------------------------------------------------------------

STDOUT = "stdout"
STDERR = "stderr"
_NANOS = 1_000_000_000


@dataclass(frozen=True)
class LogEntry:
    """One json-file entry: the line as written (its newline included, none if partial), which
    stream it came from, and when the driver read it (nanoseconds since the epoch, UTC)."""

    stream: str
    line: bytes
    time_ns: int


@dataclass(frozen=True)
class LogFilter:
    """What ``docker logs`` selects: the last ``tail`` entries (None: all), then those at or
    after ``since_ns`` and at or before ``until_ns`` (None: no bound), of the chosen streams."""

    tail: int | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    stdout: bool = True
    stderr: bool = True

    def keeps(self, entry: LogEntry) -> bool:
        """Whether ``entry`` is shown (its time and stream; ``tail`` is applied by position)."""
        if self.since_ns is not None and entry.time_ns < self.since_ns:
            return False
        if entry.stream == STDOUT:
            return self.stdout
        if entry.stream == STDERR:
            return self.stderr
        return False

    def ended(self, entry: LogEntry) -> bool:
        """Whether ``entry`` is past ``until`` (and with it everything after: the end)."""
        return self.until_ns is not None and entry.time_ns > self.until_ns


_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$"
)


def parse_rfc3339(text: str) -> int:
    """RFC 3339 time, nanoseconds kept (``2026-11-30T09:22:28.123456789Z``), as epoch ns.

    Raises:
        ValueError: ``text`` is not such a time.
    """
    match = _RFC3339.match(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    day, clock, fraction, zone = match.groups()
    zone = "+00:00" if zone in ("Z", "z") else zone
    seconds = int(datetime.fromisoformat(f"{day}T{clock}{zone}").timestamp())
    return seconds * _NANOS + int((fraction or "").ljust(9, "0"))


def format_rfc3339(time_ns: int) -> str:
    """Epoch ns as ``docker logs -t`` prints it: UTC, nine fraction digits."""
    seconds, nanos = divmod(time_ns, _NANOS)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": _NANOS, "m": 60 * _NANOS}
_UNIT_NS["h"] = 60 * _UNIT_NS["m"]
_DURATIONS = re.compile(rf"(?:{_DURATION.pattern})+")  # a Go duration: ``1h30m``


def parse_time_argument(value: str, now_ns: int | None = None) -> int:
    """``docker logs --since/--until``: an RFC 3339 time (a date alone, or one without a zone,
    is local time), a Unix time (``1700000000.5``), or a Go duration before now (``10m``,
    ``1h30m``); as epoch ns.

    Raises:
        ValueError: none of those.
    """
    now_ns = time.time_ns() if now_ns is None else now_ns
    text = value.strip()
    if _DURATIONS.fullmatch(text):
        return now_ns - _duration_ns(text)
    if re.fullmatch(r"\d+(\.\d{1,9})?", text):
        seconds, _, fraction = text.partition(".")
        return int(seconds) * _NANOS + int(fraction.ljust(9, "0") or 0)
    with contextlib.suppress(ValueError):
        return parse_rfc3339(text)
    with contextlib.suppress(ValueError):  # a date, or a time without a zone: local time
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.astimezone()
        whole = int(moment.replace(microsecond=0).timestamp())
        return whole * _NANOS + moment.microsecond * 1000
    raise ValueError(f"not a time or a duration: {value!r}")


def _duration_ns(text: str) -> int:
    return int(sum(float(number) * _UNIT_NS[unit] for number, unit in _DURATION.findall(text)))


def parse_entry(raw: bytes) -> LogEntry | None:
    """One file line as an entry; None for a line that is not one (skipped, as docker does)."""
    try:
        fields = json.loads(raw)
        return LogEntry(fields["stream"], fields["log"].encode(), parse_rfc3339(fields["time"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class EntryLines:
    """Chunks of the files in, parsed entries out; a line not yet ended waits for the next."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[LogEntry]:
        data = self._pending + chunk
        end = data.rfind(b"\n") + 1
        self._pending = data[end:]
        parsed = (parse_entry(line) for line in data[:end].splitlines())
        return [entry for entry in parsed if entry is not None]


def _select(batches: Iterable[list[LogEntry]], selection: LogFilter) -> Iterator[list[LogEntry]]:
    """``selection``'s entries from ``batches``, stopping at the first one past ``until``."""
    for batch in batches:
        kept: list[LogEntry] = []
        for entry in batch:
            if selection.ended(entry):
                if kept:
                    yield kept
                return
            if selection.keeps(entry):
                kept.append(entry)
        if kept:
            yield kept


def read_entries(log: Path, selection: LogFilter = LogFilter()) -> Iterator[list[LogEntry]]:
    """The log's entries as ``selection`` picks them, oldest first, one batch per chunk."""
    lines = EntryLines()
    yield from _select((lines.feed(chunk) for chunk in read_log(log, selection.tail)), selection)


async def stream_entries(
    log: Path,
    selection: LogFilter,
    follow: bool,
    still_running: Callable[[], Awaitable[bool]],
    poll_seconds: float = _FOLLOW_POLL_SECONDS,
) -> AsyncIterator[list[LogEntry]]:
    """Batches of the log's entries as ``selection`` picks them, the files read in a thread;
    with ``follow``, then what is written, across rotations and restarts, while
    ``still_running()`` (see the module), or until an entry is past ``until``."""
    if not follow:
        batches = read_entries(log, selection)
        done: list[LogEntry] = []  # what ``next`` gives back at the end (a batch is never empty)
        while batch := await asyncio.to_thread(next, batches, done):
            yield batch
        return
    lines = EntryLines()
    async for chunk in follow_file(log, selection.tail, still_running, poll_seconds):
        entries = await asyncio.to_thread(lines.feed, chunk)  # parsing 64 KiB: off the loop
        for batch in _select([entries], selection):
            yield batch
        if any(selection.ended(entry) for entry in entries):
            return
