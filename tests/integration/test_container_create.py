"""ContainerCreate on the real stack: placement, unique names, validation at the edge."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select
from temporalio.client import WorkflowFailureError

from berth.contract import ContainerCreateOutput
from berth.db.models import Container
from berth.errors import Conflict
from tests.integration.conftest import Stack


async def create_raw(stack: Stack, payload: object) -> ContainerCreateOutput:
    return await stack.berth.temporal.execute_workflow(
        "ContainerCreate",
        payload,
        id=f"test-create-{uuid.uuid4().hex[:8]}",
        task_queue=stack.settings.task_queue,
        result_type=ContainerCreateOutput,
    )


async def container_count(stack: Stack) -> int:
    async with stack.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Container)) or 0)


async def test_create_places_container_on_a_registered_node_in_state_created(stack: Stack) -> None:
    container_id = await stack.create()

    record = await stack.berth.get(container_id)

    assert (record.state, record.node) == ("created", stack.settings.node)
    assert len(record.id) == 64


async def test_create_with_a_name_in_use_is_conflict(stack: Stack) -> None:
    container_id = await stack.create()
    name = (await stack.berth.get(container_id)).name
    from berth.contract import ContainerConfig

    with pytest.raises(Conflict, match="is already in use"):
        await stack.berth.create(ContainerConfig(name=name, image="local/busybox:latest"))


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"name": "-x", "image": "local/busybox:latest"}, "config.name"),
        ({"name": "ok-name", "image": "NOT VALID"}, "config.image"),
        ({"name": "ok-name", "image": "local/busybox", "env": ["NOEQUALS"]}, "config.env"),
        (
            {"name": "ok-name", "image": "local/busybox", "resources": {"memory_bytes": -1}},
            "config.resources.memory_bytes",
        ),
    ],
)
async def test_create_with_invalid_input_fails_at_once_naming_the_field_and_writes_nothing(
    stack: Stack, config: dict[str, object], field: str
) -> None:
    before = await container_count(stack)

    with pytest.raises(WorkflowFailureError) as failure:
        await create_raw(stack, {"config": config})

    cause = failure.value.cause
    assert getattr(cause, "type", None) == "InvalidParameter"
    assert field in str(cause)
    assert await container_count(stack) == before
