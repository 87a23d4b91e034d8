"""Every containerd call has its own deadline: a containerd that never answers is Unavailable."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from berth.errors import Unavailable, Waiting, waiting_of
from berth.runtime.containerd import ContainerdClient


async def test_get_task_on_a_containerd_that_never_answers_is_unavailable_at_its_deadline(
    tmp_path: Path,
) -> None:
    # A socket that accepts and then says nothing: a frozen (SIGSTOPped) containerd.
    socket = tmp_path / "frozen.sock"
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_unix_server(accept, path=str(socket))
    try:
        async with ContainerdClient(
            socket, "berth-test", "node-7", call_timeout=0.5, grace_seconds=9
        ) as client:
            began = time.monotonic()
            with pytest.raises(Unavailable) as raised:
                await client.get_task("c0ffee")
            took = time.monotonic() - began
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()

    assert took < 5
    message = raised.value.message
    assert "task c0ffee" in message and "node-7" in message
    assert waiting_of(raised.value) == Waiting("containerd", "node-7", 9.0)


async def test_a_gone_containerd_socket_is_unavailable_waiting_for_containerd(
    tmp_path: Path,
) -> None:
    async with ContainerdClient(tmp_path / "gone.sock", "berth-test", "node-7") as client:
        with pytest.raises(Unavailable) as raised:
            await client.create_task("c0ffee", tmp_path / "log", tmp_path / "log")

    assert "task c0ffee" in raised.value.message
    waiting = waiting_of(raised.value)
    assert waiting is not None and str(waiting) == "containerd on node-7"
