"""ContainerReads (the CLI's psycopg reads) on the real PostgreSQL, beside the ORM they mirror."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import fields

import pytest
from sqlalchemy import inspect as orm_inspect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from berth.contract import ContainerState
from berth.db.models import Container, ContainerEvent, ContainerHealth
from berth.db.reads import (
    ContainerReads,
    ContainerRow,
    DatabaseUnreachable,
    EventRow,
    HealthRow,
)
from berth.db.repository import ContainerRepository
from tests.berth.db.conftest import MakeContainer

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def reads(db_sessions: Sessions) -> AsyncIterator[ContainerReads]:
    url = db_sessions.kw["bind"].url.render_as_string(hide_password=False)
    connected = await ContainerReads.connect(url, 5.0, 0.0)
    yield connected
    await connected.close()


@pytest.mark.parametrize(
    ("row", "model"),
    [(ContainerRow, Container), (EventRow, ContainerEvent), (HealthRow, ContainerHealth)],
)
def test_rows_have_every_column_of_their_model(row: type, model: type) -> None:
    columns = {column.key for column in orm_inspect(model).columns}

    assert {field.name for field in fields(row)} == columns


async def test_find_by_id_prefix_and_name_as_the_repository_does(
    db_sessions: Sessions, reads: ContainerReads, make_container: MakeContainer
) -> None:
    made = await make_container(ContainerState.RUNNING, pid=42)

    for ref in (made.id, made.id[:12], made.name, f"/{made.name}"):
        found = await reads.find(ref)
        async with db_sessions() as session:
            expected = await ContainerRepository(session).get(ref)
        assert found is not None, ref
        assert (found.id, found.name, found.state, found.pid) == (
            expected.id,
            expected.name,
            expected.state,
            expected.pid,
        )
    assert found.state == ContainerState.RUNNING
    assert await reads.find("no-such-container") is None
    assert await reads.find(made.id[:11]) is None  # too short to be a prefix


async def test_events_of_one_container_after_an_id(
    db_sessions: Sessions, reads: ContainerReads, make_container: MakeContainer
) -> None:
    made = await make_container()
    async with db_sessions.begin() as session:
        repository = ContainerRepository(session)
        for action in ("create", "start", "die"):
            repository.add_event(made, action, {"exitCode": "0"} if action == "die" else {})
            await session.flush()  # ids in this order

    events = await reads.events(made.id)
    later = await reads.events(made.id, since_id=events[0].id)

    assert [e.action for e in events] == ["create", "start", "die"]
    assert [e.action for e in later] == ["start", "die"]
    assert events[2].attributes == {"exitCode": "0"}


async def test_connect_to_a_closed_port_names_the_server_not_the_password() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(DatabaseUnreachable) as raised:
        await ContainerReads.connect(f"postgresql+psycopg://u:hunter2@127.0.0.1:{port}/x", 2.0, 0.0)

    assert str(raised.value).startswith(f"cannot connect to PostgreSQL at 127.0.0.1:{port}/x: ")
    assert "hunter2" not in str(raised.value)
