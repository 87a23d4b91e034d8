"""NodeReads (the CLI's psycopg reads) against the real PostgreSQL: node use and ports."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from berth.contract import ContainerState, PortBinding
from berth.db.node_reads import NodeReads, NodeUsageRow
from berth.db.port_repository import PortRepository
from berth.db.repository import NetworkAttachmentRepository
from tests.berth.db.conftest import MakeContainer

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def reads(db_sessions: Sessions) -> AsyncIterator[NodeReads]:
    url = db_sessions.kw["bind"].url.render_as_string(hide_password=False)
    connected = await NodeReads.connect(url, 5.0, 0.0)
    assert isinstance(connected, NodeReads)
    yield connected
    await connected.close()


async def _usage(reads: NodeReads, node: str) -> NodeUsageRow:
    return next(u for u in await reads.node_usage() if u.name == node)


async def test_node_reads_usage_counts_containers_live_ones_and_ips(
    db_sessions: Sessions,
    reads: NodeReads,
    make_container: MakeContainer,
    node: str,
    other_node: str,
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

    usage = await _usage(reads, node)

    assert (usage.containers, usage.running, usage.ips_used) == (3, 2, 1)
    # The conftest's nodes have 10.0.0.0/24: 256 less network, gateway and broadcast.
    assert (usage.ips_total, usage.ips_free) == (253, 252)
    assert usage.live


async def test_node_reads_usage_node_without_containers_counts_zero(
    reads: NodeReads, node: str
) -> None:
    usage = await _usage(reads, node)
    assert (usage.containers, usage.running, usage.ips_used, usage.ips_free) == (0, 0, 0, 253)


def test_node_usage_ips_total_of_a_slash_22_fits_a_thousand_containers() -> None:
    usage = NodeUsageRow("n", "b", "10.213.0.0/22", None, True, 0, 0, 0)  # type: ignore[arg-type]
    assert usage.ips_total == 1021


async def test_node_reads_ports_of_one_container(
    db_sessions: Sessions, reads: NodeReads, node: str
) -> None:
    container_id = "ab" * 32
    async with db_sessions.begin() as session:
        await PortRepository(session).claim(
            node, container_id, PortBinding.parse("127.0.0.1:18080:80"), lambda *_: True
        )

    rows = await reads.ports(container_id)

    assert [(r.host_ip, r.host_port, r.container_port, r.protocol) for r in rows] == [
        ("127.0.0.1", 18080, 80, "tcp")
    ]
    assert container_id in {r.container_id for r in await reads.ports()}
