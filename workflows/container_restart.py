"""``ContainerRestart``: docker restart as ONE operation on the container (stop, then start).

``ContainerRestartOnNode`` holds the container from the stop's row lock to the start's commit:
it stops it as ``ContainerStopOnNode`` does (a stopped one skips that part), records the exit
while keeping the container held (``starting``), and then runs the start saga inline as the
same operation, so no other operation can slip in between and a failed start unwinds as any
start does.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.state_lifecycle import (
        BeginStopInput,
        FinishStopInput,
        LifecycleStateActivities,
    )
    from activities.types import StepModel
    from berth.contract import (
        DEFAULT_STOP_TIMEOUT,
        ContainerRestartInput,
        ContainerStartInput,
        ContainerStartOutput,
    )
    from berth.errors import BerthError
    from workflows.container_start import ContainerStartOnNode, NodeStartInput
    from workflows.container_stop import (
        release_error,
        release_host,
        state_step,
        stop_task_or_abort,
    )
    from workflows.routing import locate, run_on_node, set_outcome
    from workflows.saga import run_to_completion


class NodeRestartInput(StepModel):
    """Input of ``ContainerRestartOnNode``: the restart request and the operation it runs as."""

    request: ContainerRestartInput
    operation: str = ""


@workflow.defn(name="ContainerRestart", failure_exception_types=[BerthError])
class ContainerRestart:
    """Restart a container by id or name; the public entry point on queue ``berth``."""

    @workflow.run
    async def run(self, request: ContainerRestartInput) -> ContainerStartOutput:
        where = await locate(request.container)
        result = await run_on_node(
            "restart",
            ContainerRestartOnNode.run,
            lambda operation: NodeRestartInput(request=request, operation=operation),
            where,
        )
        set_outcome("restarted")
        return result


@workflow.defn(name="ContainerRestartOnNode", failure_exception_types=[BerthError])
class ContainerRestartOnNode:
    """Stop then start on the container's node, holding it throughout."""

    @workflow.run
    async def run(self, restart: NodeRestartInput) -> ContainerStartOutput:
        request = restart.request
        operation = restart.operation or workflow.info().workflow_id
        plan = await state_step(
            LifecycleStateActivities.begin_stop,
            BeginStopInput(container=request.container, operation=operation, then_start=True),
            f"check and lock container {request.container} for restart",
        )
        held = plan.holding
        exit_code, steps = 0, []
        if plan.was_running:
            timeout = DEFAULT_STOP_TIMEOUT if request.timeout is None else request.timeout
            exit_code = await stop_task_or_abort(held, held.stop_signal, timeout)
            steps = await release_host(held)
        await run_to_completion(
            lambda: state_step(
                LifecycleStateActivities.finish_stop,
                FinishStopInput(
                    holding=held,
                    exit_code=exit_code,
                    then_start=True,
                    steps=steps,
                    error=release_error(steps),
                ),
                f"record {held.name} stopped for restart",
            )
        )
        # The start saga, inline and as this same operation: begin_start finds it held by us.
        start = ContainerStartOnNode()
        return await start.run(
            NodeStartInput(
                request=ContainerStartInput(container=held.container_id), operation=operation
            )
        )
