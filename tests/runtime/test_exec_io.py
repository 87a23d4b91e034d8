"""The FIFOs of a process's stdio: made private, read and written without blocking, removed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from pathlib import Path

import pytest

from berth.config import NodePaths
from berth.runtime.exec_io import (
    CHUNK_BYTES,
    FifoEnd,
    container_stdin,
    init_stdio,
    make_pipes,
    remove_pipes,
)


def test_make_pipes_without_a_terminal_makes_private_stdin_stdout_and_stderr(
    tmp_path: Path,
) -> None:
    pipes = make_pipes(tmp_path / "exec" / "one", stdin=True, terminal=False)

    assert stat.S_IMODE(pipes.directory.stat().st_mode) == 0o700
    for fifo in (pipes.stdin, pipes.stdout, pipes.stderr):
        assert fifo is not None and fifo.is_fifo()
        assert stat.S_IMODE(fifo.stat().st_mode) == 0o600
    stdio = pipes.stdio()
    assert (stdio.stdin, stdio.stderr, stdio.terminal) == (
        str(pipes.stdin),
        str(pipes.stderr),
        False,
    )


def test_make_pipes_with_a_terminal_and_no_stdin_makes_stdout_only(tmp_path: Path) -> None:
    pipes = make_pipes(tmp_path / "exec", stdin=False, terminal=True)

    assert (pipes.stdin, pipes.stderr) == (None, None)
    assert sorted(p.name for p in pipes.directory.iterdir()) == ["stdout"]
    assert pipes.stdio().stdin == "" and pipes.stdio().terminal


def test_make_pipes_again_keeps_the_fifos_and_refuses_a_file_in_their_place(
    tmp_path: Path,
) -> None:
    make_pipes(tmp_path / "exec", stdin=True, terminal=False)
    make_pipes(tmp_path / "exec", stdin=True, terminal=False)
    (tmp_path / "exec" / "stdout").unlink()
    (tmp_path / "exec" / "stdout").write_text("not a fifo")

    with pytest.raises(FileExistsError):
        make_pipes(tmp_path / "exec", stdin=True, terminal=False)


def test_remove_pipes_is_idempotent(tmp_path: Path) -> None:
    pipes = make_pipes(tmp_path / "exec", stdin=True, terminal=False)

    remove_pipes(pipes.directory)
    remove_pipes(pipes.directory)

    assert not pipes.directory.exists()


async def test_fifo_end_reads_what_a_writer_writes_and_never_an_end_of_file(
    tmp_path: Path,
) -> None:
    pipes = make_pipes(tmp_path / "exec", stdin=False, terminal=True)
    end = FifoEnd(pipes.stdout)
    try:
        pending = asyncio.create_task(end.read())
        await asyncio.sleep(0.05)
        assert not pending.done()  # no writer yet: waiting, not an end-of-file
        writer = os.open(pipes.stdout, os.O_WRONLY)
        os.write(writer, b"hello")
        os.close(writer)
        assert await asyncio.wait_for(pending, 5) == b"hello"
        assert end.drain() == b""  # the writer closed: still no end-of-file, just nothing
    finally:
        end.close()
        end.close()


async def test_fifo_end_write_waits_while_full_and_delivers_everything(tmp_path: Path) -> None:
    pipes = make_pipes(tmp_path / "exec", stdin=True, terminal=False)
    assert pipes.stdin is not None
    end = FifoEnd(pipes.stdin)
    reader = os.open(pipes.stdin, os.O_RDONLY | os.O_NONBLOCK)
    data = os.urandom(4 * CHUNK_BYTES)
    received = bytearray()
    try:
        writing = asyncio.create_task(end.write(data))
        while len(received) < len(data):
            await asyncio.sleep(0.01)
            with contextlib.suppress(BlockingIOError):
                received += os.read(reader, CHUNK_BYTES)
        await asyncio.wait_for(writing, 5)
    finally:
        end.close()
        os.close(reader)

    assert bytes(received) == data


async def test_init_stdio_of_a_spec_without_a_terminal_is_none_and_makes_nothing(
    tmp_path: Path,
) -> None:
    paths = NodePaths(tmp_path, "node-1")

    assert await init_stdio(paths, "c1", {"process": {"terminal": False}}) == ("", False)
    assert not paths.container_dir("c1").exists()


async def test_init_stdio_of_a_terminal_is_a_stdin_fifo_in_the_container_s_directory(
    tmp_path: Path,
) -> None:
    paths = NodePaths(tmp_path, "node-1")

    stdin, terminal = await init_stdio(paths, "c1", {"process": {"terminal": True}})
    again = await init_stdio(paths, "c1", {"process": {"terminal": True}})

    assert (stdin, terminal) == (str(container_stdin(paths, "c1")), True) == again
    assert Path(stdin).is_fifo()
