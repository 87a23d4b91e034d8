"""What several lifecycle workflows share: holding a container, stopping its task, releasing it.

Stop, restart, remove, pause and an exit all hold a container as one operation (a PostgreSQL
transition, :func:`state_step`), hand it back when they cannot finish (:func:`abort`), stop its
task (:func:`stop_task`: signal, wait up to the grace period, SIGKILL, as a regular activity
that heartbeats, since the user sets how long it waits), and release what the start made
(:func:`release_host`), in the one order :data:`berth.steps.HOST_CLEANUP`, each step run to
completion even if the workflow is cancelled.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from berth.errors import as_berth_error
    from berth.steps import (
        HOST_CLEANUP,
        AbortInput,
        CleanupStep,
        ContainerRef,
        Holding,
        HostTarget,
        SignalTaskInput,
        StepOutcome,
    )
    from berth.workflows import steps
    from berth.workflows.saga import failure_message, run_to_completion
    from berth.workflows.steps import Step, run_step

In = TypeVar("In")
Out = TypeVar("Out")
# Time a stop step may take beyond the grace period (signalling, SIGKILL, reaping).
STOP_SLACK = timedelta(seconds=30)
# Before these patches, the wait for a stop ran as a local activity, and the host was released
# in the order task, shim, network, mount, spec; histories recorded then replay that way.
REGULAR_STOP_WAIT = "stop-wait-regular-activity"
ONE_CLEANUP_ORDER = "one-host-cleanup-order"
_OLD_CLEANUP_ORDER = ("task", "shim", "network", "mount", "spec")


async def state_step(step: Step[In, Out], request: In, summary: str) -> Out:
    """A PostgreSQL transition; its failure reaches the caller as a typed error."""
    try:
        return await run_step(step, request, summary)
    except Exception as err:
        raise as_berth_error(err) from None


async def stop_task(held: Holding, signal: str | None, timeout_seconds: float) -> int:
    """Signal the task, wait up to the timeout, SIGKILL it; return its exit code."""
    exited = await run_step(
        steps.SIGNAL_AND_WAIT,
        SignalTaskInput(
            container_id=held.container_id,
            node=held.node,
            signal=signal,
            timeout_seconds=timeout_seconds,
        ),
        f"signal {signal or 'SIGTERM'} to {held.name}, SIGKILL after {timeout_seconds:g} s",
        timeout=timedelta(seconds=timeout_seconds) + STOP_SLACK,
        local=None if workflow.patched(REGULAR_STOP_WAIT) else True,
    )
    return exited.exit_code


async def stop_task_or_abort(held: Holding, signal: str | None, timeout_seconds: float) -> int:
    """:func:`stop_task`; when it fails, the container goes back to its owner as it was."""
    try:
        return await stop_task(held, signal, timeout_seconds)
    except (Exception, asyncio.CancelledError) as err:
        await abort(held, err)
        if isinstance(err, asyncio.CancelledError):
            raise
        raise as_berth_error(err) from None


async def abort(held: Holding, err: BaseException) -> None:
    """Release the container this operation holds, recording why it did not finish."""
    await run_to_completion(
        lambda: run_step(
            steps.ABORT_OPERATION,
            AbortInput(
                container_id=held.container_id,
                operation=held.operation,
                error=failure_message(err),
            ),
            f"release container {held.name}",
        )
    )


def host_target(held: Holding) -> HostTarget:
    """What the release steps need of a held container."""
    return HostTarget(container_id=held.container_id, node=held.node, mode=held.config.network_mode)


async def release_host(held: Holding) -> list[StepOutcome]:
    """Release what the start made, in :data:`HOST_CLEANUP` order (moby's ``Cleanup``).

    Every step is attempted (each runs to completion even if the workflow is cancelled) and how
    each ended is returned.
    """
    order = list(HOST_CLEANUP)
    if not workflow.patched(ONE_CLEANUP_ORDER):
        order.sort(key=lambda step: _OLD_CLEANUP_ORDER.index(step.step))
    target = host_target(held)
    return [await _release(step, target, held.name) for step in order]


def cleanup_summary(step: CleanupStep, target: HostTarget, name: str) -> str:
    """The Web UI's line for one release step."""
    return f"{step.what} of {name} on {target.node}"


async def _release(step: CleanupStep, target: HostTarget, name: str) -> StepOutcome:
    try:
        await run_to_completion(
            lambda: run_step(
                steps.step_for(step), step.request(target), cleanup_summary(step, target, name)
            )
        )
    except Exception as err:
        return StepOutcome(step=f"release-{step.step}", status="failed", error=failure_message(err))
    return StepOutcome(step=f"release-{step.step}", status="done")


def release_error(outcomes: list[StepOutcome]) -> str | None:
    """One message naming every release step that failed, or None."""
    failed = [f"{s.step}: {s.error}" for s in outcomes if s.status == "failed"]
    return "; ".join(failed) or None


async def remove_snapshot(container_id: str, node: str, name: str) -> None:
    """Remove the container's writable snapshot (after its record was removed)."""
    await run_to_completion(
        lambda: run_step(
            steps.REMOVE_ROOTFS_SNAPSHOT,
            ContainerRef(container_id=container_id, node=node),
            f"remove snapshot of {name}",
        )
    )
