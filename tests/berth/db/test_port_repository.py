"""PortRepository against the real PostgreSQL: claims, conflicts, picked ports, release."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from berth.contract import PortBinding
from berth.db.models import PortMapping
from berth.db.port_repository import PortRepository
from berth.errors import Conflict

Sessions = async_sessionmaker[AsyncSession]


def _free(host_ip: str, port: int, protocol: str) -> bool:
    return True


def _cid() -> str:
    return uuid.uuid4().hex * 2


async def _claim(
    sessions: Sessions, node: str, container_id: str, *specs: str, free=_free, ephemeral=None
) -> list[PortMapping]:
    bindings = [b for spec in specs for b in PortBinding.parse(spec)]
    async with sessions.begin() as session:
        repository = PortRepository(session)
        if ephemeral is None:
            return await repository.claim(node, container_id, bindings, free)
        return await repository.claim(node, container_id, bindings, free, ephemeral)


def _shown(mappings: list[PortMapping]) -> list[tuple[str, int, int, str]]:
    return [(m.host_ip, m.host_port, m.container_port, m.protocol) for m in mappings]


async def test_port_repository_claim_records_the_bindings(db_sessions: Sessions, node: str) -> None:
    container_id = _cid()

    await _claim(db_sessions, node, container_id, "18080:80", "127.0.0.1:5353:53/udp")

    async with db_sessions() as session:
        recorded = await PortRepository(session).for_container(container_id)
    assert _shown(recorded) == [("127.0.0.1", 5353, 53, "udp"), ("", 18080, 80, "tcp")]


async def test_port_repository_same_port_for_another_container_is_conflict(
    db_sessions: Sessions, node: str
) -> None:
    await _claim(db_sessions, node, _cid(), "18080:80")

    with pytest.raises(Conflict, match=r"0\.0\.0\.0:18080 failed: port is already allocated"):
        await _claim(db_sessions, node, _cid(), "18080:8080")


async def test_port_repository_same_port_other_protocol_or_node_is_fine(
    db_sessions: Sessions, node: str, other_node: str
) -> None:
    await _claim(db_sessions, node, _cid(), "18080:80")

    udp = await _claim(db_sessions, node, _cid(), "18080:80/udp")
    elsewhere = await _claim(db_sessions, other_node, _cid(), "18080:80")

    assert [m.host_port for m in udp + elsewhere] == [18080, 18080]


async def test_port_repository_claim_again_returns_the_same_ports(
    db_sessions: Sessions, node: str
) -> None:
    container_id = _cid()
    first = await _claim(db_sessions, node, container_id, "80", "443")

    again = await _claim(db_sessions, node, container_id, "80", "443")

    assert _shown(again) == _shown(first)


async def test_port_repository_picks_free_ports_in_the_range_skipping_taken_ones(
    db_sessions: Sessions, node: str
) -> None:
    await _claim(db_sessions, node, _cid(), "40000:80")

    picked = await _claim(
        db_sessions,
        node,
        _cid(),
        "80",
        "81",
        free=lambda ip, port, proto: port != 40001,
        ephemeral=range(40000, 40004),
    )

    assert sorted(m.host_port for m in picked) == [40002, 40003]


async def test_port_repository_range_exhausted_is_conflict(
    db_sessions: Sessions, node: str
) -> None:
    await _claim(db_sessions, node, _cid(), "40000:80")

    with pytest.raises(Conflict, match="no free tcp port"):
        await _claim(db_sessions, node, _cid(), "80", ephemeral=range(40000, 40001))


async def test_port_repository_port_held_on_the_node_is_conflict(
    db_sessions: Sessions, node: str
) -> None:
    with pytest.raises(Conflict, match="already in use on node"):
        await _claim(db_sessions, node, _cid(), "18081:80", free=lambda ip, port, proto: False)


async def test_port_repository_release_frees_the_port_for_another(
    db_sessions: Sessions, node: str
) -> None:
    first = _cid()
    await _claim(db_sessions, node, first, "18080:80")
    async with db_sessions.begin() as session:
        await PortRepository(session).release(first)

    second = await _claim(db_sessions, node, _cid(), "18080:80")

    assert [m.host_port for m in second] == [18080]
