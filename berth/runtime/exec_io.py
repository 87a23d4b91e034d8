"""The FIFOs a process in a task talks through, and the agent's non-blocking ends of them.

An exec's stdio is a private directory (0700) of FIFOs (0600) that the node agent creates before
containerd's Exec and removes once the exec is deleted (``make_pipes`` / ``remove_pipes``; the
removal is idempotent and safe when the creation never ran or half ran). The runc shim opens the
other ends: it writes the process's stdout and stderr (or with a terminal, the console) into
``stdout``/``stderr`` and copies ``stdin`` into the process.

The agent opens each FIFO read-write and non-blocking (``FifoEnd``): a read-write FIFO never reads
an end-of-file before the shim has opened its side, and never blocks the event loop in ``open``.
So the end of an exec's output is not an end-of-file: it is the process's exit, after which the
shim's copy finishes (its delete waits for it) and ``drain`` takes what is left. A container
created with ``-i``/``-t`` has its init's stdin FIFO in its own directory
(``container_stdin``), which an attach opens the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from berth.config import NodePaths, make_private_dir
from berth.runtime.containerd import ProcessStdio

# A read's size: the FIFO's whole default buffer.
CHUNK_BYTES = 64 * 1024
FIFO_MODE = 0o600


def exec_dir(paths: NodePaths, container_id: str, exec_id: str) -> Path:
    """The private directory of one exec's FIFOs (derived: a crashed agent's are found again)."""
    return paths.workload_root / "exec" / container_id / exec_id


def container_stdin(paths: NodePaths, container_id: str) -> Path:
    """The stdin FIFO of a container created with ``-i`` or ``-t``."""
    return paths.container_dir(container_id) / "stdin"


@dataclass(frozen=True)
class ProcessPipes:
    """One process's FIFOs; ``None`` for a stream it does not have."""

    directory: Path
    stdin: Path | None
    stdout: Path
    # None with a terminal: the console is one stream.
    stderr: Path | None
    terminal: bool

    def stdio(self) -> ProcessStdio:
        """What containerd's Exec is given."""
        return ProcessStdio(
            stdin=str(self.stdin or ""),
            stdout=str(self.stdout),
            stderr=str(self.stderr or ""),
            terminal=self.terminal,
        )


def make_fifo(path: Path) -> Path:
    """A FIFO at ``path`` (0600); an existing FIFO is kept, as a retry may find it."""
    try:
        os.mkfifo(path, FIFO_MODE)
    except FileExistsError:
        if not path.is_fifo() or path.is_symlink():
            raise
    return path


def make_pipes(directory: Path, stdin: bool, terminal: bool) -> ProcessPipes:
    """Create ``directory`` (0700) with the FIFOs a process with these streams needs."""
    make_private_dir(directory)
    return ProcessPipes(
        directory=directory,
        stdin=make_fifo(directory / "stdin") if stdin else None,
        stdout=make_fifo(directory / "stdout"),
        stderr=None if terminal else make_fifo(directory / "stderr"),
        terminal=terminal,
    )


def remove_pipes(directory: Path) -> None:
    """Remove a process's FIFO directory; a missing one is success."""
    shutil.rmtree(directory, ignore_errors=True)


class FifoEnd:
    """The agent's end of one FIFO: opened read-write and non-blocking, read and written
    without blocking the event loop."""

    def __init__(self, path: Path) -> None:
        # O_NOFOLLOW: the directory is the agent's own, but a FIFO is all this ever opens.
        self._fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        self._closed = False

    async def _ready(self, writing: bool) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        if writing:
            loop.add_writer(self._fd, wake)
        else:
            loop.add_reader(self._fd, wake)
        try:
            await ready
        finally:
            if writing:
                loop.remove_writer(self._fd)
            else:
                loop.remove_reader(self._fd)

    async def read(self) -> bytes:
        """The next chunk written to the FIFO (waits for one; never an end-of-file)."""
        while True:
            try:
                return os.read(self._fd, CHUNK_BYTES)
            except BlockingIOError:
                await self._ready(writing=False)

    def drain(self) -> bytes:
        """Whatever the FIFO holds now, without waiting."""
        parts = []
        while True:
            try:
                chunk = os.read(self._fd, CHUNK_BYTES)
            except BlockingIOError:
                break
            if not chunk:
                break
            parts.append(chunk)
        return b"".join(parts)

    async def write(self, data: bytes) -> None:
        """Write all of ``data``, waiting while the FIFO is full."""
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:
                await self._ready(writing=True)
                continue
            except OSError as err:
                if err.errno == errno.EPIPE:
                    return  # nobody reads any more: the process is gone
                raise
            view = view[written:]

    def close(self) -> None:
        """Close the agent's end (idempotent)."""
        if not self._closed:
            self._closed = True
            with contextlib.suppress(OSError):
                os.close(self._fd)


async def init_stdio(
    paths: NodePaths, container_id: str, spec: Mapping[str, Any]
) -> tuple[str, bool]:
    """The stdin FIFO and terminal flag of a task created from ``spec``.

    A container created with ``-t`` gets a console and a stdin FIFO in its own directory (kept
    across restarts; an attach writes to it only when it was created with ``-i``); any other
    gets neither, exactly as before and at no cost: ("", False) without touching the disk.
    """
    if not (spec.get("process") or {}).get("terminal"):
        return "", False
    fifo = container_stdin(paths, container_id)
    await asyncio.to_thread(make_private_dir, fifo.parent)
    return str(await asyncio.to_thread(make_fifo, fifo)), True
