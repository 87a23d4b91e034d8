"""``ContainerPause`` / ``ContainerUnpause``: freeze and thaw a container's task (docker pause).

Both run ``ContainerPauseOnNode`` on the container's node: hold the running (or paused)
container under its row lock, pause (or resume) the containerd task, record ``paused`` (or
``running``) with the event ``pause`` (or ``unpause``). A failure hands the container back
unchanged. A paused container cannot be started (Conflict); it can be stopped or removed.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from berth.contract import ContainerPauseInput, ContainerPauseOutput
    from berth.errors import BerthError, as_berth_error
    from berth.steps import BeginPauseInput, CommitPauseInput, ContainerRef, NodePauseInput
    from berth.workflows import steps
    from berth.workflows.lifecycle import abort, state_step
    from berth.workflows.routing import (
        locate,
        operation_id,
        route_to_node,
        set_outcome,
        with_outcome,
    )
    from berth.workflows.saga import run_to_completion
    from berth.workflows.steps import run_step


async def _pause_on_node(request: ContainerPauseInput, pause: bool) -> ContainerPauseOutput:
    where = await locate(request.container)
    verb = "pause" if pause else "unpause"
    result = await route_to_node(
        verb,
        ContainerPauseOnNode.run,
        NodePauseInput(request=request, pause=pause),
        where,
    )
    set_outcome(pause_outcome(pause))
    return result


def pause_outcome(pause: bool) -> str:
    """A pause's or an unpause's ``Outcome``."""
    return "paused" if pause else "unpaused"


@workflow.defn(name="ContainerPause", failure_exception_types=[BerthError])
class ContainerPause:
    """Pause a running container; the public entry point on queue ``berth``."""

    @workflow.run
    async def run(self, request: ContainerPauseInput) -> ContainerPauseOutput:
        return await _pause_on_node(request, pause=True)


@workflow.defn(name="ContainerUnpause", failure_exception_types=[BerthError])
class ContainerUnpause:
    """Unpause a paused container; the public entry point on queue ``berth``."""

    @workflow.run
    async def run(self, request: ContainerPauseInput) -> ContainerPauseOutput:
        return await _pause_on_node(request, pause=False)


@workflow.defn(name="ContainerPauseOnNode", failure_exception_types=[BerthError])
class ContainerPauseOnNode:
    """Pause or unpause on the container's node."""

    @workflow.run
    async def run(self, request: NodePauseInput) -> ContainerPauseOutput:
        return await with_outcome(
            lambda: self._pause(request), lambda _: pause_outcome(request.pause)
        )

    async def _pause(self, request: NodePauseInput) -> ContainerPauseOutput:
        operation = operation_id()
        verb = "pause" if request.pause else "unpause"
        held = await state_step(
            steps.BEGIN_PAUSE,
            BeginPauseInput(
                container=request.request.container, operation=operation, pause=request.pause
            ),
            f"check and lock container {request.request.container} for {verb}",
        )
        try:
            await run_step(
                steps.PAUSE_TASK if request.pause else steps.RESUME_TASK,
                ContainerRef(container_id=held.container_id, node=held.node),
                f"{verb} task of {held.name}",
            )
        except (Exception, asyncio.CancelledError) as err:
            await abort(held, err)
            if isinstance(err, asyncio.CancelledError):
                raise
            raise as_berth_error(err) from None
        state = await run_to_completion(
            lambda: state_step(
                steps.COMMIT_PAUSE,
                CommitPauseInput(holding=held, pause=request.pause),
                f"record {held.name} {verb}d",
            )
        )
        return ContainerPauseOutput(
            id=held.container_id, name=held.name, node=held.node, state=state
        )
