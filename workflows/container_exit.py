"""``ContainerExitedOnNode``: a task that exited by itself, recorded, cleaned up and restarted.

The node agent's exit monitor (:mod:`berth.exit_monitor`) starts one per exit, with the id
``container-exit-<id>-<pid>`` so duplicate reports of one exit collapse. It records the exit
(``exited``, exit code, finished-at, event ``die``) unless a lifecycle operation holds the
container (that operation records it), releases what the start made with the stop's release
steps, honours auto-remove, and applies the restart policy: after the restart manager's
back-off (a durable timer) it claims the container for a policy restart and runs the start saga
``ContainerStartOnNode`` as a child, which the Web UI shows under this workflow.

Any Temporal client can start this workflow, so its input is only a claim: the exit is verified
against PostgreSQL and containerd first (:mod:`berth.activities.exit`), and the exit code
recorded is containerd's. A claim about a task that still runs, or a pid that is not the
container's task, changes nothing. The policy restart's claim is held as this run's operation
and handed to the child, which takes it over as its parent's (Temporal names the parent; no
input does).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from berth.contract import ContainerStartInput
    from berth.errors import BerthError
    from berth.steps import (
        ClaimRestartInput,
        EndExitInput,
        ExitInput,
        ExitOutput,
        NodeStartInput,
        RecordExitInput,
        VerifyExitInput,
        container_attributes,
        policy_restart_id,
    )
    from berth.workflows import steps
    from berth.workflows.container_start import ContainerStartOnNode
    from berth.workflows.lifecycle import abort, release_host, remove_snapshot, state_step
    from berth.workflows.routing import operation_id, operation_of, set_outcome
    from berth.workflows.saga import failure_message, run_to_completion
    from berth.workflows.steps import run_step


@workflow.defn(name="ContainerExitedOnNode", failure_exception_types=[BerthError])
class ContainerExitedOnNode:
    """Record an exit, release the container's resources, apply its restart policy."""

    @workflow.run
    async def run(self, exited: ExitInput) -> ExitOutput:
        operation = operation_id()
        verified = await run_step(
            steps.VERIFY_EXIT,
            VerifyExitInput(container_id=exited.container_id, pid=exited.pid),
            f"check that task {exited.pid} of {exited.container_id} exited",
        )
        if not verified.exited:
            set_outcome("ignored")
            workflow.set_current_details(f"no exit to record: {verified.reason}")
            return ExitOutput(recorded=False, error=verified.reason)
        exit_code = verified.exit_code
        plan = await state_step(
            steps.RECORD_EXIT,
            RecordExitInput(
                container_id=exited.container_id,
                pid=exited.pid,
                exit_code=exit_code,
                operation=operation,
            ),
            f"record exit {exit_code} of pid {exited.pid}",
        )
        held = plan.holding
        if held is None:
            set_outcome("ignored")
            return ExitOutput(recorded=False)
        workflow.set_current_details(f"{held.name} exited with {exit_code}")
        outcomes = await release_host(held)
        ended = await run_to_completion(
            lambda: state_step(
                steps.END_EXIT,
                EndExitInput(holding=held, steps=outcomes),
                f"release container {held.name} after its exit",
            )
        )
        if ended.removed:
            await remove_snapshot(held.container_id, held.node, held.name)
            set_outcome("removed")
            return ExitOutput(recorded=True)
        if not plan.restart:
            set_outcome("exited")
            return ExitOutput(recorded=True)

        policy = held.config.restart_policy.name
        workflow.set_current_details(
            f"restart {held.name} (policy {policy}) in {plan.backoff_ms} ms"
        )
        await workflow.sleep(timedelta(milliseconds=plan.backoff_ms))
        child_id = policy_restart_id(held.container_id, plan.restart_count + 1)
        # Held as this run's operation until the start saga takes it over as its parent's.
        claim = await state_step(
            steps.CLAIM_POLICY_RESTART,
            ClaimRestartInput(
                container_id=held.container_id,
                restart_count=plan.restart_count,
                operation=operation,
            ),
            f"claim {held.name} for a policy restart",
        )
        if not claim.claimed:
            set_outcome("exited")
            return ExitOutput(recorded=True)
        child_operation: str | None = None
        try:
            child = await workflow.start_child_workflow(
                ContainerStartOnNode.run,
                NodeStartInput(request=ContainerStartInput(container=held.container_id)),
                id=child_id,
                task_queue=workflow.info().task_queue,
                search_attributes=container_attributes(held.container_id, held.name, held.node),
                static_summary=(
                    f"restart {held.name} (policy {policy}, restart {claim.restart_count})"
                ),
            )
            child_operation = operation_of(child_id, child.first_execution_run_id or "")
            await child
        except ChildWorkflowError as err:
            # A failed start recorded itself (docker's restart manager gives up here too); a
            # terminated one did not: release the container from it, or from our claim.
            await abort(held, err)
            if child_operation is not None:
                await abort(held.model_copy(update={"operation": child_operation}), err)
            set_outcome("restart-failed")
            return ExitOutput(recorded=True, error=failure_message(err))
        set_outcome("restarted")
        return ExitOutput(recorded=True, restarted=True)
