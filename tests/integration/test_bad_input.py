"""Bad input fails at once with a typed error, writes nothing and leaves no workflow running;
runtime errors become docker's exit codes with runc's reason in the message."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowFailureError
from temporalio.common import RawValue

from berth.contract import FleetProgress
from berth.db.models import Container, FleetRun
from berth.errors import NotFound, System
from tests.integration.conftest import Stack


def raw_json(data: bytes) -> RawValue:
    return RawValue(Payload(metadata={"encoding": b"json/plain"}, data=data))


def config(**fields: Any) -> bytes:
    base: dict[str, Any] = {"name": f"bad-{uuid.uuid4().hex[:8]}", "image": "local/busybox:latest"}
    return json.dumps({"config": {**base, **fields}}).encode()


BAD_CREATE_INPUTS = {
    "invalid-name": config(name="-starts-with-dash"),
    "name-with-slash-inside": config(name="a/b"),
    "env-without-equals": config(env=["JUSTAKEY"]),
    "negative-pids-limit": config(resources={"pids_limit": -1}),
    "negative-memory": config(resources={"memory_bytes": -4096}),
    "too-many-env-entries": config(env=[f"K{i}=v" for i in range(1025)]),
    "oversized-label": config(labels={"big": "x" * 5000}),
    "malformed-image-reference": config(image="UPPER/Case::tag"),
    "malformed-json": b'{"config": {"name": "x", ',
    "not-an-object": b'"web-1"',
    "unknown-field": config(imagee="x"),
    # Issue 12, item 9: each of these was accepted before.
    "nul-in-label-key": config(labels={"a\x00b": "v"}),
    "nul-in-label-value": config(labels={"k": "v\x00"}),
    "label-over-containerd-4096-bytes": config(labels={"k" * 200: "v" * 3897}),
    "nul-in-working-dir": config(working_dir="/srv\x00x"),
    "nul-in-user": config(user="root\x00"),
    "pids-limit-above-int64": config(resources={"pids_limit": 2**63}),
    "memory-above-int64": config(resources={"memory_bytes": 2**64}),
    "cmd-of-4097-args": config(cmd=["x"] * 4097),
    "entrypoint-of-4097-args": config(entrypoint=["x"] * 4097),
    "health-interval-of-a-nanosecond": config(
        healthcheck={"test": ["CMD", "true"], "interval": 1e-9}
    ),
    "health-timeout-below-a-millisecond": config(
        healthcheck={"test": ["CMD", "true"], "timeout": 0.0005}
    ),
}


async def containers_count(stack: Stack) -> int:
    async with stack.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Container)) or 0)


@pytest.mark.parametrize("payload", BAD_CREATE_INPUTS.values(), ids=BAD_CREATE_INPUTS.keys())
async def test_create_with_bad_input_is_invalid_parameter_and_writes_nothing(
    stack: Stack, payload: bytes
) -> None:
    before = await containers_count(stack)
    workflow_id = f"test-bad-create-{uuid.uuid4().hex[:8]}"

    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(
            stack.berth.temporal.execute_workflow(
                "ContainerCreate",
                raw_json(payload),
                id=workflow_id,
                task_queue=stack.settings.task_queue,
            ),
            20,
        )

    assert getattr(failure.value.cause, "type", None) == "InvalidParameter"
    handle = stack.berth.temporal.get_workflow_handle(workflow_id)
    assert (await handle.describe()).status.name == "FAILED"
    assert await containers_count(stack) == before


@pytest.mark.parametrize(
    "selector",
    [
        {"ids": [f"c{i:011d}" for i in range(100_000)]},
        {"labels": {"app\x00": "web"}},
        {"labels": {"app": "web\x00"}},
        {"ids": ["web\x00"]},
    ],
    ids=["100000-ids", "nul-in-label-key", "nul-in-label-value", "nul-in-id"],
)
async def test_fleet_restart_with_bad_selector_is_invalid_parameter_and_records_nothing(
    stack: Stack, selector: dict[str, Any]
) -> None:
    name = f"bad-{uuid.uuid4().hex[:8]}"
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(
            stack.berth.temporal.execute_workflow(
                "FleetRestart",
                raw_json(json.dumps({"name": name, "selector": selector}).encode()),
                id=f"fleet-restart-{name}",
                task_queue=stack.settings.task_queue,
            ),
            20,
        )
    assert getattr(failure.value.cause, "type", None) == "InvalidParameter"
    assert "selector" in str(failure.value.cause)
    async with stack.sessions() as session:
        assert await session.scalar(select(func.count()).where(FleetRun.name == name)) == 0


async def test_fleet_restart_of_ten_thousand_ids_selects_through_postgresql(
    stack: Stack,
) -> None:
    """At the cap, ids and names are 20,000 bind parameters: well under PostgreSQL's 65,535."""
    container_id = await stack.create()
    ids = [container_id] + [f"{i:064x}" for i in range(1, 10_000)]
    name = f"cap-{uuid.uuid4().hex[:8]}"

    result = await asyncio.wait_for(
        stack.berth.temporal.execute_workflow(
            "FleetRestart",
            raw_json(
                json.dumps({"name": name, "selector": {"ids": ids, "state": "created"}}).encode()
            ),
            id=f"fleet-restart-{name}",
            task_queue=stack.settings.task_queue,
            result_type=FleetProgress,
        ),
        60,
    )

    assert (result.status, result.counts.total, result.counts.restarted) == ("completed", 1, 1)


async def test_start_with_malformed_json_fails_at_once(stack: Stack) -> None:
    workflow_id = f"test-bad-start-{uuid.uuid4().hex[:8]}"
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(
            stack.berth.temporal.execute_workflow(
                "ContainerStart",
                raw_json(b'{"container": '),
                id=workflow_id,
                task_queue=stack.settings.task_queue,
            ),
            20,
        )
    assert getattr(failure.value.cause, "type", None) == "InvalidParameter"


async def test_start_of_unknown_image_is_not_found_and_leaves_nothing(stack: Stack) -> None:
    container_id = await stack.create(image="local/no-such-image:latest")

    with pytest.raises(NotFound, match="no-such-image"):
        await stack.berth.start(container_id)

    record = await stack.berth.get(container_id)
    assert (record.state, record.operation) == ("created", None)
    assert (await stack.footprint(container_id)).empty


@pytest.mark.parametrize(
    ("entrypoint", "exit_code", "reason"),
    [
        (["/etc/passwd"], 126, "permission denied"),
        # runc reports exec of a directory as EACCES: still docker's 126.
        (["/bin"], 126, "permission denied"),
        (["/no/such/binary"], 127, "no such file or directory"),
        (["no-such-command"], 127, "executable file not found"),
    ],
)
async def test_start_records_exit_code_and_runc_reason(
    stack: Stack, entrypoint: list[str], exit_code: int, reason: str
) -> None:
    container_id = await stack.create(entrypoint=entrypoint, cmd=[])

    with pytest.raises(System, match=reason):
        await stack.berth.start(container_id)

    record = await stack.berth.get(container_id)
    assert (record.state, record.exit_code) == ("created", exit_code)
    assert record.error is not None and reason in record.error
    assert (await stack.footprint(container_id)).empty
