"""``ContainerRemove``: docker rm [-f] as a durable operation.

``ContainerRemoveOnNode`` refuses a running container without ``force`` (Conflict) and
otherwise marks it ``removing`` under its row lock, so a start meanwhile gets Conflict
("marked for removal"). With force a live task is SIGKILLed; then the stop's release steps
run (harmless when nothing is left), the writable snapshot is removed and the record deleted
(events ``die`` if it was running, then ``destroy``). A removal that fails leaves the
container ``dead`` with its error, as docker does; ``rm`` may be tried again.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from berth.contract import ContainerRemoveInput, ContainerRemoveOutput
    from berth.errors import BerthError, System, as_berth_error
    from berth.steps import (
        BeginRemoveInput,
        FailOperationInput,
        FinishRemoveInput,
        Holding,
        NodeRemoveInput,
    )
    from berth.workflows import steps
    from berth.workflows.lifecycle import (
        release_error,
        release_host,
        remove_snapshot,
        state_step,
        stop_task,
    )
    from berth.workflows.routing import (
        locate,
        operation_id,
        route_to_node,
        set_outcome,
        with_outcome,
    )
    from berth.workflows.saga import failure_message, run_to_completion

# How long a SIGKILLed task may take to be reaped.
KILL_WAIT_SECONDS = 10
REMOVED = "removed"


@workflow.defn(name="ContainerRemove", failure_exception_types=[BerthError])
class ContainerRemove:
    """Remove a container by id or name; the public entry point on queue ``berth``."""

    @workflow.run
    async def run(self, request: ContainerRemoveInput) -> ContainerRemoveOutput:
        where = await locate(request.container)
        result = await route_to_node(
            "remove",
            ContainerRemoveOnNode.run,
            NodeRemoveInput(request=request),
            where,
        )
        set_outcome(REMOVED)
        return result


@workflow.defn(name="ContainerRemoveOnNode", failure_exception_types=[BerthError])
class ContainerRemoveOnNode:
    """Kill (with force), release, remove the snapshot and the record, on the node."""

    @workflow.run
    async def run(self, remove: NodeRemoveInput) -> ContainerRemoveOutput:
        return await with_outcome(lambda: self._remove(remove), lambda _: REMOVED)

    async def _remove(self, remove: NodeRemoveInput) -> ContainerRemoveOutput:
        request = remove.request
        operation = operation_id()
        plan = await state_step(
            steps.BEGIN_REMOVE,
            BeginRemoveInput(container=request.container, operation=operation, force=request.force),
            f"check and lock container {request.container} for removal",
        )
        held = plan.holding
        try:
            exit_code = None
            if plan.was_running:
                exit_code = await stop_task(held, "SIGKILL", KILL_WAIT_SECONDS)
            outcomes = await release_host(held)
            failed = release_error(outcomes)
            if failed:
                raise System(f"cannot remove container {held.name}: {failed}")
            await remove_snapshot(held.container_id, held.node, held.name)
            await run_to_completion(
                lambda: state_step(
                    steps.FINISH_REMOVE,
                    FinishRemoveInput(holding=held, exit_code=exit_code, steps=outcomes),
                    f"delete the record of {held.name}",
                )
            )
        except (Exception, asyncio.CancelledError) as err:
            await _fail(held, err)
            if isinstance(err, asyncio.CancelledError):
                raise
            raise as_berth_error(err) from None
        return ContainerRemoveOutput(id=held.container_id, name=held.name, node=held.node)


async def _fail(held: Holding, err: BaseException) -> None:
    await run_to_completion(
        lambda: state_step(
            steps.FAIL_REMOVAL,
            FailOperationInput(holding=held, error=failure_message(err)),
            f"record failed removal of {held.name}",
        )
    )
