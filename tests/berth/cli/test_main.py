"""berth.cli.main's loop-free runner for the verbs whose every await completes at once."""

from __future__ import annotations

import asyncio

import pytest

from berth.cli.main import without_loop


async def _blocking_answer() -> int:
    async def read() -> int:  # as WireReads.find: a coroutine that never suspends
        return 41

    return await read() + 1


async def _suspends() -> None:
    await asyncio.sleep(0)


def test_without_loop_returns_the_value_of_a_coroutine_that_never_suspends() -> None:
    assert without_loop(_blocking_answer()) == 42


def test_without_loop_refuses_a_coroutine_that_suspends() -> None:
    with pytest.raises(RuntimeError, match="waited on an event loop"):
        without_loop(_suspends())


def test_without_loop_passes_the_coroutines_exception_on() -> None:
    async def fails() -> None:
        raise LookupError("no such container")

    with pytest.raises(LookupError, match="no such container"):
        without_loop(fails())
