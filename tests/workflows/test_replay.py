"""Replay of recorded histories: a change to a workflow that breaks an in-flight run fails here.

Every fixture under ``tests/workflows/histories/`` (a real run recorded on the test stack, see
tests/integration/test_record_histories.py) is replayed by Temporal's ``Replayer`` against the
workflow classes the workers register, in the workers' sandbox and with their data converter.
A workflow whose code no longer issues the commands its history holds, in the same order, fails
with a ``NondeterminismError``. No server is needed. The variants below show that the replay
does catch such a change (and that replaying a faithful subclass does not).
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from berth.contract import WORKFLOW_CONTRACTS, ContainerStartOutput
from berth.converter import data_converter
from berth.errors import BerthError
from berth.steps import (
    NODE_WORKFLOW_CONTRACTS,
    LocateInput,
    NodeStartInput,
    VolumeRemoveInput,
    VolumeRemoveOutput,
)
from berth.worker import workflow_runner
from berth.workflows import steps
from berth.workflows.container_start import ContainerStartOnNode
from berth.workflows.steps import run_step
from berth.workflows.volume_ops import VolumeRemoveOnNode
from tests.workflows.history_fixtures import (
    BERTH_WORKFLOWS,
    HISTORIES_DIR,
    RecordedHistory,
    fixture_path,
    load,
    load_all,
    replay_converter,
    replayer,
)

FIXTURES = load_all()
# The runs the suite must always hold a history of (scenario, workflow type).
REQUIRED = {
    ("start", "ContainerStart"),
    ("start", "ContainerStartOnNode"),
    ("pull_start", "ContainerStartOnNode"),
    ("failed_start", "ContainerStart"),
    ("failed_start", "ContainerStartOnNode"),
    ("restart", "ContainerRestart"),
    ("restart", "ContainerRestartOnNode"),
    ("stop", "ContainerStop"),
    ("stop", "ContainerStopOnNode"),
    ("fleet_restart", "FleetRestart"),
    ("exit", "ContainerExitedOnNode"),
    ("volume_create", "VolumeCreateOnNode"),
    ("volume_remove", "VolumeRemoveOnNode"),
    ("volume_remove_in_use", "VolumeRemoveOnNode"),
}


def event_types(recorded: RecordedHistory) -> list[int]:
    return [event.event_type for event in recorded.history.events]


@pytest.mark.parametrize("recorded", FIXTURES, ids=[f.path.name for f in FIXTURES])
async def test_replay_recorded_history_replays_without_nondeterminism(
    recorded: RecordedHistory,
) -> None:
    result = await replayer().replay_workflow(recorded.history, raise_on_replay_failure=False)

    assert result.replay_failure is None, f"{recorded.path.name}: {result.replay_failure}"


def test_replay_fixtures_hold_every_required_run() -> None:
    held = {(f.scenario, f.workflow_type) for f in FIXTURES}

    assert held >= REQUIRED, sorted(REQUIRED - held)


def test_replay_fixtures_failed_start_ends_failed_after_its_undos() -> None:
    saga = load(fixture_path("failed_start", "ContainerStartOnNode"))
    types = event_types(saga)
    markers = Counter(types)[EventType.EVENT_TYPE_MARKER_RECORDED]

    assert types[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
    # begin, mount, network, spec, shim (task failed before its side effect), five undos, fail.
    assert markers >= 11, markers


def test_replay_fixtures_fleet_restart_continues_as_new() -> None:
    runs = [
        f for f in FIXTURES if (f.scenario, f.workflow_type) == ("fleet_restart", "FleetRestart")
    ]
    endings = [event_types(run)[-1] for run in runs]

    assert endings.count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW) >= 1, endings
    assert endings.count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED) == 1, endings


# Each public workflow and the node workflow it hands its container's operation to.
PUBLIC_TO_NODE = {
    "ContainerStart": "ContainerStartOnNode",
    "ContainerStop": "ContainerStopOnNode",
    "ContainerRestart": "ContainerRestartOnNode",
    "ContainerPause": "ContainerPauseOnNode",
    "ContainerUnpause": "ContainerPauseOnNode",
    "ContainerRemove": "ContainerRemoveOnNode",
    "ContainerExport": "ContainerExportOnNode",
}
# Histories of the public workflows from before the patch continue-on-node (a child on the node).
CHILD_HOP_DIR = HISTORIES_DIR / "child-hop"


def test_replay_fixtures_public_workflows_continue_as_new_on_their_node_workflow() -> None:
    current = [
        f for f in FIXTURES if f.path.parent == HISTORIES_DIR and f.workflow_type in PUBLIC_TO_NODE
    ]

    assert {f.workflow_type for f in current} == set(PUBLIC_TO_NODE)
    for recorded in current:
        last = recorded.history.events[-1]
        assert last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
        continued = last.workflow_execution_continued_as_new_event_attributes
        assert continued.workflow_type.name == PUBLIC_TO_NODE[recorded.workflow_type]
        assert EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED not in event_types(
            recorded
        )


def test_replay_fixtures_keep_public_workflows_of_the_child_shape() -> None:
    older = [
        f for f in FIXTURES if f.path.parent == CHILD_HOP_DIR and f.workflow_type in PUBLIC_TO_NODE
    ]

    assert {f.workflow_type for f in older} == set(PUBLIC_TO_NODE)
    for recorded in older:
        types = event_types(recorded)
        assert EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED in types
        assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW not in types


# Node runs recorded before the patch outcome-on-node, which set no Outcome of their own.
NO_OUTCOME_DIR = HISTORIES_DIR / "no-outcome"
# The Outcome each scenario's node run ends with.
OUTCOMES = {
    "start": "started",
    "pull_start": "started",
    "failed_start": "failed",
    "restart": "restarted",
    "stop": "stopped",
    "pause": "paused",
    "unpause": "unpaused",
    "export": "exported",
    "forced_remove": "removed",
}


def outcomes_of(recorded: RecordedHistory) -> list[tuple[int, str]]:
    """The Outcome upserts of a run: (event index, value)."""
    found = []
    for index, event in enumerate(recorded.history.events):
        if event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            if "Outcome" in fields.indexed_fields:
                found.append((index, json.loads(fields.indexed_fields["Outcome"].data)))
    return found


def test_replay_fixtures_node_runs_set_their_outcome_in_the_closing_task() -> None:
    current = [
        f
        for f in FIXTURES
        if f.path.parent == HISTORIES_DIR and f.workflow_type in set(PUBLIC_TO_NODE.values())
    ]

    assert {f.scenario for f in current} >= set(OUTCOMES)
    for recorded in current:
        events = recorded.history.events
        tasks = [
            i
            for i, e in enumerate(events)
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
        ]
        found = outcomes_of(recorded)
        assert found, recorded.path.name
        index, outcome = found[-1]
        # Among the commands of the last workflow task: it added no task of its own.
        assert index > tasks[-1], recorded.path.name
        if recorded.scenario in OUTCOMES:
            assert outcome == OUTCOMES[recorded.scenario], recorded.path.name


def test_replay_fixtures_keep_node_runs_without_an_outcome() -> None:
    older = [f for f in FIXTURES if f.path.parent == NO_OUTCOME_DIR]

    assert {f.workflow_type for f in older} == set(PUBLIC_TO_NODE.values())
    assert [f.path.name for f in older if outcomes_of(f)] == []


def test_replay_workflows_are_every_registered_workflow() -> None:
    # The SDK's own reading of @workflow.defn (it has no public accessor for the name).
    names = {workflow._Definition.must_from_class(cls).name for cls in BERTH_WORKFLOWS}

    assert names == set(WORKFLOW_CONTRACTS) | set(NODE_WORKFLOW_CONTRACTS)


# --- variants of the start saga, replayed against the recorded start -----------------------------
# Unsandboxed: the sandbox would re-import this test module and everything it imports.


@workflow.defn(name="ContainerStartOnNode", sandboxed=False, failure_exception_types=[BerthError])
class FaithfulStart(ContainerStartOnNode):
    """The start saga unchanged: its recorded history replays."""

    @workflow.run
    async def run(self, start: NodeStartInput) -> ContainerStartOutput:
        return await super().run(start)


@workflow.defn(name="ContainerStartOnNode", sandboxed=False, failure_exception_types=[BerthError])
class StartWithExtraStep(ContainerStartOnNode):
    """The start saga with one more activity before its checks."""

    @workflow.run
    async def run(self, start: NodeStartInput) -> ContainerStartOutput:
        await run_step(
            steps.LOCATE_CONTAINER, LocateInput(container=start.request.container), "locate"
        )
        return await super().run(start)


@workflow.defn(name="ContainerStartOnNode", sandboxed=False, failure_exception_types=[BerthError])
class StartWithTimer(ContainerStartOnNode):
    """The start saga waiting on a durable timer before its checks."""

    @workflow.run
    async def run(self, start: NodeStartInput) -> ContainerStartOutput:
        await workflow.sleep(1)
        return await super().run(start)


def variant_replayer(variant: type) -> Replayer:
    return Replayer(
        workflows=[variant],
        data_converter=replay_converter(),
        workflow_runner=UnsandboxedWorkflowRunner(),
    )


async def test_replay_start_history_on_faithful_subclass_replays() -> None:
    recorded = load(fixture_path("start", "ContainerStartOnNode"))

    result = await variant_replayer(FaithfulStart).replay_workflow(
        recorded.history, raise_on_replay_failure=False
    )

    assert result.replay_failure is None, result.replay_failure


@pytest.mark.parametrize("variant", [StartWithExtraStep, StartWithTimer])
async def test_replay_start_history_on_changed_workflow_raises_nondeterminism(
    variant: type,
) -> None:
    recorded = load(fixture_path("start", "ContainerStartOnNode"))

    with pytest.raises(workflow.NondeterminismError):
        await variant_replayer(variant).replay_workflow(recorded.history)


async def test_replay_start_history_without_the_codec_key_fails() -> None:
    recorded = load(fixture_path("start", "ContainerStartOnNode"))
    plain = Replayer(
        workflows=BERTH_WORKFLOWS, data_converter=data_converter, workflow_runner=workflow_runner()
    )

    result = await plain.replay_workflow(recorded.history, raise_on_replay_failure=False)

    # The recorded payloads are ciphertext: only the suite's key reads them.
    assert result.replay_failure is not None


def test_replay_fixtures_pull_start_pulls_before_it_mounts() -> None:
    saga = load(fixture_path("pull_start", "ContainerStartOnNode"))
    scheduled = [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in saga.history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]

    # The pull is the saga's one regular activity; the checks and host steps are local.
    assert scheduled == ["pull_image"]
    assert saga.history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED


def test_replay_fixtures_volume_remove_in_use_fails_with_conflict_after_its_one_step() -> None:
    refused = load(fixture_path("volume_remove_in_use", "VolumeRemoveOnNode"))
    types = event_types(refused)
    failed = refused.history.events[-1].workflow_execution_failed_event_attributes.failure

    assert types[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
    assert Counter(types)[EventType.EVENT_TYPE_MARKER_RECORDED] == 1
    assert failed.application_failure_info.type == "Conflict"


@workflow.defn(name="VolumeRemoveOnNode", sandboxed=False, failure_exception_types=[BerthError])
class VolumeRemoveAfterLocating(VolumeRemoveOnNode):
    """The volume removal with one more activity before its step."""

    @workflow.run
    async def run(self, request: VolumeRemoveInput) -> VolumeRemoveOutput:
        await run_step(steps.LOCATE_CONTAINER, LocateInput(container="x"), "locate")
        return await super().run(request)


@pytest.mark.parametrize("scenario", ["volume_remove", "volume_remove_in_use"])
async def test_replay_volume_remove_history_on_changed_workflow_raises_nondeterminism(
    scenario: str,
) -> None:
    recorded = load(fixture_path(scenario, "VolumeRemoveOnNode"))

    with pytest.raises(workflow.NondeterminismError):
        await variant_replayer(VolumeRemoveAfterLocating).replay_workflow(recorded.history)
