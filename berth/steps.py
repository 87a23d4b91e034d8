"""The wire between workflows and activities: every step's input and output, and workflow ids.

Workflows, activities, the worker and the client all speak these types; nothing here does I/O
or imports anything beyond pydantic and the public contract, so a workflow or a client can
import it without loading the containerd runtime or SQLAlchemy. Each model is frozen and
carries ids, not handles, so a compensation works from data alone.

Also here: the names on the wire (queues, workflow ids, search attributes, metric names), the
inputs of the node workflows (``<Op>OnNode``, ``ContainerExitedOnNode``), which
any Temporal client may start on a node queue and which the node therefore checks; their
contracts (:data:`NODE_WORKFLOW_CONTRACTS`, beside :data:`berth.contract.WORKFLOW_CONTRACTS`);
and the one order in which a container's host resources are released
(:data:`HOST_CLEANUP`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from berth.contract import (
    BindMount,
    ContainerConfig,
    ContainerExportInput,
    ContainerExportOutput,
    ContainerPauseInput,
    ContainerPauseOutput,
    ContainerRemoveInput,
    ContainerRemoveOutput,
    ContainerRestartInput,
    ContainerStartInput,
    ContainerStartOutput,
    ContainerStopInput,
    ContainerStopOutput,
    FleetSelector,
    ImageOnNode,
    ImageReference,
    Labels,
    NetworkMode,
    NodeName,
    PullPolicy,
    VolumeName,
)

# The holder a running task keeps on its rootfs mount until the container stops.
TASK_HOLDER = "task"
# The exit code recorded when a task vanished and nothing knows how it ended.
UNKNOWN_EXIT_CODE = 255


class StepModel(BaseModel):
    """Base of every step input and output: frozen, JSON-serialisable."""

    model_config = ConfigDict(frozen=True)


class ContainerRef(StepModel):
    """Enough to find every resource of a container on its node: ids are derivable paths."""

    container_id: str
    node: str


# --- PostgreSQL transitions: create, locate, start (activities/state.py) --------------------------


class StartPlan(StepModel):
    """What a start needs, read once under the row lock and passed to every step."""

    container_id: str
    name: str
    node: str
    operation: str
    config: ContainerConfig
    not_modified: bool = False
    pid: int | None = None
    ip: str | None = None


class BeginStartInput(StepModel):
    request: ContainerStartInput
    operation: str
    # The parent run's operation (set by Temporal, not a caller): a hold it took for this
    # start (a policy restart's claim) passes to this operation.
    parent_operation: str | None = None


class StepOutcome(StepModel):
    """How one saga step or its compensation ended, for the journal."""

    step: str
    status: str  # done | failed | compensated | compensation_failed
    handle: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


class CommitStartInput(StepModel):
    plan: StartPlan
    pid: int
    ip: str | None
    steps: list[StepOutcome]
    # The image's StopSignal, which a later stop sends (None: SIGTERM).
    stop_signal: str | None = None


class FailStartInput(StepModel):
    plan: StartPlan
    error: str
    exit_code: int
    steps: list[StepOutcome]


class FailStartOutput(StepModel):
    removed: bool


class AbortInput(StepModel):
    container_id: str
    operation: str
    error: str


class LocateInput(StepModel):
    container: str


class ContainerLocation(StepModel):
    container_id: str
    name: str
    node: str


# --- PostgreSQL transitions after start (activities/state_lifecycle.py) ---------------------------


class Holding(StepModel):
    """A container held by one operation: what its steps need, read once under the lock."""

    container_id: str
    name: str
    node: str
    operation: str
    config: ContainerConfig
    stop_signal: str | None = None
    # The task's pid when the operation began (None: no task).
    pid: int | None = None


class BeginStopInput(StepModel):
    container: str
    operation: str
    # A restart keeps holding the container after the stop, for its start.
    then_start: bool = False


class StopPlan(StepModel):
    holding: Holding
    # The task is alive (running or paused) and must be signalled.
    was_running: bool
    not_modified: bool = False


class FinishStopInput(StepModel):
    holding: Holding
    exit_code: int
    then_start: bool
    steps: list[StepOutcome]
    error: str | None = None


class CommitRestartInput(StepModel):
    holding: Holding
    # How the old task ended, and the pid of the task that replaced it.
    exit_code: int
    pid: int
    steps: list[StepOutcome]


class FinishOutput(StepModel):
    # The record is gone (auto-remove): the caller removes the snapshot.
    removed: bool


class BeginPauseInput(StepModel):
    container: str
    operation: str
    pause: bool


class CommitPauseInput(StepModel):
    holding: Holding
    pause: bool


class BeginRemoveInput(StepModel):
    container: str
    operation: str
    force: bool


class RemovePlan(StepModel):
    holding: Holding
    was_running: bool


class FinishRemoveInput(StepModel):
    holding: Holding
    exit_code: int | None
    steps: list[StepOutcome]


class FailOperationInput(StepModel):
    holding: Holding
    error: str


class RecordExitInput(StepModel):
    container_id: str
    pid: int
    exit_code: int
    operation: str


class ExitPlan(StepModel):
    """How an exit was taken: ``holding`` is None when it was not this agent's to record."""

    holding: Holding | None
    restart: bool = False
    backoff_ms: int = 0
    restart_count: int = 0


class EndExitInput(StepModel):
    holding: Holding
    steps: list[StepOutcome]


class ClaimRestartInput(StepModel):
    container_id: str
    # The restart count the exit saw; a different one means a manual start came in between.
    restart_count: int
    # The exit workflow's own operation; its child start takes the hold over as its parent's.
    operation: str


class ClaimRestartOutput(StepModel):
    claimed: bool
    restart_count: int = 0


# --- host steps: mount, network, spec, shim, task (activities/<step>.py) --------------------------


class MountRootfsInput(StepModel):
    container_id: str
    node: str
    image: str
    holder: str = TASK_HOLDER


class MountRootfsOutput(StepModel):
    target: str
    chain_id: str
    image_config: dict[str, Any]


class ReleaseRootfsInput(StepModel):
    container_id: str
    node: str
    holder: str = TASK_HOLDER


class NetworkInput(StepModel):
    container_id: str
    node: str
    mode: NetworkMode
    # The container's config (hostname, /etc entries, ports) and its image's (exposed ports);
    # an undo needs neither: everything it removes is found from the id.
    config: ContainerConfig | None = None
    image_config: dict[str, Any] = Field(default_factory=dict)


class AttachNetworkOutput(StepModel):
    netns: str | None
    ip: str | None


class WriteSpecInput(StepModel):
    container_id: str
    node: str
    config: ContainerConfig
    image_config: dict[str, Any]
    rootfs: str
    netns: str | None


class WriteSpecOutput(StepModel):
    path: str
    spec: dict[str, Any]


class CreateShimInput(StepModel):
    container_id: str
    node: str
    image: str
    spec: dict[str, object]
    labels: dict[str, str]
    # The container's binds: their sources are checked again and pinned at task creation.
    binds: list[BindMount] = Field(default_factory=list)


class CreateShimOutput(StepModel):
    pid: int


class ReplaceTaskInput(StepModel):
    container_id: str
    node: str
    # The pid of the task being replaced (already stopped by the caller).
    old_pid: int | None
    # The container's binds (its config's), checked again and pinned for the new task.
    binds: list[BindMount] = Field(default_factory=list)


class ReplaceTaskOutput(StepModel):
    # The new task's pid; None when there is no containerd container to restart in place.
    pid: int | None


class StartTaskOutput(StepModel):
    pid: int


class SignalTaskInput(StepModel):
    container_id: str
    node: str
    # A name (SIGTERM, TERM) or a number, as an image's StopSignal; None means SIGTERM.
    signal: str | None
    timeout_seconds: float


class TaskExitOutput(StepModel):
    exit_code: int


# --- images: the start's pull step, image pulls, lists and removal (activities/pull.py) -----------


# The detail (``{MISSING_IMAGE: ref}``) of the ``NotFound`` a step raises because the node lacks
# an image (or has it only half: no unpacked snapshot, a blob gone), so the start pulls it.
MISSING_IMAGE = "missing_image"


class CheckImageInput(StepModel):
    """Whether a start must pull its image first, by its pull policy."""

    node: str
    image: str
    policy: PullPolicy


class CheckImageOutput(StepModel):
    pull: bool


class PullImageInput(StepModel):
    """Pull ``image`` onto ``node`` under the lease of ``owner`` (a container id, a pull run)."""

    node: str
    image: str
    owner: str
    # Skip the pull when the node has the image by the time the pull's turn comes.
    only_if_missing: bool = False


class PullImageOutput(StepModel):
    # False: the node had it already (another pull of the same image finished first).
    pulled: bool
    digest: str | None = None
    chain_id: str | None = None
    size: int = 0


class ReleasePullInput(StepModel):
    """Drop the lease of ``owner``'s pull: what a failed pull wrote becomes garbage."""

    node: str
    owner: str


class ImageListInput(StepModel):
    """Input of ``ImageListOnNode`` (and its step): the node whose images to list."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    node: NodeName


class ImageSummary(StepModel):
    """One image of a node's containerd: its name, target digest, size and creation time."""

    name: str
    digest: str
    size: int
    created_at: datetime


class ImageListOutput(StepModel):
    node: str
    images: list[ImageSummary]


class ImageRemoveInput(StepModel):
    """Input of ``ImageRemoveOnNode`` (and its step): remove ``reference`` from ``node``.

    Refused with ``Conflict`` while a container of the node was created from it, unless
    ``force`` (as ``docker rmi -f``: the containers keep their filesystems).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    node: NodeName
    reference: ImageReference
    force: bool = False


class ImageRemoveOutput(StepModel):
    node: str
    reference: str
    # False: the node did not have it.
    removed: bool


class ImageLoadInput(StepModel):
    """Input of ``ImageLoadOnNode``: load the image archive at ``path`` on ``node``.

    ``path`` is a file on the node, at or below its ``imports`` directory or one of its
    ``allowed_import_paths`` (anything else is ``Forbidden``); a ``docker save`` archive or an
    OCI image-layout tar, plain or gzip.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    node: NodeName
    path: Annotated[str, Field(min_length=2, max_length=4096)]

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/") or ".." in value.split("/") or "\x00" in value:
            raise ValueError(f"path must be an absolute file path without '..', got {value!r}")
        return value


class LoadImageInput(StepModel):
    """Load an archive under the lease of ``owner`` (the load run)."""

    node: str
    path: str
    owner: str


class ImageLoadOutput(StepModel):
    node: str
    images: list[ImageOnNode]


class NodeImagePullInput(StepModel):
    """Input of ``ImagePullOnNode``: pull ``reference`` onto ``node`` (the agent's own)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    node: NodeName
    reference: ImageReference


# --- export, exits, health, fleet -----------------------------------------------------------------


class BeginExportInput(StepModel):
    container: str


class ExportTarget(StepModel):
    """The container an export reads: enough to hold and find its rootfs."""

    container_id: str
    name: str
    node: str
    image: str


class ExportRootfsInput(StepModel):
    container_id: str
    node: str
    output: str


class ExportRootfsOutput(StepModel):
    size_bytes: int


class VerifyExitInput(StepModel):
    container_id: str
    pid: int


class VerifiedExit(StepModel):
    """``exited`` with containerd's exit code, or not (and ``reason`` says why not)."""

    exited: bool
    exit_code: int = UNKNOWN_EXIT_CODE
    reason: str = ""


class ContainerHealthInput(StepModel):
    container_id: str
    # The task the status must belong to; None for whatever task runs now.
    pid: int | None = None


class ContainerHealthOutput(StepModel):
    """``status`` is None without a check, else ``starting``, ``healthy`` or ``unhealthy``."""

    has_check: bool
    running: bool
    status: str | None = None
    failing_streak: int = 0
    last_output: str = ""
    # The check's interval in seconds: how often the status can change.
    interval: float = 30.0
    reason: str = ""


class BeginFleetInput(StepModel):
    run_id: str
    name: str
    selector: FleetSelector
    spec: dict[str, Any]


class FleetTally(StepModel):
    """Per node, how many items have each outcome (``pending`` included); recent errors."""

    nodes: dict[str, dict[str, int]]
    errors: list[str] = Field(default_factory=list)


class NextItemsInput(StepModel):
    run_id: str
    after_seq: int
    limit: int


class FleetItemRef(StepModel):
    seq: int
    container_id: str
    name: str
    node: str
    # The container has a health check (as paged); without one the gate needs no look-up.
    health_check: bool = True


class FleetItems(StepModel):
    items: list[FleetItemRef]


class RecordItemInput(StepModel):
    run_id: str
    seq: int
    outcome: str
    error: str | None = None
    pid: int | None = None
    started_at: datetime
    finished_at: datetime


class FleetStatusInput(StepModel):
    run_id: str
    status: str
    reason: str = ""
    finished: bool = False


class HealthInput(StepModel):
    container_id: str
    pid: int


class HealthOutput(StepModel):
    healthy: bool
    reason: str = ""


class StalledInput(StepModel):
    workflow_ids: list[str]
    waited_seconds: float


class StalledOutput(StepModel):
    workflow_ids: list[str]


# --- the node workflows' inputs -------------------------------------------------------------------
# The operation a node workflow holds its container as is never an input: it is the run's own
# (``<workflow id>@<run id>``, set by Temporal), so a caller cannot name another one's hold.


class NodeStartInput(StepModel):
    """Input of ``ContainerStartOnNode``: the start request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request: ContainerStartInput


class NodeStopInput(StepModel):
    """Input of ``ContainerStopOnNode``: the stop request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request: ContainerStopInput


class NodeRestartInput(StepModel):
    """Input of ``ContainerRestartOnNode``: the restart request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request: ContainerRestartInput


class NodePauseInput(StepModel):
    """Input of ``ContainerPauseOnNode``: pause (True) or unpause (False), as one operation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request: ContainerPauseInput
    pause: bool


class NodeRemoveInput(StepModel):
    """Input of ``ContainerRemoveOnNode``: the remove request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request: ContainerRemoveInput


class NodeExportInput(StepModel):
    """Input of ``ContainerExportOnNode``: the request (the rootfs holder is this run's own)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request: ContainerExportInput


class ExitInput(StepModel):
    """One exit of a container's task: the task's pid (the exit code is asked of containerd)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    container_id: str
    pid: int


class ExitOutput(StepModel):
    # False when the exit was not this workflow's to record (an operation held the container).
    recorded: bool
    restarted: bool = False
    error: str | None = None


# -- named volumes: ``VolumeCreateOnNode`` / ``VolumeRemoveOnNode`` on the node's queue -----------
class VolumeCreateInput(StepModel):
    """Create the volume ``name`` on ``node`` (an existing one is returned as it is)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    node: NodeName
    name: VolumeName
    labels: Labels = Field(default_factory=dict)


class VolumeRemoveInput(StepModel):
    """Remove the volume and its data, refused while a container references it; ``force``
    makes a missing volume success (docker's ``volume rm -f``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    node: NodeName
    name: VolumeName
    force: bool = False


class VolumeInfo(StepModel):
    """A volume as ``berth volume inspect`` shows it."""

    node: str
    name: str
    labels: dict[str, str]
    created_at: datetime
    # The directory containers mount (made at the volume's first use by a container).
    mountpoint: str
    # Names of the node's containers (any state) that reference it.
    used_by: list[str] = Field(default_factory=list)


class VolumeRemoveOutput(StepModel):
    node: str
    name: str
    # False: there was no such volume (``force``).
    removed: bool


# The private workflows a node agent runs on its queue ``berth-node-<node>``: type name → input
# and output. Any Temporal client can start them, so their JSON Schemas are published too.
NODE_WORKFLOW_CONTRACTS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "ContainerStartOnNode": (NodeStartInput, ContainerStartOutput),
    "ContainerStopOnNode": (NodeStopInput, ContainerStopOutput),
    "ContainerRestartOnNode": (NodeRestartInput, ContainerStartOutput),
    "ContainerPauseOnNode": (NodePauseInput, ContainerPauseOutput),
    "ContainerRemoveOnNode": (NodeRemoveInput, ContainerRemoveOutput),
    "ContainerExportOnNode": (NodeExportInput, ContainerExportOutput),
    "ContainerExitedOnNode": (ExitInput, ExitOutput),
    "ImagePullOnNode": (NodeImagePullInput, ImageOnNode),
    "ImageListOnNode": (ImageListInput, ImageListOutput),
    "ImageRemoveOnNode": (ImageRemoveInput, ImageRemoveOutput),
    "ImageLoadOnNode": (ImageLoadInput, ImageLoadOutput),
    "VolumeCreateOnNode": (VolumeCreateInput, VolumeInfo),
    "VolumeRemoveOnNode": (VolumeRemoveInput, VolumeRemoveOutput),
}


# --- workflow ids ---------------------------------------------------------------------------------


def node_task_queue(node: str) -> str:
    """The task queue a node's agent polls: its workflows and its regular steps."""
    return f"berth-node-{node}"


def start_workflow_id(container_id: str) -> str:
    """The id the Berth client gives a container's start: ``container-start-<id>``."""
    return f"container-start-{container_id}"


def restart_workflow_id(container_id: str) -> str:
    """The id of a container's restart (a fleet restart's items use it too)."""
    return f"container-restart-{container_id}"


def exit_workflow_id(container_id: str, pid: int) -> str:
    """One exit of one task: duplicate reports of it collapse onto this id."""
    return f"container-exit-{container_id}-{pid}"


def policy_restart_id(container_id: str, attempt: int) -> str:
    """The start saga a restart policy runs after an exit, per attempt."""
    return f"container-policy-restart-{container_id}-{attempt}"


def fleet_workflow_id(name: str) -> str:
    """The id of a fleet restart: ``fleet-restart-<name>``."""
    return f"fleet-restart-{name}"


def export_holder(operation: str) -> str:
    """The mount holder of an export: the reconciler asks Temporal whether it still runs."""
    return f"export:{operation}"


# --- search attributes and metric names ----------------------------------------------------------
# Registered by the setup; they let an operator find a container's history in the Web UI.
CONTAINER_ID = SearchAttributeKey.for_keyword("ContainerId")
CONTAINER_NAME = SearchAttributeKey.for_keyword("ContainerName")
NODE = SearchAttributeKey.for_keyword("Node")
SAGA_PHASE = SearchAttributeKey.for_keyword("SagaPhase")
OUTCOME = SearchAttributeKey.for_keyword("Outcome")
SEARCH_ATTRIBUTES = (CONTAINER_ID, CONTAINER_NAME, NODE, SAGA_PHASE, OUTCOME)


def container_attributes(container_id: str, name: str, node: str) -> TypedSearchAttributes:
    """The search attributes of a container's workflow: its id, name and node."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(CONTAINER_ID, container_id),
            SearchAttributePair(CONTAINER_NAME, name),
            SearchAttributePair(NODE, node),
        ]
    )


# The histogram of lifecycle action durations (ms) that workflows record, and its buckets.
ACTION_DURATION = "berth_container_action_duration"
DURATION_BUCKETS_MS = (10.0, 25.0, 50.0, 100.0, 200.0, 300.0, 500.0, 1000.0, 2500.0, 10000.0)


# --- the host cleanup order -----------------------------------------------------------------------


class HostTarget(StepModel):
    """What every release step needs: derived from the container, never from a handle."""

    container_id: str
    node: str
    mode: NetworkMode = NetworkMode.BRIDGE
    holder: str = TASK_HOLDER


@dataclass(frozen=True)
class CleanupStep:
    """One step of releasing a container's host resources: its undo activity and its input."""

    step: str
    activity: str
    input: type[StepModel]
    # What it does, for summaries: "<what> of <container> on <node>".
    what: str

    def request(self, target: HostTarget) -> StepModel:
        """This step's input for ``target`` (each input is a subset of the target's fields)."""
        return self.input.model_validate(target.model_dump(include=set(self.input.model_fields)))


# The one order in which what a start made is released: the reverse of the start's steps
# (mount → network → spec → shim → task), as moby's ``Cleanup`` does after a task exits. Stop,
# restart's fallback, remove, an exit, the failed start's compensations, the reconciler and
# teardown all follow it; each step is idempotent and safe when its resource does not exist.
HOST_CLEANUP: tuple[CleanupStep, ...] = (
    CleanupStep("task", "stop_task", ContainerRef, "kill and delete task"),
    CleanupStep("shim", "delete_shim", ContainerRef, "delete containerd task and container"),
    CleanupStep("spec", "drop_spec", ContainerRef, "drop OCI spec"),
    CleanupStep("network", "detach_network", NetworkInput, "detach network"),
    CleanupStep("mount", "release_rootfs", ReleaseRootfsInput, "release rootfs"),
)
# The start's forward steps: exactly the cleanup order reversed.
START_STEPS: tuple[str, ...] = tuple(step.step for step in reversed(HOST_CLEANUP))


def cleanup_step(step: str) -> CleanupStep:
    """The cleanup step named ``step`` (``task``, ``shim``, ``spec``, ``network``, ``mount``)."""
    for candidate in HOST_CLEANUP:
        if candidate.step == step:
            return candidate
    raise KeyError(step)
