"""``ContainerRestart``: docker restart as ONE operation on the container (stop, then start).

``ContainerRestartOnNode`` holds the container from the stop's row lock to the start's commit.
A running container is restarted in place: its task is stopped and replaced by a new one in the
same containerd container, and the rootfs mount, network namespace and IP stay (a Kubernetes pod
sandbox does the same across container restarts); the old exit and the new start are recorded
in one transaction. If the replacement fails, or there is no containerd container to restart,
the host is released as a stop does and the full start saga runs inline as the same operation,
so no other operation can slip in between and a failed start unwinds and is recorded as any
start is. A container that was not running gets that full start directly.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from berth.contract import (
        DEFAULT_STOP_TIMEOUT,
        ContainerRestartInput,
        ContainerStartInput,
        ContainerStartOutput,
    )
    from berth.errors import BerthError
    from berth.steps import (
        BeginStopInput,
        CommitRestartInput,
        FinishStopInput,
        Holding,
        NodeRestartInput,
        NodeStartInput,
        ReplaceTaskInput,
        StepOutcome,
    )
    from berth.workflows import steps
    from berth.workflows.container_start import ContainerStartOnNode
    from berth.workflows.lifecycle import (
        release_error,
        release_host,
        state_step,
        stop_task_or_abort,
    )
    from berth.workflows.metrics import recorded
    from berth.workflows.routing import (
        locate,
        operation_id,
        route_to_node,
        set_outcome,
        with_outcome,
    )
    from berth.workflows.saga import failure_message, run_to_completion
    from berth.workflows.steps import run_step

RESTARTED = "restarted"


@workflow.defn(name="ContainerRestart", failure_exception_types=[BerthError])
class ContainerRestart:
    """Restart a container by id or name; the public entry point on queue ``berth``."""

    @workflow.run
    async def run(self, request: ContainerRestartInput) -> ContainerStartOutput:
        where = await locate(request.container)
        result = await route_to_node(
            "restart",
            ContainerRestartOnNode.run,
            NodeRestartInput(request=request),
            where,
        )
        set_outcome(RESTARTED)
        return result


@workflow.defn(name="ContainerRestartOnNode", failure_exception_types=[BerthError])
class ContainerRestartOnNode:
    """Stop then start on the container's node, holding it throughout."""

    @workflow.run
    async def run(self, restart: NodeRestartInput) -> ContainerStartOutput:
        return await with_outcome(
            lambda: recorded("restart", workflow.now(), lambda: self._restart(restart)),
            lambda _: RESTARTED,
        )

    async def _restart(self, restart: NodeRestartInput) -> ContainerStartOutput:
        request = restart.request
        operation = operation_id()
        plan = await state_step(
            steps.BEGIN_STOP,
            BeginStopInput(container=request.container, operation=operation, then_start=True),
            f"check and lock container {request.container} for restart",
        )
        held = plan.holding
        exit_code = 0
        outcomes: list[StepOutcome] = []
        if plan.was_running:
            timeout = DEFAULT_STOP_TIMEOUT if request.timeout is None else request.timeout
            exit_code = await stop_task_or_abort(held, held.stop_signal, timeout)
            replaced, failure = await self._replace_task(held)
            if replaced is not None:
                return await self._commit_in_place(held, exit_code, replaced)
            outcomes = await release_host(held)
            if failure is not None:
                outcomes.insert(0, failure)
        await run_to_completion(
            lambda: state_step(
                steps.FINISH_STOP,
                FinishStopInput(
                    holding=held,
                    exit_code=exit_code,
                    then_start=True,
                    steps=outcomes,
                    error=release_error(outcomes),
                ),
                f"record {held.name} stopped for restart",
            )
        )
        # The start saga, inline and as this same run's operation: begin_start finds it held by us.
        workflow.set_current_details(f"start {held.name} from scratch")
        return await ContainerStartOnNode().start(
            NodeStartInput(request=ContainerStartInput(container=held.container_id))
        )

    async def _replace_task(self, held: Holding) -> tuple[int | None, StepOutcome | None]:
        """The new task's pid, or None (with why, if it failed) when it must start from scratch.

        Whatever a failed replacement left is released with the rest of the host afterwards. A
        cancel does not cut the replacement short: the restart then finishes.
        """
        workflow.set_current_details(f"replace the task of {held.name} in place")
        try:
            replaced = await run_to_completion(
                lambda: run_step(
                    steps.REPLACE_TASK,
                    ReplaceTaskInput(
                        container_id=held.container_id,
                        node=held.node,
                        old_pid=held.pid,
                        binds=held.config.binds,
                    ),
                    f"replace the task of {held.name} on {held.node}",
                )
            )
        except Exception as err:
            message = failure_message(err)
            workflow.logger.warning(
                f"restart of {held.name} in place failed ({message}); starting it from scratch"
            )
            return None, StepOutcome(step="replace-task", status="failed", error=message)
        return replaced.pid, None

    async def _commit_in_place(
        self, held: Holding, exit_code: int, pid: int
    ) -> ContainerStartOutput:
        result: ContainerStartOutput = await run_to_completion(
            lambda: state_step(
                steps.COMMIT_RESTART,
                CommitRestartInput(
                    holding=held,
                    exit_code=exit_code,
                    pid=pid,
                    steps=[StepOutcome(step="replace-task", status="done", handle={"pid": pid})],
                ),
                f"record {held.name} restarted with pid {pid}",
            )
        )
        workflow.set_current_details(f"{held.name} restarted in place with pid {pid}")
        return result
