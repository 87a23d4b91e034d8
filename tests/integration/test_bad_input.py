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

from berth.db.models import Container
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
