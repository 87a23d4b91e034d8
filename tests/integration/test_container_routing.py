"""The public workflows by type name, as any Temporal client starts them, on the real stack.

Each runs once on queue ``berth`` (find the container's node) and continues as new there as its
``<Op>OnNode`` workflow (berth.workflows.routing): the caller's handle follows the runs to the
node's result or its typed failure, and the public workflow id leads to both runs.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.converter import DataConverter

from berth.codec import AesGcmCodec, CodecKeys
from berth.config import node_task_queue
from berth.errors import NotFound
from berth.steps import CONTAINER_ID, OUTCOME
from tests.integration.conftest import EXPORT_ROOT, TEST_CODEC_KEYS, Stack
from tests.integration.test_container_start import temporal_cli

RESULT_TIMEOUT = 120


@pytest.fixture
async def plain(stack: Stack) -> Client:
    """A plain SDK client: the default JSON converter, only the operator's codec added."""
    return await Client.connect(
        stack.settings.temporal_address,
        namespace=stack.settings.temporal_namespace,
        data_converter=DataConverter(payload_codec=AesGcmCodec(CodecKeys.parse(TEST_CODEC_KEYS))),
    )


async def run_by_type_name(
    plain: Client, stack: Stack, workflow_type: str, request: dict[str, Any], workflow_id: str
) -> tuple[Any, str]:
    """Start ``workflow_type`` with JSON on queue ``berth``; its result and first run's id."""
    handle = await plain.start_workflow(
        workflow_type, request, id=workflow_id, task_queue=stack.settings.task_queue
    )
    result = await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)
    assert handle.first_execution_run_id is not None
    return result, handle.first_execution_run_id


async def assert_continued_on_node(
    plain: Client, stack: Stack, workflow_id: str, first_run: str, node_type: str
) -> None:
    """The first run ended by continuing as ``node_type`` on the node's queue, with no child
    in between, and the workflow id's latest run is that node workflow, closed."""
    history = await plain.get_workflow_handle(workflow_id, run_id=first_run).fetch_history()
    types = [event.event_type for event in history.events]
    assert EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED not in types
    last = history.events[-1]
    assert last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    continued = last.workflow_execution_continued_as_new_event_attributes
    assert continued.workflow_type.name == node_type
    assert continued.task_queue.name == node_task_queue(stack.settings.node)
    # No floor between the runs (the server's workflowIdReuseMinimalInterval, set to 0 by the
    # stack): the node run's first workflow task is not held back.
    node_run = await plain.get_workflow_handle(
        workflow_id, run_id=continued.new_execution_run_id
    ).fetch_history()
    started = node_run.events[0].workflow_execution_started_event_attributes
    assert started.first_workflow_task_backoff.ToTimedelta().total_seconds() == 0
    latest = await plain.get_workflow_handle(workflow_id).describe()
    assert latest.workflow_type == node_type
    assert latest.run_id == continued.new_execution_run_id
    assert latest.status in (WorkflowExecutionStatus.COMPLETED, WorkflowExecutionStatus.FAILED)


async def outcome_of(plain: Client, workflow_id: str) -> str | None:
    """The ``Outcome`` search attribute of the workflow id's latest run."""
    described = await plain.get_workflow_handle(workflow_id).describe()
    return described.typed_search_attributes.get(OUTCOME)


async def test_start_by_type_name_with_json_continues_on_node_and_returns_its_result(
    stack: Stack, plain: Client
) -> None:
    cid = await stack.create()
    name = (await stack.berth.get(cid)).name
    workflow_id = f"container-start-{cid}"

    result, first_run = await run_by_type_name(
        plain, stack, "ContainerStart", {"container": name}, workflow_id
    )

    task = await stack.containerd.get_task(cid)
    assert (result["id"], result["node"], result["pid"]) == (cid, stack.settings.node, task.pid)
    assert task.status == "RUNNING"
    assert (await stack.berth.get(cid)).state == "running"
    await assert_continued_on_node(plain, stack, workflow_id, first_run, "ContainerStartOnNode")


async def test_start_by_type_name_failing_on_node_reaches_caller_as_typed_error(
    stack: Stack, plain: Client
) -> None:
    cid = await stack.create(cmd=["/no/such/binary"])
    workflow_id = f"container-start-{cid}"

    with pytest.raises(WorkflowFailureError) as failure:
        await run_by_type_name(plain, stack, "ContainerStart", {"container": cid}, workflow_id)

    assert getattr(failure.value.cause, "type", None) == "System"
    assert "no such file or directory" in str(failure.value.cause)
    record = await stack.berth.get(cid)
    assert (record.state, record.exit_code, record.operation) == ("created", 127, None)
    assert (await stack.footprint(cid)).empty
    handle = plain.get_workflow_handle(workflow_id)
    assert (await handle.describe()).status == WorkflowExecutionStatus.FAILED


async def test_start_by_type_name_sets_outcome_in_the_node_runs_one_workflow_task(
    stack: Stack, plain: Client
) -> None:
    cid = await stack.create()
    workflow_id = f"container-start-{cid}"

    await run_by_type_name(plain, stack, "ContainerStart", {"container": cid}, workflow_id)

    assert await outcome_of(plain, workflow_id) == "started"
    history = await plain.get_workflow_handle(workflow_id).fetch_history()
    tasks = [
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    ]
    assert len(tasks) == 1  # the upsert rides on the task the saga closes in
    # What the Web UI's filter does (visibility catches up shortly).
    query = f'{OUTCOME.name} = "started" AND WorkflowId = "{workflow_id}"'
    found: list[str] = []
    deadline = time.monotonic() + 20
    while not found and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        found = [w.workflow_type async for w in plain.list_workflows(query)]
    assert found == ["ContainerStartOnNode"]


async def test_start_by_type_name_failing_on_node_sets_outcome_failed(
    stack: Stack, plain: Client
) -> None:
    cid = await stack.create(cmd=["/no/such/binary"])
    workflow_id = f"container-start-{cid}"

    with pytest.raises(WorkflowFailureError):
        await run_by_type_name(plain, stack, "ContainerStart", {"container": cid}, workflow_id)

    assert await outcome_of(plain, workflow_id) == "failed"


async def test_start_by_type_name_of_paused_container_is_conflict_from_the_node(
    stack: Stack, plain: Client
) -> None:
    cid = await stack.create()
    await stack.berth.start(cid)
    await stack.berth.pause(cid)

    with pytest.raises(WorkflowFailureError) as failure:
        await run_by_type_name(
            plain, stack, "ContainerStart", {"container": cid}, f"start-paused-{cid}"
        )

    assert getattr(failure.value.cause, "type", None) == "Conflict"
    assert (await stack.berth.get(cid)).state == "paused"
    await stack.berth.unpause(cid)


async def test_start_by_type_name_is_found_by_container_id_on_both_runs(
    stack: Stack, plain: Client
) -> None:
    cid = await stack.create()
    workflow_id = f"container-start-{cid}"
    await run_by_type_name(plain, stack, "ContainerStart", {"container": cid}, workflow_id)

    # What the Web UI's search does: both runs of the public id carry the container's id.
    found: list[str] = []
    deadline = time.monotonic() + 20
    while len(found) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        query = f'{CONTAINER_ID.name} = "{cid}" AND WorkflowId = "{workflow_id}"'
        found = [w.workflow_type async for w in plain.list_workflows(query)]
    assert sorted(found) == ["ContainerStart", "ContainerStartOnNode"]


async def test_temporal_cli_execute_by_type_name_follows_to_the_node_run(stack: Stack) -> None:
    cid = await stack.create()
    workflow_id = f"container-start-{cid}"

    done = await asyncio.to_thread(
        temporal_cli,
        stack,
        "workflow",
        "execute",
        "--type",
        "ContainerStart",
        "--task-queue",
        stack.settings.task_queue,
        "--workflow-id",
        workflow_id,
        "--input",
        json.dumps({"container": cid}),
        "--output",
        "json",
    )

    assert done.returncode == 0, done.stdout + done.stderr
    printed = json.loads(done.stdout)
    latest = await stack.berth.temporal.get_workflow_handle(workflow_id).describe()
    assert latest.workflow_type == "ContainerStartOnNode"
    assert printed["status"] == "COMPLETED", printed
    assert (await stack.berth.get(cid)).state == "running"


async def test_temporal_cli_execute_failing_on_node_exits_non_zero_with_the_type(
    stack: Stack,
) -> None:
    cid = await stack.create(cmd=["/no/such/binary"])

    done = await asyncio.to_thread(
        temporal_cli,
        stack,
        "workflow",
        "execute",
        "--type",
        "ContainerStart",
        "--task-queue",
        stack.settings.task_queue,
        "--workflow-id",
        f"container-start-{cid}",
        "--input",
        json.dumps({"container": cid}),
        "--output",
        "json",
    )

    assert done.returncode != 0
    # The node run's failure, as the CLI follows the runs: its type and message.
    assert '"type": "System"' in done.stdout, done.stdout + done.stderr
    assert "no such file or directory" in done.stdout


async def test_every_public_workflow_by_type_name_continues_on_node(
    stack: Stack, plain: Client
) -> None:
    cid = await stack.create(cmd=["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"])
    EXPORT_ROOT.mkdir(mode=0o700, parents=True, exist_ok=True)
    output = EXPORT_ROOT / f"routing-{uuid.uuid4().hex[:8]}.tar"
    export = {"container": cid, "output": str(output)}
    # (public type, its node workflow, JSON request, the state it leaves, its Outcome), in order.
    stop = {"container": cid, "timeout": 5}
    runs = [
        ("ContainerStart", "ContainerStartOnNode", {"container": cid}, "running", "started"),
        ("ContainerStart", "ContainerStartOnNode", {"container": cid}, "running", "not-modified"),
        ("ContainerPause", "ContainerPauseOnNode", {"container": cid}, "paused", "paused"),
        ("ContainerUnpause", "ContainerPauseOnNode", {"container": cid}, "running", "unpaused"),
        ("ContainerRestart", "ContainerRestartOnNode", stop, "running", "restarted"),
        ("ContainerExport", "ContainerExportOnNode", export, "running", "exported"),
        ("ContainerStop", "ContainerStopOnNode", stop, "exited", "stopped"),
        ("ContainerStop", "ContainerStopOnNode", stop, "exited", "not-modified"),
        ("ContainerRemove", "ContainerRemoveOnNode", {"container": cid}, None, "removed"),
    ]  # fmt: skip
    try:
        for public, node_type, request, state, outcome in runs:
            workflow_id = f"{public}-{cid}-{uuid.uuid4().hex[:4]}"

            result, first_run = await run_by_type_name(plain, stack, public, request, workflow_id)

            assert result["id"] == cid, (public, result)
            await assert_continued_on_node(plain, stack, workflow_id, first_run, node_type)
            if state is not None:
                assert (await stack.berth.get(cid)).state == state, public
            # Set by the node run (the public run continued before it knew the outcome).
            assert await outcome_of(plain, workflow_id) == outcome, public
    finally:
        output.unlink(missing_ok=True)
    with pytest.raises(NotFound):
        await stack.berth.get(cid)


async def test_start_by_type_name_with_too_long_workflow_id_fails_before_the_node(
    stack: Stack, plain: Client
) -> None:
    cid = await stack.create()
    # The node run would hold the container as ``<workflow id>@<run id>``: no room for this one.
    workflow_id = f"start-{cid}-" + "x" * 120

    with pytest.raises(WorkflowFailureError) as failure:
        await run_by_type_name(plain, stack, "ContainerStart", {"container": cid}, workflow_id)

    assert getattr(failure.value.cause, "type", None) == "InvalidParameter"
    assert "workflow id: at most 180 characters" in str(failure.value.cause)
    described = await plain.get_workflow_handle(workflow_id).describe()
    assert (described.workflow_type, described.status) == (
        "ContainerStart",
        WorkflowExecutionStatus.FAILED,
    )
    assert (await stack.berth.get(cid)).state == "created"
