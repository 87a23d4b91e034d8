"""Berth's Python client on the real stack: what it refuses before it starts any workflow."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import delete
from temporalio.service import RPCError, RPCStatusCode

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


async def test_client_refuses_an_operation_on_a_node_without_agent_at_once(
    stack: Stack, gone_node: str
) -> None:
    container_id = await stack.create(node=gone_node)

    with pytest.raises(Unavailable, match=f"node {gone_node} has no running agent"):
        await stack.berth.start(container_id)

    assert (await stack.berth.get(container_id)).state == "created"
    with pytest.raises(RPCError) as missing:
        await stack.berth.temporal.get_workflow_handle(f"container-start-{container_id}").describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND
