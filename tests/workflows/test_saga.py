"""The compensation stack: LIFO, every undo attempted, failures collected, cancel-proof."""

from __future__ import annotations

import asyncio

from berth.workflows.saga import Saga, run_to_completion


async def test_saga_compensates_last_in_first_out() -> None:
    ran: list[str] = []
    saga = Saga()
    for step in ("mount", "network", "spec"):
        saga.register(step, lambda step=step: _record(ran, step))

    results = await saga.compensate()

    assert ran == ["spec", "network", "mount"]
    assert [r.step for r in results] == ["spec", "network", "mount"]
    assert all(r.ok for r in results)


async def test_saga_attempts_every_undo_and_collects_failures() -> None:
    ran: list[str] = []
    saga = Saga()
    saga.register("mount", lambda: _record(ran, "mount"))
    saga.register("network", lambda: _fail("CNI DEL failed"))
    saga.register("spec", lambda: _record(ran, "spec"))

    results = await saga.compensate()

    assert ran == ["spec", "mount"]
    assert [(r.step, r.error) for r in results] == [
        ("spec", None),
        ("network", "CNI DEL failed"),
        ("mount", None),
    ]


async def test_run_to_completion_survives_cancel_of_the_caller() -> None:
    finished = asyncio.Event()

    async def slow_undo() -> str:
        await asyncio.sleep(0.05)
        finished.set()
        return "done"

    caller = asyncio.create_task(run_to_completion(slow_undo))
    await asyncio.sleep(0.01)
    caller.cancel()
    result = await caller

    assert finished.is_set()
    assert result == "done"


async def _record(ran: list[str], step: str) -> None:
    ran.append(step)


async def _fail(message: str) -> None:
    raise RuntimeError(message)
