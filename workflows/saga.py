"""A compensation stack for saga workflows.

Each step registers its undo *before* it runs (a step that timed out may have half happened).
``compensate`` runs every undo last-in-first-out, each as its own task awaited to completion,
so a workflow cancel that arrives meanwhile cannot cut one short; failures are collected, not
raised, so every undo is attempted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from berth.errors import application_cause

T = TypeVar("T")
Undo = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class Compensation:
    """How one undo ended."""

    step: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Saga:
    """The undo actions registered so far, in registration order."""

    _undo: list[tuple[str, Undo]] = field(default_factory=list)

    def register(self, step: str, undo: Undo) -> None:
        """Register ``undo`` for ``step``; call this before the step runs."""
        self._undo.append((step, undo))

    async def compensate(self) -> list[Compensation]:
        """Run every registered undo, newest first; return how each ended."""
        results = []
        while self._undo:
            step, undo = self._undo.pop()
            results.append(await _run_to_completion(step, undo))
        return results


async def _run_to_completion(step: str, undo: Undo) -> Compensation:
    try:
        await run_to_completion(undo)
    except Exception as err:
        return Compensation(step, error=failure_message(err))
    return Compensation(step)


async def run_to_completion(action: Callable[[], Awaitable[T]]) -> T:
    """Run ``action`` as its own task and wait for it even if the workflow is cancelled."""
    task = asyncio.ensure_future(action())
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            continue  # the workflow was cancelled, not the action: keep waiting for it
    return task.result()


def failure_message(err: BaseException) -> str:
    """The application's own message for a failure, without the SDK's wrapping."""
    cause = application_cause(err)
    return cause.message if cause is not None else str(err) or type(err).__name__
