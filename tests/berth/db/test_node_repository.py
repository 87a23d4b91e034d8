"""NodeRepository.usage against the real PostgreSQL: containers and IPs per node."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from berth.contract import ContainerState
from berth.db.repository import NetworkAttachmentRepository, NodeRepository, NodeUsage
from tests.berth.db.conftest import MakeContainer

Sessions = async_sessionmaker[AsyncSession]


async def _usage(sessions: Sessions, node: str) -> NodeUsage:
    async with sessions() as session:
        return next(u for u in await NodeRepository(session).usage() if u.name == node)


async def test_node_repository_usage_counts_containers_live_ones_and_ips(
    db_sessions: Sessions, make_container: MakeContainer, node: str, other_node: str
) -> None:
    running = await make_container(ContainerState.RUNNING, pid=10)
    await make_container(ContainerState.PAUSED, pid=11)
    await make_container(ContainerState.EXITED)
    elsewhere = await make_container(ContainerState.RUNNING, pid=12, on=other_node)
    async with db_sessions.begin() as session:
        attachments = NetworkAttachmentRepository(session)
        await attachments.intend(running.id, node, "bridge", "/x")
        await attachments.record_ip(running.id, "10.0.0.2")
        await attachments.intend(elsewhere.id, other_node, "bridge", "/y")
        await attachments.record_ip(elsewhere.id, "10.0.0.3")
    usage = await _usage(db_sessions, node)
    assert (usage.containers, usage.running, usage.ips_used) == (3, 2, 1)
    # The conftest's nodes have 10.0.0.0/24: 256 less network, gateway and broadcast.
    assert (usage.ips_total, usage.ips_free) == (253, 252)


async def test_node_repository_usage_node_without_containers_counts_zero(
    db_sessions: Sessions, node: str
) -> None:
    usage = await _usage(db_sessions, node)
    assert (usage.containers, usage.running, usage.ips_used, usage.ips_free) == (0, 0, 0, 253)


async def test_node_usage_ips_total_of_a_slash_22_fits_a_thousand_containers() -> None:
    usage = NodeUsage("n", "b", "10.213.0.0/22", True, 0, 0, 0)
    assert usage.ips_total == 1021
