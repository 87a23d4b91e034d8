"""``ContainerStart``: docker start as a saga (moby ``daemon/start.go``).

The saga itself is ``ContainerStartOnNode``, run by the agent of the container's node on its
queue ``berth-node-<node>``: the pre-checks under a row lock, then mount → network → spec →
shim create → task start, then commit, every one a local activity (a few milliseconds of
dispatch each instead of about 50 ms for an ordinary activity) and every step registered with
its undo before it runs. On any failure or cancel, every undo runs last-in-first-out, then the
failure is recorded and the caller gets a typed error.

``ContainerStart`` is the public entry point on the control queue ``berth``: it finds the
container's node and runs the saga there as a child. Berth's own client, which already knows the
node, starts ``ContainerStartOnNode`` directly and saves that hop (about 100 ms).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic import ConfigDict

    from activities.mount import MountActivities, MountRootfsInput, ReleaseRootfsInput
    from activities.network import NetworkActivities, NetworkInput
    from activities.shim import CreateShimInput, ShimActivities
    from activities.spec import SpecActivities, WriteSpecInput
    from activities.state import (
        BeginStartInput,
        CommitStartInput,
        FailStartInput,
        StartPlan,
        StateActivities,
        StepOutcome,
    )
    from activities.task import TaskActivities
    from activities.types import ContainerRef, StepModel
    from berth.contract import ContainerStartInput, ContainerStartOutput
    from berth.errors import BerthError, as_berth_error, exit_code_from_runtime_error
    from workflows import visibility
    from workflows.metrics import record_action, record_compensation, recorded
    from workflows.policies import STATE_RETRY, UNDO_RETRY
    from workflows.routing import (
        local_step,
        locate,
        operation_id,
        parent_operation,
        run_on_node,
        set_outcome,
    )
    from workflows.saga import Saga, failure_message, run_to_completion

In = TypeVar("In")


class NodeStartInput(StepModel):
    """Input of ``ContainerStartOnNode``: the start request.

    The operation it holds the container as is not an input: it is this run's own
    (:func:`workflows.routing.operation_id`), so a caller cannot name another one's hold.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    request: ContainerStartInput


@workflow.defn(name="ContainerStart", failure_exception_types=[BerthError])
class ContainerStart:
    """Start a container by id or name; the public entry point on queue ``berth``."""

    @workflow.run
    async def run(self, request: ContainerStartInput) -> ContainerStartOutput:
        where = await locate(request.container)
        result = await run_on_node(
            "start",
            ContainerStartOnNode.run,
            NodeStartInput(request=request),
            where,
        )
        set_outcome("not-modified" if result.not_modified else "started")
        return result


@workflow.defn(name="ContainerStartOnNode", failure_exception_types=[BerthError])
class ContainerStartOnNode:
    """The start saga's host-bound steps, run by the agent of the container's node."""

    def __init__(self) -> None:
        self._phase = "pending"
        self._context: dict[str, str] = {}
        self._steps: list[StepOutcome] = []

    @workflow.query
    def phase(self) -> str:
        """The saga's current phase: a step name, ``compensating``, ``running`` or ``failed``."""
        return self._phase

    @workflow.run
    async def run(self, start: NodeStartInput) -> ContainerStartOutput:
        began = workflow.now()
        self._enter("checks", f"check and lock container {start.request.container}")
        try:
            plan = await local_step(
                StateActivities.begin_start,
                BeginStartInput(
                    request=start.request,
                    operation=operation_id(),
                    parent_operation=parent_operation(),
                ),
                f"check and lock container {start.request.container}",
                retry=STATE_RETRY,
            )
        except Exception as err:
            self._enter("refused", failure_message(err))
            raise as_berth_error(err) from None
        self._context = {
            "container_id": plan.container_id,
            "container_name": plan.name,
            "node": plan.node,
        }
        if plan.not_modified:
            record_action("start", "not-modified", began)
            self._enter("running", f"{plan.name} is already running")
            return ContainerStartOutput(
                id=plan.container_id,
                name=plan.name,
                node=plan.node,
                pid=plan.pid or 0,
                ip=plan.ip,
                not_modified=True,
            )
        return await recorded("start", began, lambda: self._saga(plan))

    async def _saga(self, plan: StartPlan) -> ContainerStartOutput:
        saga = Saga()
        name, node, cid = plan.name, plan.node, plan.container_id
        ref = ContainerRef(container_id=cid, node=node)
        try:
            self._enter("mount", f"mount rootfs of {name} on {node}")
            saga.register(
                "mount",
                lambda: self._undo(
                    MountActivities.release_rootfs,
                    ReleaseRootfsInput(container_id=cid, node=node),
                    f"release rootfs of {name} on {node}",
                ),
            )
            mounted = await local_step(
                MountActivities.mount_rootfs,
                MountRootfsInput(container_id=cid, node=node, image=plan.config.image),
                f"mount rootfs of {name} on {node}",
            )
            self._done("mount", {"target": mounted.target, "chain_id": mounted.chain_id})

            mode = plan.config.network_mode
            self._enter("network", f"attach {name} to network {mode} on {node}")
            network = NetworkInput(container_id=cid, node=node, mode=mode)
            saga.register(
                "network",
                lambda: self._undo(
                    NetworkActivities.detach_network, network, f"detach network of {name}"
                ),
            )
            attached = await local_step(
                NetworkActivities.attach_network, network, f"attach {name} to {mode} on {node}"
            )
            self._done("network", {"netns": attached.netns, "ip": attached.ip})

            self._enter("spec", f"write OCI spec of {name}")
            saga.register(
                "spec",
                lambda: self._undo(SpecActivities.drop_spec, ref, f"drop OCI spec of {name}"),
            )
            spec = await local_step(
                SpecActivities.write_spec,
                WriteSpecInput(
                    container_id=cid,
                    node=node,
                    config=plan.config,
                    image_config=mounted.image_config,
                    rootfs=mounted.target,
                    netns=attached.netns,
                ),
                f"write OCI spec of {name}",
            )
            self._done("spec", {"path": spec.path})

            self._enter("shim", f"create containerd container and task of {name}")
            saga.register(
                "shim",
                lambda: self._undo(
                    ShimActivities.delete_shim,
                    ref,
                    f"delete containerd task and container of {name}",
                ),
            )
            await local_step(
                ShimActivities.create_shim,
                CreateShimInput(
                    container_id=cid,
                    node=node,
                    image=plan.config.image,
                    spec=spec.spec,
                    labels=plan.config.labels,
                    binds=plan.config.binds,
                ),
                f"create containerd container and task of {name} on {node}",
            )
            self._done("shim", {"containerd_id": cid})

            self._enter("task", f"start task of {name}")
            saga.register(
                "task",
                lambda: self._undo(
                    TaskActivities.stop_task, ref, f"kill and delete task of {name}"
                ),
            )
            started = await local_step(
                TaskActivities.start_task, ref, f"start task of {name} on {node}"
            )
            self._done("task", {"pid": started.pid})

            self._enter("commit", f"record {name} running")
            result = await local_step(
                StateActivities.commit_start,
                CommitStartInput(
                    plan=plan,
                    pid=started.pid,
                    ip=attached.ip,
                    steps=self._steps,
                    stop_signal=mounted.image_config.get("StopSignal"),
                ),
                f"record {name} running with pid {started.pid}",
                retry=STATE_RETRY,
            )
        except (Exception, asyncio.CancelledError) as err:
            await self._unwind(plan, saga, err)
            if isinstance(err, asyncio.CancelledError):
                raise
            raise as_berth_error(err) from None
        self._enter("running", f"{name} is running with pid {result.pid}")
        return result

    async def _unwind(self, plan: StartPlan, saga: Saga, err: BaseException) -> None:
        """Run every undo, then record the failure (and honour auto-remove)."""
        failed_step = self._phase
        message = failure_message(err)
        self._steps.append(StepOutcome(step=failed_step, status="failed", error=message))
        self._enter("compensating", f"step {failed_step} failed: {message}; undoing")
        for undo in await saga.compensate():
            record_compensation(undo.step, undo.ok)
            self._steps.append(
                StepOutcome(
                    step=f"undo-{undo.step}",
                    status="compensated" if undo.ok else "compensation_failed",
                    error=undo.error,
                )
            )
        outcome = await run_to_completion(
            lambda: local_step(
                StateActivities.fail_start,
                FailStartInput(
                    plan=plan,
                    error=message,
                    exit_code=exit_code_from_runtime_error(message),
                    steps=self._steps,
                ),
                f"record failed start of {plan.name}",
                retry=STATE_RETRY,
            )
        )
        if outcome.removed:
            await run_to_completion(
                lambda: local_step(
                    MountActivities.remove_rootfs_snapshot,
                    ContainerRef(container_id=plan.container_id, node=plan.node),
                    f"remove snapshot of auto-removed {plan.name}",
                    retry=UNDO_RETRY,
                )
            )
        self._enter("failed", f"start of {plan.name} failed at {failed_step}: {message}")

    async def _undo(
        self, activity: Callable[[Any, In], Awaitable[Any]], request: In, summary: str
    ) -> None:
        await local_step(activity, request, summary, retry=UNDO_RETRY)

    def _enter(self, phase: str, details: str) -> None:
        self._phase = phase
        workflow.set_current_details(details)
        workflow.logger.info(details, extra={"step": phase, **self._context})
        workflow.upsert_search_attributes([visibility.SAGA_PHASE.value_set(phase)])

    def _done(self, step: str, handle: dict[str, Any]) -> None:
        self._steps.append(StepOutcome(step=step, status="done", handle=handle))
