"""Records the workflow histories that tests/workflows/test_replay.py replays (opt-in).

Runs only with ``BERTH_RECORD_HISTORIES=1``; otherwise every test here is skipped::

    BERTH_RECORD_HISTORIES=1 .venv/bin/pytest -q tests/integration/test_record_histories.py

Each test runs one scenario on the suite's own stack with its real workers (the same fixtures as
every integration test, payloads encrypted with the suite's codec key), waits for the runs to
close, fetches their histories and writes them to ``tests/workflows/histories/`` as
``<scenario>.<WorkflowType>[.run-<n>].json``, replacing that scenario's fixtures at the top level
(fixtures kept in subfolders, for histories of older releases, are never touched). Each fresh
recording is replayed at once: a workflow that cannot replay its own new history is
non-deterministic, and its recording fails here rather than in CI.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from berth.contract import (
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
    FleetRestartInput,
)
from berth.runtime.image import build_oci_layout, busybox_rootfs_tar
from berth.steps import (
    VolumeCreateInput,
    VolumeInfo,
    VolumeRemoveInput,
    VolumeRemoveOutput,
    exit_workflow_id,
    fleet_workflow_id,
    node_task_queue,
    policy_restart_id,
    restart_workflow_id,
)
from dev.registry import push_oci_layout
from tests.integration.conftest import EXPORT_ROOT, Stack
from tests.integration.node_agent import Node2
from tests.support.stack import SuiteStack
from tests.workflows.history_fixtures import (
    HISTORIES_DIR,
    RECORD_VARIABLE,
    fixture_path,
    load,
    replayer,
    save,
)

pytestmark = pytest.mark.skipif(
    os.environ.get(RECORD_VARIABLE) != "1",
    reason=f"records workflow histories only with {RECORD_VARIABLE}=1",
)

EXITS_ON_TERM = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
RESULT_TIMEOUT = 120


class Recorder:
    """Fetches closed runs' histories into one scenario's fixtures."""

    def __init__(self, temporal: Client, scenario: str) -> None:
        self.temporal = temporal
        self.scenario = scenario
        for old in HISTORIES_DIR.glob(f"{scenario}.*.json"):
            old.unlink()

    async def record(
        self,
        workflow_type: str,
        workflow_id: str,
        run_id: str | None = None,
        run: int | None = None,
    ) -> Path:
        """Write the history of ``workflow_id`` (its latest run, or ``run_id``) and replay it."""
        history = await self.temporal.get_workflow_handle(
            workflow_id, run_id=run_id
        ).fetch_history()
        path = fixture_path(self.scenario, workflow_type, run)
        save(path, self.scenario, workflow_type, history)
        await replayer().replay_workflow(load(path).history)
        return path


async def start_public(
    stack: Stack, workflow_type: str, request: object, workflow_id: str, result_type: type
) -> WorkflowHandle[Any, Any]:
    """Start a public workflow by type name on queue ``berth``, as any Temporal client would.

    Its first run continues as new on the container's node (berth.workflows.routing): the
    handle's first run is the public workflow's, the id's latest run the node workflow's.
    """
    return await stack.berth.temporal.start_workflow(
        workflow_type,
        request,
        id=workflow_id,
        task_queue=stack.settings.task_queue,
        result_type=result_type,
    )


async def run_public(
    stack: Stack, workflow_type: str, request: object, workflow_id: str, result_type: type
) -> str:
    """Run a public workflow to its node run's end; the id of its first run."""
    handle = await start_public(stack, workflow_type, request, workflow_id, result_type)
    await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)
    assert handle.first_execution_run_id is not None
    return handle.first_execution_run_id


async def closed(temporal: Client, workflow_id: str, timeout: float = RESULT_TIMEOUT) -> None:
    """Wait for a run that someone else starts (the exit monitor) to exist and close."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await asyncio.wait_for(temporal.get_workflow_handle(workflow_id).result(), timeout)
            return
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.2)


@pytest.fixture
def export_dir() -> Iterator[Path]:
    """A fresh directory under the in-process node's operator-listed export directory."""
    EXPORT_ROOT.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory = EXPORT_ROOT / f"rec-{uuid.uuid4().hex[:8]}"
    directory.mkdir()
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


async def test_record_create_and_start(stack: Stack) -> None:
    recorder = Recorder(stack.berth.temporal, "start")
    cid = await stack.create(cmd=EXITS_ON_TERM)
    name = (await stack.berth.get(cid)).name
    start_id = f"container-start-{cid}"

    first_run = await run_public(
        stack, "ContainerStart", ContainerStartInput(container=cid), start_id, ContainerStartOutput
    )

    await recorder.record("ContainerCreate", f"container-create-{name}")
    await recorder.record("ContainerStart", start_id, run_id=first_run)
    await recorder.record("ContainerStartOnNode", start_id)


async def test_record_start_that_pulls_its_image(
    stack: Stack, suite_stack: SuiteStack, tmp_path: Path
) -> None:
    recorder = Recorder(stack.berth.temporal, "pull_start")
    # An image of its own, so the node surely lacks it: the start pulls it (pull step).
    repository = f"berth/rec-{uuid.uuid4().hex[:8]}"
    ref = f"{suite_stack.registry.address}/{repository}:v1"
    layers = [busybox_rootfs_tar(tmp_path / "rootfs.tar").read_bytes()]
    tar = build_oci_layout(tmp_path / "image.tar", ref, layers, "gzip")
    push_oci_layout(tar, suite_stack.registry.address, repository, "v1")
    cid = await stack.create(cmd=EXITS_ON_TERM, image=ref)
    start_id = f"container-start-{cid}"

    await run_public(
        stack, "ContainerStart", ContainerStartInput(container=cid), start_id, ContainerStartOutput
    )

    await recorder.record("ContainerStartOnNode", start_id)


async def test_record_failed_start_with_undos(node2: Node2) -> None:
    recorder = Recorder(node2.temporal, "failed_start")
    cid = await node2.create()
    # The task step fails before its side effect: mount, network, spec, shim and task are undone.
    node2.agent.set_faults({"point": "task:before", "action": "fail", "container": cid})
    start_id = f"container-start-{cid}"

    handle = await start_public(
        node2.stack,
        "ContainerStart",
        ContainerStartInput(container=cid),
        start_id,
        ContainerStartOutput,
    )
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)

    await recorder.record("ContainerStart", start_id, run_id=handle.first_execution_run_id)
    await recorder.record("ContainerStartOnNode", start_id)


async def test_record_restart(stack: Stack) -> None:
    recorder = Recorder(stack.berth.temporal, "restart")
    cid = await stack.create(cmd=EXITS_ON_TERM)
    await stack.berth.start(cid)
    restart_id = restart_workflow_id(cid)

    first_run = await run_public(
        stack,
        "ContainerRestart",
        ContainerRestartInput(container=cid, timeout=5),
        restart_id,
        ContainerStartOutput,
    )

    await recorder.record("ContainerRestart", restart_id, run_id=first_run)
    await recorder.record("ContainerRestartOnNode", restart_id)


async def test_record_stop(stack: Stack) -> None:
    recorder = Recorder(stack.berth.temporal, "stop")
    cid = await stack.create(cmd=EXITS_ON_TERM)
    await stack.berth.start(cid)
    stop_id = f"container-stop-{cid}"

    first_run = await run_public(
        stack,
        "ContainerStop",
        ContainerStopInput(container=cid, timeout=5),
        stop_id,
        ContainerStopOutput,
    )

    await recorder.record("ContainerStop", stop_id, run_id=first_run)
    await recorder.record("ContainerStopOnNode", stop_id)


async def test_record_pause_unpause_export_and_forced_remove(
    stack: Stack, export_dir: Path
) -> None:
    cid = await stack.create(cmd=EXITS_ON_TERM)
    await stack.berth.start(cid)
    ref = ContainerPauseInput(container=cid)
    # (scenario, public workflow, the node workflow it continues as, request, result type).
    runs = [
        ("pause", "ContainerPause", "ContainerPauseOnNode", ref, ContainerPauseOutput),
        ("unpause", "ContainerUnpause", "ContainerPauseOnNode", ref, ContainerPauseOutput),
        (
            "export",
            "ContainerExport",
            "ContainerExportOnNode",
            ContainerExportInput(container=cid, output=str(export_dir / "rootfs.tar")),
            ContainerExportOutput,
        ),
        (
            "forced_remove",
            "ContainerRemove",
            "ContainerRemoveOnNode",
            ContainerRemoveInput(container=cid, force=True),
            ContainerRemoveOutput,
        ),
    ]
    for scenario, workflow_type, node_type, request, result_type in runs:
        recorder = Recorder(stack.berth.temporal, scenario)
        workflow_id = f"container-{scenario.replace('_', '-')}-{cid}"
        first_run = await run_public(stack, workflow_type, request, workflow_id, result_type)
        await recorder.record(workflow_type, workflow_id, run_id=first_run)
        await recorder.record(node_type, workflow_id)


async def test_record_exit_with_policy_restart(stack: Stack) -> None:
    recorder = Recorder(stack.berth.temporal, "exit")
    cid = await stack.create(
        cmd=["sh", "-c", "sleep 1; exit 3"],
        restart_policy={"name": "on-failure", "maximum_retry_count": 1},
    )
    started = await stack.berth.start(cid)
    exit_id = exit_workflow_id(cid, started.pid)

    # The exit monitor starts it when the task exits; it restarts the container once as a child.
    await closed(stack.berth.temporal, exit_id)

    await recorder.record("ContainerExitedOnNode", exit_id)
    await recorder.record("ContainerStartOnNode", policy_restart_id(cid, 1))


async def test_record_fleet_restart_continuing_as_new(stack: Stack) -> None:
    recorder = Recorder(stack.berth.temporal, "fleet_restart")
    ids = [await stack.create(cmd=EXITS_ON_TERM) for _ in range(4)]
    for cid in ids:
        await stack.berth.start(cid)
    request = FleetRestartInput.model_validate(
        {
            "name": f"rec-{uuid.uuid4().hex[:8]}",
            "selector": {"ids": ids},
            "max_parallel": 2,
            "continue_as_new_after": 2,
            "stop_timeout": 0,
        }
    )

    handle = await stack.berth.fleet.restart(request)
    result = await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)
    assert (result.status, result.counts.restarted) == ("completed", 4), result

    run_id = handle.first_execution_run_id
    runs = 0
    while run_id:
        runs += 1
        path = await recorder.record(
            "FleetRestart", fleet_workflow_id(request.name), run_id=run_id, run=runs
        )
        last = load(path).history.events[-1]
        continued = last.workflow_execution_continued_as_new_event_attributes
        run_id = (
            continued.new_execution_run_id
            if last.HasField("workflow_execution_continued_as_new_event_attributes")
            else None
        )
    assert runs >= 2, "the fleet restart did not continue as new"
    await recorder.record("ContainerRestartOnNode", restart_workflow_id(ids[0]))


async def test_record_volume_create_remove_refused_while_used_and_removed(stack: Stack) -> None:
    name = f"rec-{uuid.uuid4().hex[:8]}"
    node, temporal = stack.settings.node, stack.berth.temporal

    async def record(scenario: str, workflow_type: str, request: object, result: type) -> None:
        recorder = Recorder(temporal, scenario)
        workflow_id = f"volume-{scenario.replace('_', '-')}-{name}"
        handle = await temporal.start_workflow(
            workflow_type,
            request,
            id=workflow_id,
            task_queue=node_task_queue(node),
            result_type=result,
        )
        try:
            await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)
        except WorkflowFailureError:
            assert scenario == "volume_remove_in_use"
        await recorder.record(workflow_type, workflow_id)

    remove = VolumeRemoveInput(node=node, name=name)
    await record(
        "volume_create", "VolumeCreateOnNode", VolumeCreateInput(node=node, name=name), VolumeInfo
    )
    user = await stack.create(volumes=[{"name": name, "target": "/data"}])
    await record("volume_remove_in_use", "VolumeRemoveOnNode", remove, VolumeRemoveOutput)
    await stack.berth.remove(user, force=True)
    stack.created.remove(user)
    await record("volume_remove", "VolumeRemoveOnNode", remove, VolumeRemoveOutput)
