"""Berth's Python client on the real stack: what it refuses before it starts any workflow."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import delete
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from berth.client import BerthClient
from berth.db.models import Container, Node
from berth.db.repository import NodeRepository
from berth.errors import Unavailable
from tests.integration.conftest import Stack

GONE = "node-gone"


@pytest.fixture
async def gone_node(stack: Stack) -> AsyncIterator[str]:
    """A node that once registered and whose agent has since left."""
    async with stack.sessions.begin() as session:
        nodes = NodeRepository(session)
        await nodes.register(GONE, "bgone0", "10.213.199.0/24")
        await nodes.leave(GONE)
    yield GONE
    async with stack.sessions.begin() as session:
        await session.execute(delete(Container).where(Container.node == GONE))
        await session.execute(delete(Node).where(Node.name == GONE))


def waiting_briefly(stack: Stack, seconds: float) -> BerthClient:
    """The suite's client with a short bound for waiting out restarts."""
    settings = stack.berth.settings.model_copy(update={"client_wait_seconds": seconds})
    return BerthClient(stack.berth.temporal, stack.berth._engine, settings)


async def test_client_refuses_an_operation_on_a_node_without_agent_after_its_bound(
    stack: Stack, gone_node: str
) -> None:
    container_id = await stack.create(node=gone_node)
    berth = waiting_briefly(stack, 2)

    began = time.monotonic()
    with pytest.raises(Unavailable, match=f"node {gone_node} has no running agent"):
        await berth.start(container_id)

    assert 1.5 <= time.monotonic() - began < 10
    assert (await stack.berth.get(container_id)).state == "created"
    with pytest.raises(RPCError) as missing:
        await stack.berth.temporal.get_workflow_handle(f"container-start-{container_id}").describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND


async def test_client_waits_for_an_agent_that_comes_back_within_its_bound(
    stack: Stack, gone_node: str
) -> None:
    container_id = await stack.create(node=gone_node)
    berth = waiting_briefly(stack, 20)

    async def agent_returns() -> None:
        await asyncio.sleep(1.5)
        async with stack.sessions.begin() as session:
            await NodeRepository(session).register(gone_node, "bgone0", "10.213.199.0/24")

    # No agent polls the gone node's queue, so the start is only asked, never run: its
    # workflow exists once the client stopped waiting for the agent.
    returning = asyncio.create_task(agent_returns())
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(berth.start(container_id), 6)
    await returning

    description = await stack.berth.temporal.get_workflow_handle(
        f"container-start-{container_id}"
    ).describe()
    assert description.status == WorkflowExecutionStatus.RUNNING
    await stack.berth.temporal.get_workflow_handle(f"container-start-{container_id}").terminate()
