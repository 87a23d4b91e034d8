"""``ContainerStop``: docker stop as a durable operation (moby ``daemon/stop.go`` + ``Cleanup``).

``ContainerStopOnNode`` runs on the container's node, every step a local activity: hold the
container under its row lock (a stopped one is not modified), send the image's stop signal, wait
up to the timeout, SIGKILL, then release what the start made, in the seed's ``Cleanup`` order,
with the start's own undo activities: task, containerd container, network, rootfs mount holder,
spec. The container is then ``exited`` with its exit code (events ``die`` and ``stop``).

Until the task is known dead a failure hands the container back as it was; after that, every
release step is attempted and the exit is recorded even if one failed (its error is kept on
the container for the reconciler). :func:`stop_task` and :func:`release_host` are shared with
restart, remove and the exit monitor's workflow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic import ConfigDict

    from activities.mount import MountActivities, ReleaseRootfsInput
    from activities.network import NetworkActivities, NetworkInput
    from activities.shim import ShimActivities
    from activities.spec import SpecActivities
    from activities.state import AbortInput, StateActivities, StepOutcome
    from activities.state_lifecycle import (
        BeginStopInput,
        FinishStopInput,
        Holding,
        LifecycleStateActivities,
    )
    from activities.task import SignalTaskInput, TaskActivities
    from activities.types import ContainerRef, StepModel
    from berth.contract import DEFAULT_STOP_TIMEOUT, ContainerStopInput, ContainerStopOutput
    from berth.errors import BerthError, as_berth_error
    from workflows.policies import STATE_RETRY, UNDO_RETRY
    from workflows.routing import local_step, locate, operation_id, run_on_node, set_outcome
    from workflows.saga import failure_message, run_to_completion

In = TypeVar("In")
# Time a stop step may take beyond the grace period (signalling, SIGKILL, reaping).
STOP_SLACK = timedelta(seconds=30)


class NodeStopInput(StepModel):
    """Input of ``ContainerStopOnNode``: the stop request (the operation is this run's own)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request: ContainerStopInput


@workflow.defn(name="ContainerStop", failure_exception_types=[BerthError])
class ContainerStop:
    """Stop a container by id or name; the public entry point on queue ``berth``."""

    @workflow.run
    async def run(self, request: ContainerStopInput) -> ContainerStopOutput:
        where = await locate(request.container)
        result = await run_on_node(
            "stop",
            ContainerStopOnNode.run,
            NodeStopInput(request=request),
            where,
        )
        set_outcome("not-modified" if result.not_modified else "stopped")
        return result


@workflow.defn(name="ContainerStopOnNode", failure_exception_types=[BerthError])
class ContainerStopOnNode:
    """The stop's host-bound steps, run by the agent of the container's node."""

    @workflow.run
    async def run(self, stop: NodeStopInput) -> ContainerStopOutput:
        request = stop.request
        operation = operation_id()
        plan = await state_step(
            LifecycleStateActivities.begin_stop,
            BeginStopInput(container=request.container, operation=operation),
            f"check and lock container {request.container} for stop",
        )
        held = plan.holding
        output = ContainerStopOutput(id=held.container_id, name=held.name, node=held.node)
        if plan.not_modified:
            workflow.set_current_details(f"{held.name} is not running")
            return output.model_copy(update={"not_modified": True})
        timeout = DEFAULT_STOP_TIMEOUT if request.timeout is None else request.timeout
        exit_code = await stop_task_or_abort(held, held.stop_signal, timeout)
        steps = await release_host(held)
        finished = await run_to_completion(
            lambda: state_step(
                LifecycleStateActivities.finish_stop,
                FinishStopInput(
                    holding=held,
                    exit_code=exit_code,
                    then_start=False,
                    steps=steps,
                    error=release_error(steps),
                ),
                f"record {held.name} exited with {exit_code}",
            )
        )
        if finished.removed:
            await remove_snapshot(held)
        workflow.set_current_details(f"{held.name} exited with {exit_code}")
        return output.model_copy(update={"exit_code": exit_code})


async def state_step(
    activity: Callable[[Any, In], Awaitable[Any]], request: In, summary: str
) -> Any:
    """A PostgreSQL transition; its failure reaches the caller as a typed error."""
    try:
        return await local_step(activity, request, summary, retry=STATE_RETRY)
    except Exception as err:
        raise as_berth_error(err) from None


async def stop_task(held: Holding, signal: str | None, timeout_seconds: float) -> int:
    """Signal the task, wait up to the timeout, SIGKILL it; return its exit code."""
    exited = await local_step(
        TaskActivities.signal_and_wait,
        SignalTaskInput(
            container_id=held.container_id,
            node=held.node,
            signal=signal,
            timeout_seconds=timeout_seconds,
        ),
        f"signal {signal or 'SIGTERM'} to {held.name}, SIGKILL after {timeout_seconds:g} s",
        timeout=timedelta(seconds=timeout_seconds) + STOP_SLACK,
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
        lambda: local_step(
            StateActivities.abort_operation,
            AbortInput(
                container_id=held.container_id,
                operation=held.operation,
                error=failure_message(err),
            ),
            f"release container {held.name}",
            retry=STATE_RETRY,
        )
    )


async def release_host(held: Holding) -> list[StepOutcome]:
    """The seed's ``Cleanup`` after the task exited, with the start's undo activities.

    Task, containerd container, network, rootfs mount holder, spec: every step is attempted
    (each runs to completion even if the workflow is cancelled) and how each ended is returned.
    """
    name, node, cid = held.name, held.node, held.container_id
    ref = ContainerRef(container_id=cid, node=node)
    mode = held.config.network_mode
    return [
        await _release("task", TaskActivities.stop_task, ref, f"delete task of {name}"),
        await _release(
            "shim",
            ShimActivities.delete_shim,
            ref,
            f"delete containerd task and container of {name}",
        ),
        await _release(
            "network",
            NetworkActivities.detach_network,
            NetworkInput(container_id=cid, node=node, mode=mode),
            f"detach network of {name}",
        ),
        await _release(
            "mount",
            MountActivities.release_rootfs,
            ReleaseRootfsInput(container_id=cid, node=node),
            f"release rootfs of {name} on {node}",
        ),
        await _release("spec", SpecActivities.drop_spec, ref, f"drop OCI spec of {name}"),
    ]


async def _release(
    step: str, activity: Callable[[Any, In], Awaitable[Any]], request: In, summary: str
) -> StepOutcome:
    try:
        await run_to_completion(lambda: local_step(activity, request, summary, retry=UNDO_RETRY))
    except Exception as err:
        return StepOutcome(step=f"release-{step}", status="failed", error=failure_message(err))
    return StepOutcome(step=f"release-{step}", status="done")


def release_error(steps: list[StepOutcome]) -> str | None:
    """One message naming every release step that failed, or None."""
    failed = [f"{s.step}: {s.error}" for s in steps if s.status == "failed"]
    return "; ".join(failed) or None


async def remove_snapshot(held: Holding) -> None:
    """Remove the container's writable snapshot (after its record was removed)."""
    await run_to_completion(
        lambda: local_step(
            MountActivities.remove_rootfs_snapshot,
            ContainerRef(container_id=held.container_id, node=held.node),
            f"remove snapshot of {held.name}",
            retry=UNDO_RETRY,
        )
    )
