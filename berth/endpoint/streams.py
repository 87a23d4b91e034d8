"""Byte streams between an event loop and a worker thread that reads or writes a tar.

tarfile is blocking; gRPC's aio calls are not. :class:`ThreadWriter` is a stream a thread writes
a tar to, handing ``CHUNK_BYTES`` pieces to the loop through a bounded queue (a slow reader
slows the writer instead of filling memory); :class:`ThreadReader` is a stream a thread reads a
tar from, pulling the next piece from an async iterator on the loop. Both stop with
:class:`berth.runtime.rootfs_tar.Stopped` once their ``stop`` event is set, so a call whose
client went away never leaves its thread blocked. The node endpoint's ``Files`` service and the
CLI's cp both use them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

from berth.runtime.rootfs_tar import Stopped

T = TypeVar("T")

# Bytes per piece handed over, and pieces in flight between the thread and the loop.
CHUNK_BYTES = 256 * 1024
QUEUE_CHUNKS = 8
# How often a thread blocked on the event loop checks whether it was stopped.
POLL_SECONDS = 0.25


def await_from_thread(
    coroutine: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop, stop: threading.Event
) -> T:
    """Run ``coroutine`` on ``loop`` from a worker thread; ``Stopped`` once ``stop`` is set."""
    future = asyncio.run_coroutine_threadsafe(coroutine, loop)
    while True:
        try:
            return future.result(timeout=POLL_SECONDS)
        except concurrent.futures.TimeoutError:
            if stop.is_set():
                future.cancel()
                raise Stopped from None


class ThreadWriter:
    """A write-only stream for a thread; what it writes comes out of :meth:`chunks` on the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
        self._loop = loop
        self._stop = stop
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=QUEUE_CHUNKS)
        self._buffer = bytearray()
        self._written = 0

    def write(self, data: bytes) -> int:
        if self._stop.is_set():
            raise Stopped
        self._buffer += data
        self._written += len(data)
        if len(self._buffer) >= CHUNK_BYTES:
            self.flush()
        return len(data)

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        if self._buffer:
            self._put(bytes(self._buffer))
            self._buffer.clear()

    def close(self) -> None:
        """Flush and mark the end (not for a stopped stream: nobody reads it any more)."""
        if not self._stop.is_set():
            with contextlib.suppress(Stopped):
                self.flush()
                self._put(None)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The pieces written, until :meth:`close` (on the loop)."""
        while (chunk := await self._queue.get()) is not None:
            yield chunk

    def _put(self, item: bytes | None) -> None:
        await_from_thread(self._queue.put(item), self._loop, self._stop)


class ThreadReader:
    """A read-only stream for a thread over an async iterator of byte pieces on the loop."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, pieces: AsyncIterator[bytes], stop: threading.Event
    ) -> None:
        self._loop = loop
        self._pieces = pieces
        self._stop = stop
        self._buffer = b""
        self._ended = False

    async def _next(self) -> bytes | None:
        return await anext(self._pieces, None)

    def read(self, size: int = -1) -> bytes:
        while not self._buffer and not self._ended:
            piece = await_from_thread(self._next(), self._loop, self._stop)
            if piece is None:
                self._ended = True
            else:
                self._buffer = piece
        if size < 0 or size >= len(self._buffer):
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data
