"""Step ``task start``: start the created task and record its pid; and the task's later life.

Do: start the task (a task already running is success). Undo: kill it, wait for it, delete
it; a missing task is success, so undo is safe when do never ran. Stop signals the task with
its stop signal, waits up to the timeout and then SIGKILLs it (a task already gone is success);
pause and resume freeze and thaw it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal as signals

from temporalio import activity

from berth.errors import Conflict, InvalidParameter, NotFound, System
from berth.faults import NO_FAULTS, FaultHook, fault_point
from berth.runtime.containerd import ContainerdClient
from berth.runtime.types import TaskStatus
from berth.steps import (
    UNKNOWN_EXIT_CODE,
    ContainerRef,
    SignalTaskInput,
    StartTaskOutput,
    TaskExitOutput,
)

# A regular step that waits reports this often; its heartbeat timeout is the table's (30 s).
HEARTBEAT_SECONDS = 2.0


def signal_number(name: str | None) -> int:
    """The number of a signal given as docker accepts it: ``SIGTERM``, ``TERM`` or ``15``."""
    if not name:
        return int(signals.SIGTERM)
    if name.isdigit():
        return int(name)
    upper = name.upper()
    try:
        return int(signals.Signals[upper if upper.startswith("SIG") else f"SIG{upper}"])
    except KeyError:
        raise InvalidParameter(f"invalid signal: {name}") from None


async def _heartbeat_until(waiter: asyncio.Future[int], timeout_seconds: float) -> bool:
    """Wait up to ``timeout_seconds`` for ``waiter``, heartbeating; whether it finished."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    while not waiter.done():
        left = deadline - loop.time()
        if left <= 0:
            return False
        await asyncio.wait({waiter}, timeout=min(left, HEARTBEAT_SECONDS))
        _heartbeat()
    return True


async def _heartbeat_until_done(waiter: asyncio.Future[int]) -> int:
    while not (await asyncio.wait({waiter}, timeout=HEARTBEAT_SECONDS))[0]:
        _heartbeat()
    return waiter.result()


def _heartbeat() -> None:
    """Tell Temporal the step is alive (a regular activity; a local one has no heartbeat)."""
    if activity.in_activity() and not activity.info().is_local:
        activity.heartbeat()


class TaskActivities:
    """containerd tasks of one node."""

    def __init__(self, containerd: ContainerdClient, faults: FaultHook = NO_FAULTS) -> None:
        self._containerd = containerd
        self._faults = faults

    @activity.defn(name="start_task")
    @fault_point("task")
    async def start_task(self, request: ContainerRef) -> StartTaskOutput:
        """Start the task; return its pid."""
        return StartTaskOutput(pid=await self._containerd.start_task(request.container_id))

    @activity.defn(name="stop_task")
    @fault_point("undo-task")
    async def stop_task(self, request: ContainerRef) -> None:
        """Kill, wait for and delete the task."""
        await self._containerd.delete_task(request.container_id)

    @activity.defn(name="signal_and_wait")
    async def signal_and_wait(self, request: SignalTaskInput) -> TaskExitOutput:
        """Send the stop signal, wait up to the timeout, then SIGKILL; return the exit code.

        A paused task is thawed after the signal so that it can handle it, as docker does. A task
        that is already stopped returns its exit code; a missing one returns 255. The wait may be
        as long as the user's grace period, so it heartbeats meanwhile (a regular activity), and
        a cancel ends it at the next beat.
        """
        cid = request.container_id
        try:
            task = await self._containerd.get_task(cid)
        except NotFound:
            return TaskExitOutput(exit_code=UNKNOWN_EXIT_CODE)
        if task.status is TaskStatus.STOPPED:
            return TaskExitOutput(exit_code=task.exit_status)
        number = signal_number(request.signal)
        waiter = asyncio.ensure_future(self._containerd.wait_task(cid))
        try:
            await self._kill(cid, number, all_processes=number == signals.SIGKILL)
            if task.status is TaskStatus.PAUSED:
                with contextlib.suppress(Conflict, System, NotFound):
                    await self._containerd.resume_task(cid)
            if not await _heartbeat_until(waiter, request.timeout_seconds):
                await self._kill(cid, signals.SIGKILL, all_processes=True)
            code = await _heartbeat_until_done(waiter)
        except NotFound:
            return TaskExitOutput(exit_code=UNKNOWN_EXIT_CODE)
        finally:
            waiter.cancel()
        return TaskExitOutput(exit_code=code)

    async def _kill(self, container_id: str, number: int, all_processes: bool) -> None:
        # A task that exited meanwhile refuses signals ("process already finished"): fine.
        with contextlib.suppress(Conflict):
            await self._containerd.kill_task(container_id, number, all_processes=all_processes)

    @activity.defn(name="pause_task")
    async def pause_task(self, request: ContainerRef) -> None:
        """Freeze every process of the task (a paused task is success)."""
        if (await self._containerd.get_task(request.container_id)).status is not TaskStatus.PAUSED:
            await self._containerd.pause_task(request.container_id)

    @activity.defn(name="resume_task")
    async def resume_task(self, request: ContainerRef) -> None:
        """Thaw the paused task (a running task is success)."""
        if (await self._containerd.get_task(request.container_id)).status is TaskStatus.PAUSED:
            await self._containerd.resume_task(request.container_id)
