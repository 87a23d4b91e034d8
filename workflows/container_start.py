"""``ContainerStart``: docker start as a saga (moby ``daemon/start.go``).

The saga itself is ``ContainerStartOnNode``, run by the agent of the container's node on its
queue ``berth-node-<node>``: the pre-checks under a row lock, then mount → network → spec →
shim create → task start, then commit, every one a local activity (a few milliseconds of
dispatch each instead of about 50 ms for an ordinary activity) and every step registered with
its undo before it runs: the undo of each is its step of :data:`berth.steps.HOST_CLEANUP`, so on
any failure or cancel the undos run last-in-first-out in that one order, then the failure is
recorded and the caller gets a typed error.

``ContainerStart`` is the public entry point on the control queue ``berth``: it finds the
container's node and continues as new there as ``ContainerStartOnNode`` (same workflow id; see
:mod:`berth.workflows.routing`). Berth's own client, which already knows the node, starts
``ContainerStartOnNode`` directly and saves that first workflow task.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from berth.contract import ContainerStartInput, ContainerStartOutput
    from berth.errors import BerthError, as_berth_error, exit_code_from_runtime_error
    from berth.steps import (
        SAGA_PHASE,
        BeginStartInput,
        CommitStartInput,
        ContainerRef,
        CreateShimInput,
        FailStartInput,
        HostTarget,
        MountRootfsInput,
        MountRootfsOutput,
        NetworkInput,
        NodeStartInput,
        StartPlan,
        StepOutcome,
        WriteSpecInput,
        cleanup_step,
    )
    from berth.workflows import steps
    from berth.workflows.image_pull import (
        PULL_ON_MISSING_PATCH,
        PULL_STEP_PATCH,
        mount_pulling,
        pull_for_start,
    )
    from berth.workflows.lifecycle import cleanup_summary, remove_snapshot
    from berth.workflows.metrics import record_action, record_compensation, recorded
    from berth.workflows.routing import (
        locate,
        operation_id,
        parent_operation,
        route_to_node,
        set_outcome,
        with_outcome,
    )
    from berth.workflows.saga import Saga, failure_message, run_to_completion
    from berth.workflows.steps import run_step


@workflow.defn(name="ContainerStart", failure_exception_types=[BerthError])
class ContainerStart:
    """Start a container by id or name; the public entry point on queue ``berth``."""

    @workflow.run
    async def run(self, request: ContainerStartInput) -> ContainerStartOutput:
        where = await locate(request.container)
        result = await route_to_node(
            "start",
            ContainerStartOnNode.run,
            NodeStartInput(request=request),
            where,
        )
        set_outcome(start_outcome(result))
        return result


def start_outcome(result: ContainerStartOutput) -> str:
    """A start's ``Outcome``: ``started``, or ``not-modified`` for one already running."""
    return "not-modified" if result.not_modified else "started"


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
        return await with_outcome(lambda: self.start(start), start_outcome)

    async def start(self, start: NodeStartInput) -> ContainerStartOutput:
        """The saga without setting ``Outcome``: a restart runs it inline as its own operation."""
        began = workflow.now()
        self._enter("checks", f"check and lock container {start.request.container}")
        try:
            plan = await run_step(
                steps.BEGIN_START,
                BeginStartInput(
                    request=start.request,
                    operation=operation_id(),
                    parent_operation=parent_operation(),
                ),
                f"check and lock container {start.request.container}",
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
        target = HostTarget(container_id=cid, node=node, mode=plan.config.network_mode)
        try:
            registered: list[str] = []

            async def mount() -> MountRootfsOutput:
                self._enter("mount", f"mount rootfs of {name} on {node}")
                if not registered:  # a mount run again after a pull has its undo already
                    _register_undo(saga, "mount", target, name)
                    registered.append("mount")
                mounted = await run_step(
                    steps.MOUNT_ROOTFS,
                    MountRootfsInput(container_id=cid, node=node, image=plan.config.image),
                    f"mount rootfs of {name} on {node}",
                )
                self._done("mount", {"target": mounted.target, "chain_id": mounted.chain_id})
                return mounted

            if workflow.patched(PULL_ON_MISSING_PATCH):
                mounted = await mount_pulling(saga, plan, self._enter, self._done, mount)
            else:
                if workflow.patched(PULL_STEP_PATCH):  # histories that checked before mount
                    await pull_for_start(saga, plan, self._enter, self._done)
                mounted = await mount()

            mode = plan.config.network_mode
            self._enter("network", f"attach {name} to network {mode} on {node}")
            _register_undo(saga, "network", target, name)
            attached = await run_step(
                steps.ATTACH_NETWORK,
                NetworkInput(
                    container_id=cid,
                    node=node,
                    mode=mode,
                    config=plan.config,
                    image_config=mounted.image_config,
                ),
                f"attach {name} to {mode} on {node}",
            )
            self._done("network", {"netns": attached.netns, "ip": attached.ip})

            self._enter("spec", f"write OCI spec of {name}")
            _register_undo(saga, "spec", target, name)
            spec = await run_step(
                steps.WRITE_SPEC,
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
            _register_undo(saga, "shim", target, name)
            await run_step(
                steps.CREATE_SHIM,
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
            _register_undo(saga, "task", target, name)
            started = await run_step(steps.START_TASK, ref, f"start task of {name} on {node}")
            self._done("task", {"pid": started.pid})

            self._enter("commit", f"record {name} running")
            result = await run_step(
                steps.COMMIT_START,
                CommitStartInput(
                    plan=plan,
                    pid=started.pid,
                    ip=attached.ip,
                    steps=self._steps,
                    stop_signal=mounted.image_config.get("StopSignal"),
                ),
                f"record {name} running with pid {started.pid}",
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
            lambda: run_step(
                steps.FAIL_START,
                FailStartInput(
                    plan=plan,
                    error=message,
                    exit_code=exit_code_from_runtime_error(message),
                    steps=self._steps,
                ),
                f"record failed start of {plan.name}",
            )
        )
        if outcome.removed:
            await remove_snapshot(plan.container_id, plan.node, f"auto-removed {plan.name}")
        self._enter("failed", f"start of {plan.name} failed at {failed_step}: {message}")

    def _enter(self, phase: str, details: str) -> None:
        self._phase = phase
        workflow.set_current_details(details)
        workflow.logger.info(details, extra={"step": phase, **self._context})
        workflow.upsert_search_attributes([SAGA_PHASE.value_set(phase)])

    def _done(self, step: str, handle: dict[str, Any]) -> None:
        self._steps.append(StepOutcome(step=step, status="done", handle=handle))


def _register_undo(saga: Saga, step: str, target: HostTarget, name: str) -> None:
    """Register the undo of the start's ``step``: that step of the one host cleanup order."""
    cleanup = cleanup_step(step)
    saga.register(
        step,
        lambda: run_step(
            steps.step_for(cleanup), cleanup.request(target), cleanup_summary(cleanup, target, name)
        ),
    )
