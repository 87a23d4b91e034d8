"""The steps table: every activity Berth's workflows run, by its registered name, and how.

One entry per activity: its name, input and output type (from :mod:`berth.steps`), whether it
runs as a local activity (inside the workflow task, about 10 ms of dispatch) or a regular one
(on the node's queue, about 50 ms, and free to run as long as it needs while it heartbeats), its
start-to-close timeout, retry policy, heartbeat timeout, cancellation type, and the workers that
register it (``control`` on queue ``berth``, ``node`` on ``berth-node-<node>``). Workflows call a
step only through :func:`run_step`, by name, so they never import an activity module; the worker
checks at start that what it registers is exactly this table (:func:`check_registered`).

Short host steps and PostgreSQL transitions are local. A step whose duration the user controls
is regular and heartbeats: the stop's signal-and-wait (up to the grace period, which may be a
day) and the export's tar. Host-bound steps are waited for when cancelled, so an undo never races
the step it undoes.

A step that fails with ``Unavailable`` after its retry policy gave up (containerd restarting,
PostgreSQL shutting down) is run again by :func:`run_step` itself, with pauses, until the grace
its error names has passed since the step was first scheduled (``berth.errors.Waiting``, read
from the failure in history, so replay decides the same); meanwhile the workflow's current
details, which the Web UI shows, say "waiting for containerd on node-2". Every step is idempotent
(Invariant 1), so running it again is safe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar, get_type_hints

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from berth import steps as s
    from berth.contract import (
        ContainerCreateInput,
        ContainerCreateOutput,
        ContainerStartOutput,
        ContainerState,
    )
    from berth.errors import Waiting, application_cause, waiting_of
    from berth.workflows.policies import (
        GRACE_FIRST_PAUSE,
        GRACE_MAX_PAUSE,
        RIDE_OUT_PATCH,
        STATE_RETRY,
        STEP_RETRY,
        STEP_TIMEOUT,
        UNDO_RETRY,
    )

In = TypeVar("In")
Out = TypeVar("Out")

CONTROL = "control"
NODE = "node"
WAIT = ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
# A heartbeating step reports every couple of seconds; a dead agent is noticed after this long.
HEARTBEAT_TIMEOUT = timedelta(seconds=30)


class StepTableMismatch(Exception):
    """A worker's activities are not exactly the steps table's: the worker refuses to start."""


@dataclass(frozen=True)
class Step(Generic[In, Out]):
    """One activity as the workflows call it."""

    name: str
    input: type[In]
    # None: the activity returns nothing.
    output: type[Out] | None
    local: bool
    retry: RetryPolicy
    workers: frozenset[str]
    timeout: timedelta = STEP_TIMEOUT
    heartbeat: timedelta | None = None
    cancellation: ActivityCancellationType = WAIT


_NODE = frozenset({NODE})
_CONTROL = frozenset({CONTROL})
_BOTH = frozenset({CONTROL, NODE})


def _state(
    name: str, input: type[In], output: type[Out] | None, workers: frozenset[str] = _NODE
) -> Step[In, Out]:
    """A PostgreSQL transition: local, retried through transient database failures."""
    return Step[In, Out](name, input, output, local=True, retry=STATE_RETRY, workers=workers)


def _host(name: str, input: type[In], output: type[Out] | None) -> Step[In, Out]:
    """A short host-bound step on the node: local."""
    return Step[In, Out](name, input, output, local=True, retry=STEP_RETRY, workers=_NODE)


def _undo(name: str, input: type[In]) -> Step[In, None]:
    """A host-bound undo: local, retried longer (each undo is idempotent)."""
    return Step[In, None](name, input, None, local=True, retry=UNDO_RETRY, workers=_NODE)


def _long(
    name: str, input: type[In], output: type[Out], timeout: timedelta = STEP_TIMEOUT
) -> Step[In, Out]:
    """A node step whose duration the user controls: regular, and it heartbeats."""
    return Step[In, Out](
        name,
        input,
        output,
        local=False,
        retry=STEP_RETRY,
        workers=_NODE,
        timeout=timeout,
        heartbeat=HEARTBEAT_TIMEOUT,
    )


# -- the control worker's PostgreSQL steps ---------------------------------------------------------
CREATE_CONTAINER = Step[ContainerCreateInput, ContainerCreateOutput](
    "create_container",
    ContainerCreateInput,
    ContainerCreateOutput,
    local=True,
    retry=STATE_RETRY,
    workers=_CONTROL,
    timeout=timedelta(seconds=30),
    cancellation=ActivityCancellationType.TRY_CANCEL,
)
LOCATE_CONTAINER = _state("locate_container", s.LocateInput, s.ContainerLocation, _CONTROL)
ABORT_OPERATION: Step[s.AbortInput, None] = _state("abort_operation", s.AbortInput, None, _BOTH)
BEGIN_FLEET_RUN = _state("begin_fleet_run", s.BeginFleetInput, s.FleetTally, _CONTROL)
NEXT_FLEET_ITEMS = _state("next_fleet_items", s.NextItemsInput, s.FleetItems, _CONTROL)
RECORD_FLEET_ITEM: Step[s.RecordItemInput, None] = _state(
    "record_fleet_item", s.RecordItemInput, None, _CONTROL
)
SET_FLEET_STATUS: Step[s.FleetStatusInput, None] = _state(
    "set_fleet_status", s.FleetStatusInput, None, _CONTROL
)
CHECK_HEALTHY = _state("check_healthy", s.HealthInput, s.HealthOutput, _CONTROL)
CONTAINER_HEALTH = _state(
    "container_health", s.ContainerHealthInput, s.ContainerHealthOutput, _CONTROL
)
STALLED_CHILDREN = _state("stalled_children", s.StalledInput, s.StalledOutput, _CONTROL)

# -- the node's PostgreSQL transitions -------------------------------------------------------------
BEGIN_START = _state("begin_start", s.BeginStartInput, s.StartPlan)
COMMIT_START = _state("commit_start", s.CommitStartInput, ContainerStartOutput)
FAIL_START = _state("fail_start", s.FailStartInput, s.FailStartOutput)
BEGIN_STOP = _state("begin_stop", s.BeginStopInput, s.StopPlan)
FINISH_STOP = _state("finish_stop", s.FinishStopInput, s.FinishOutput)
COMMIT_RESTART = _state("commit_restart", s.CommitRestartInput, ContainerStartOutput)
BEGIN_PAUSE = _state("begin_pause", s.BeginPauseInput, s.Holding)
COMMIT_PAUSE = _state("commit_pause", s.CommitPauseInput, ContainerState)
BEGIN_REMOVE = _state("begin_remove", s.BeginRemoveInput, s.RemovePlan)
FINISH_REMOVE: Step[s.FinishRemoveInput, None] = _state("finish_remove", s.FinishRemoveInput, None)
FAIL_REMOVAL: Step[s.FailOperationInput, None] = _state("fail_removal", s.FailOperationInput, None)
RECORD_EXIT = _state("record_exit", s.RecordExitInput, s.ExitPlan)
END_EXIT = _state("end_exit", s.EndExitInput, s.FinishOutput)
CLAIM_POLICY_RESTART = _state("claim_policy_restart", s.ClaimRestartInput, s.ClaimRestartOutput)
VERIFY_EXIT = _state("verify_exit", s.VerifyExitInput, s.VerifiedExit)
BEGIN_EXPORT = _state("begin_export", s.BeginExportInput, s.ExportTarget)

# -- the node's host steps and their undos ---------------------------------------------------------
MOUNT_ROOTFS = _host("mount_rootfs", s.MountRootfsInput, s.MountRootfsOutput)
RELEASE_ROOTFS = _undo("release_rootfs", s.ReleaseRootfsInput)
REMOVE_ROOTFS_SNAPSHOT = _undo("remove_rootfs_snapshot", s.ContainerRef)
ATTACH_NETWORK = _host("attach_network", s.NetworkInput, s.AttachNetworkOutput)
DETACH_NETWORK = _undo("detach_network", s.NetworkInput)
WRITE_SPEC = _host("write_spec", s.WriteSpecInput, s.WriteSpecOutput)
DROP_SPEC = _undo("drop_spec", s.ContainerRef)
CREATE_SHIM = _host("create_shim", s.CreateShimInput, s.CreateShimOutput)
DELETE_SHIM = _undo("delete_shim", s.ContainerRef)
REPLACE_TASK = _host("replace_task", s.ReplaceTaskInput, s.ReplaceTaskOutput)
START_TASK = _host("start_task", s.ContainerRef, s.StartTaskOutput)
STOP_TASK = _undo("stop_task", s.ContainerRef)
PAUSE_TASK: Step[s.ContainerRef, None] = _host("pause_task", s.ContainerRef, None)
RESUME_TASK: Step[s.ContainerRef, None] = _host("resume_task", s.ContainerRef, None)

# -- images: the start's pull step (the check is local; a pull is long and heartbeats) -------------
CHECK_IMAGE = _host("check_image", s.CheckImageInput, s.CheckImageOutput)
RELEASE_PULL = _undo("release_pull", s.ReleasePullInput)
PULL_IMAGE = _long("pull_image", s.PullImageInput, s.PullImageOutput, timeout=timedelta(hours=1))
LOAD_IMAGE = _long("load_image", s.LoadImageInput, s.ImageLoadOutput, timeout=timedelta(hours=1))
LIST_IMAGES = _host("list_images", s.ImageListInput, s.ImageListOutput)
REMOVE_IMAGE = _host("remove_image", s.ImageRemoveInput, s.ImageRemoveOutput)

# -- named volumes: the node's directory and its row -----------------------------------------------
CREATE_VOLUME = _host("create_volume", s.VolumeCreateInput, s.VolumeInfo)
REMOVE_VOLUME = _host("remove_volume", s.VolumeRemoveInput, s.VolumeRemoveOutput)

# -- steps whose duration the user controls: regular activities that heartbeat ---------------------
# The timeout given here is a floor; the stop passes its grace period plus slack per call.
SIGNAL_AND_WAIT = _long("signal_and_wait", s.SignalTaskInput, s.TaskExitOutput)
EXPORT_ROOTFS = _long(
    "export_rootfs", s.ExportRootfsInput, s.ExportRootfsOutput, timeout=timedelta(hours=6)
)

STEPS: dict[str, Step[Any, Any]] = {
    step.name: step
    for step in (
        CREATE_CONTAINER,
        LOCATE_CONTAINER,
        ABORT_OPERATION,
        BEGIN_FLEET_RUN,
        NEXT_FLEET_ITEMS,
        RECORD_FLEET_ITEM,
        SET_FLEET_STATUS,
        CHECK_HEALTHY,
        CONTAINER_HEALTH,
        STALLED_CHILDREN,
        BEGIN_START,
        COMMIT_START,
        FAIL_START,
        BEGIN_STOP,
        FINISH_STOP,
        COMMIT_RESTART,
        BEGIN_PAUSE,
        COMMIT_PAUSE,
        BEGIN_REMOVE,
        FINISH_REMOVE,
        FAIL_REMOVAL,
        RECORD_EXIT,
        END_EXIT,
        CLAIM_POLICY_RESTART,
        VERIFY_EXIT,
        BEGIN_EXPORT,
        MOUNT_ROOTFS,
        RELEASE_ROOTFS,
        REMOVE_ROOTFS_SNAPSHOT,
        ATTACH_NETWORK,
        DETACH_NETWORK,
        WRITE_SPEC,
        DROP_SPEC,
        CREATE_SHIM,
        DELETE_SHIM,
        REPLACE_TASK,
        START_TASK,
        STOP_TASK,
        PAUSE_TASK,
        RESUME_TASK,
        SIGNAL_AND_WAIT,
        EXPORT_ROOTFS,
        CHECK_IMAGE,
        RELEASE_PULL,
        PULL_IMAGE,
        LIST_IMAGES,
        REMOVE_IMAGE,
        LOAD_IMAGE,
        CREATE_VOLUME,
        REMOVE_VOLUME,
    )
}


async def run_step(
    step: Step[In, Out],
    request: In,
    summary: str,
    *,
    timeout: timedelta | None = None,
    local: bool | None = None,
) -> Out:
    """Run ``step`` with ``request`` as the table says, by its activity name.

    ``timeout`` overrides the start-to-close timeout for this call (a stop's grace period);
    ``local`` overrides how it runs, only to replay histories recorded before a step moved.
    A step that keeps failing with ``Unavailable`` is run again for the grace its error names.
    """
    began = workflow.now()
    pause = GRACE_FIRST_PAUSE
    while True:
        try:
            return await _run_once(step, request, summary, timeout, local)
        except Exception as err:  # ActivityError, or the ApplicationError of a local activity
            waiting = waiting_of(err)
            if waiting is None or not _within_grace(began, waiting):
                raise
            if not workflow.patched(RIDE_OUT_PATCH):
                raise  # a history recorded before steps rode out Unavailable
            await _wait_for(waiting, pause, err)
            pause = min(pause * 2, GRACE_MAX_PAUSE)


def _within_grace(began: datetime, waiting: Waiting) -> bool:
    return workflow.now() - began < timedelta(seconds=waiting.grace_seconds)


async def _wait_for(waiting: Waiting, pause: timedelta, err: Exception) -> None:
    """Pause before the step runs again, the current details saying what the saga waits for."""
    details = workflow.get_current_details()
    workflow.set_current_details(f"waiting for {waiting}: {failure_text(err)}")
    workflow.logger.warning("waiting %s for %s", pause, waiting)
    try:
        await workflow.sleep(pause)
    finally:
        workflow.set_current_details(details)


def failure_text(err: BaseException) -> str:
    """The step's own message, without the SDK's wrapping."""
    cause = application_cause(err)
    return cause.message if cause is not None else str(err)


async def _run_once(
    step: Step[In, Out],
    request: In,
    summary: str,
    timeout: timedelta | None,
    local: bool | None,
) -> Out:
    as_local = step.local if local is None else local
    # Local and regular alike; only a regular activity heartbeats.
    options: dict[str, Any] = {
        "result_type": step.output,
        "start_to_close_timeout": timeout or step.timeout,
        "retry_policy": step.retry,
        "cancellation_type": step.cancellation,
        "summary": summary,
    }
    if as_local:
        result = await workflow.execute_local_activity(step.name, request, **options)
    else:
        result = await workflow.execute_activity(
            step.name, request, heartbeat_timeout=step.heartbeat, **options
        )
    return result  # type: ignore[no-any-return]


def step_for(step: s.CleanupStep) -> Step[Any, None]:
    """The table's entry for one step of :data:`berth.steps.HOST_CLEANUP`."""
    return STEPS[step.activity]


def steps_of(worker: str) -> dict[str, Step[Any, Any]]:
    """The steps a worker (``control`` or ``node``) registers, by name."""
    return {name: step for name, step in STEPS.items() if worker in step.workers}


def check_registered(worker: str, activities: Iterable[Callable[..., Any]]) -> None:
    """Raise :class:`StepTableMismatch` unless ``activities`` are exactly ``worker``'s steps.

    Checked: the names (nothing missing, nothing extra, nothing twice), each activity's input and
    output type against the table's, and that a regular step is registered only on node agents
    (the queue a node workflow schedules it on).
    """
    expected = steps_of(worker)
    problems: list[str] = []
    seen: set[str] = set()
    for function in activities:
        definition = activity._Definition.must_from_callable(function)
        name = definition.name or ""
        if name in seen:
            problems.append(f"{name}: registered twice")
        seen.add(name)
        step = expected.get(name)
        if step is None:
            where = (
                ""
                if name not in STEPS
                else f" (the table runs it on {sorted(STEPS[name].workers)})"
            )
            problems.append(f"{name}: not a step of the {worker} worker{where}")
            continue
        if not step.local and worker != NODE:
            problems.append(f"{name}: a regular step runs on a node's queue, not {worker}")
        hints = get_type_hints(function)
        arg = next((hint for key, hint in hints.items() if key != "return"), None)
        returned = hints.get("return")
        if arg is not step.input:
            problems.append(f"{name}: takes {arg}, the table says {step.input}")
        if returned is not (type(None) if step.output is None else step.output):
            problems.append(f"{name}: returns {returned}, the table says {step.output}")
    problems += [f"{name}: in the table, not registered" for name in sorted(set(expected) - seen)]
    if problems:
        raise StepTableMismatch(f"{worker} worker: " + "; ".join(problems))
