"""``ContainerStop``: docker stop as a durable operation (moby ``daemon/stop.go`` + ``Cleanup``).

``ContainerStopOnNode`` runs on the container's node: hold the container under its row lock (a
stopped one is not modified), send the image's stop signal, wait up to the timeout, SIGKILL
(one regular activity that heartbeats, since the timeout is the user's and may be a day), then
release what the start made in the one host cleanup order
(:func:`berth.workflows.lifecycle.release_host`:
task, containerd container, spec, network, rootfs mount holder), with the start's own undo
activities. The container is then ``exited`` with its exit code (events ``die`` and ``stop``).

Until the task is known dead a failure hands the container back as it was; after that, every
release step is attempted and the exit is recorded even if one failed (its error is kept on
the container for the reconciler).
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from berth.contract import DEFAULT_STOP_TIMEOUT, ContainerStopInput, ContainerStopOutput
    from berth.errors import BerthError
    from berth.steps import BeginStopInput, FinishStopInput, NodeStopInput
    from berth.workflows import steps
    from berth.workflows.lifecycle import (
        release_error,
        release_host,
        remove_snapshot,
        state_step,
        stop_task_or_abort,
    )
    from berth.workflows.routing import (
        locate,
        operation_id,
        route_to_node,
        set_outcome,
        with_outcome,
    )
    from berth.workflows.saga import run_to_completion


@workflow.defn(name="ContainerStop", failure_exception_types=[BerthError])
class ContainerStop:
    """Stop a container by id or name; the public entry point on queue ``berth``."""

    @workflow.run
    async def run(self, request: ContainerStopInput) -> ContainerStopOutput:
        where = await locate(request.container)
        result = await route_to_node(
            "stop",
            ContainerStopOnNode.run,
            NodeStopInput(request=request),
            where,
        )
        set_outcome(stop_outcome(result))
        return result


def stop_outcome(result: ContainerStopOutput) -> str:
    """A stop's ``Outcome``: ``stopped``, or ``not-modified`` for one not running."""
    return "not-modified" if result.not_modified else "stopped"


@workflow.defn(name="ContainerStopOnNode", failure_exception_types=[BerthError])
class ContainerStopOnNode:
    """The stop's host-bound steps, run by the agent of the container's node."""

    @workflow.run
    async def run(self, stop: NodeStopInput) -> ContainerStopOutput:
        return await with_outcome(lambda: self._stop(stop), stop_outcome)

    async def _stop(self, stop: NodeStopInput) -> ContainerStopOutput:
        request = stop.request
        operation = operation_id()
        plan = await state_step(
            steps.BEGIN_STOP,
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
        outcomes = await release_host(held)
        finished = await run_to_completion(
            lambda: state_step(
                steps.FINISH_STOP,
                FinishStopInput(
                    holding=held,
                    exit_code=exit_code,
                    then_start=False,
                    steps=outcomes,
                    error=release_error(outcomes),
                ),
                f"record {held.name} exited with {exit_code}",
            )
        )
        if finished.removed:
            await remove_snapshot(held.container_id, held.node, held.name)
        workflow.set_current_details(f"{held.name} exited with {exit_code}")
        return output.model_copy(update={"exit_code": exit_code})
