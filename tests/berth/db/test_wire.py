"""berth.db.wire (the CLI's blocking PostgreSQL client) and the writing verbs' reads on it
(berth.cli.wire_reads.WireReads), on the real PostgreSQL beside ContainerReads they mirror."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from berth.cli.context import BerthFailure
from berth.cli.wire_reads import ID_PREFIX, NODE_LIVENESS_SECONDS, WireReads
from berth.contract import ContainerState
from berth.db import reads
from berth.db.reads import ContainerReads
from berth.db.wire import (
    Connection,
    ScramClient,
    ServerError,
    Target,
    Unsupported,
    WireUnreachable,
)
from tests.berth.db.conftest import MakeContainer

Sessions = async_sessionmaker[AsyncSession]


def url_of(db_sessions: Sessions) -> str:
    return str(db_sessions.kw["bind"].url.render_as_string(hide_password=False))


@pytest.fixture
def connection(db_sessions: Sessions) -> Iterator[Connection]:
    connected = Connection.connect(Target.parse(url_of(db_sessions)), 5.0)
    yield connected
    connected.close()


@pytest.fixture
async def both(db_sessions: Sessions) -> AsyncIterator[tuple[WireReads, ContainerReads]]:
    url = url_of(db_sessions)
    wire = WireReads.connect(url, 5.0, 0.0)
    mirrored = await ContainerReads.connect(url, 5.0, 0.0)
    yield wire, mirrored
    wire.close()
    await mirrored.close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_target_of_a_sqlalchemy_url_takes_its_host_port_user_database_and_sslmode() -> None:
    target = Target.parse(
        "postgresql+psycopg://berth:s%40cret@db.example:6432/berth?sslmode=require"
    )

    assert (target.host, target.port, target.user, target.database) == (
        "db.example",
        6432,
        "berth",
        "berth",
    )
    assert (target.password, target.sslmode) == ("s@cret", "require")
    assert "cret" not in repr(target)
    assert Target.parse("postgresql://u@h/d").sslmode == "prefer"  # libpq's default


@pytest.mark.parametrize(
    "url",
    [
        "postgresql:///berth?host=/var/run/postgresql",  # a Unix socket
        "postgresql://u@h1,h2/d",  # several hosts
        "postgresql://u@h/d?target_session_attrs=read-write",  # a parameter not spoken here
        "postgresql://u@h/d?sslmode=bogus",
        "mysql://u@h/d",
    ],
)
def test_target_of_what_the_client_does_not_speak_is_unsupported(url: str) -> None:
    with pytest.raises(Unsupported):
        Target.parse(url)


def test_scram_client_proves_and_verifies_as_rfc_7677s_example() -> None:
    scram = ScramClient("pencil", nonce="rOprNGfwEbeRWgbNEkqO", user="user")

    assert scram.first() == "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    final = scram.final(
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    assert final == (
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    scram.verify("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")


def test_scram_client_refuses_a_server_that_cannot_prove_the_password() -> None:
    scram = ScramClient("pencil", nonce="rOprNGfwEbeRWgbNEkqO", user="user")
    scram.first()
    scram.final(
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )

    with pytest.raises(WireUnreachable, match="signature"):
        scram.verify("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")


def test_scram_client_refuses_a_nonce_that_does_not_extend_its_own() -> None:
    scram = ScramClient("pencil", nonce="mine")
    scram.first()

    with pytest.raises(WireUnreachable, match="nonce"):
        scram.final("r=theirs,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")


def test_query_binds_text_parameters_and_returns_text_and_nulls(connection: Connection) -> None:
    rows = connection.query("SELECT $1::text, $2::int + 1, NULL, 'it''s'", ["a'; --", "41"])

    assert rows == [("a'; --", "42", None, "it's")]


def test_query_refused_is_a_server_error_and_the_session_goes_on(connection: Connection) -> None:
    with pytest.raises(ServerError) as refused:
        connection.query("SELECT no_such_column FROM containers")

    assert refused.value.sqlstate == "42703"
    assert connection.query("SELECT 1") == [("1",)]


def test_connect_to_a_closed_port_is_unreachable_after_the_wait() -> None:
    target = Target.parse(f"postgresql://postgres@127.0.0.1:{closed_port()}/berth")

    with pytest.raises(WireUnreachable, match="refused"):
        Connection.connect(target, 1.0, wait_seconds=0.3)


def test_connect_to_a_missing_database_is_unreachable_with_the_servers_reason(
    db_sessions: Sessions,
) -> None:
    url = url_of(db_sessions).rsplit("/", 1)[0] + "/berth_no_such_database"

    with pytest.raises(WireUnreachable, match="does not exist"):
        Connection.connect(Target.parse(url), 5.0)


def test_wire_reads_use_the_liveness_window_and_id_rule_of_the_container_reads() -> None:
    assert NODE_LIVENESS_SECONDS == reads.NODE_LIVENESS_SECONDS
    assert ID_PREFIX.pattern == reads.ID_PREFIX.pattern


async def test_wire_reads_find_what_the_container_reads_find(
    both: tuple[WireReads, ContainerReads], make_container: MakeContainer
) -> None:
    wire, mirrored = both
    made = await make_container(ContainerState.RUNNING, pid=42)

    for ref in (made.id, made.id[:12], made.name, f"/{made.name}", "nope", "0" * 12):
        found, expected = await wire.find(ref), await mirrored.find(ref)
        assert (found is None) == (expected is None), ref
        if found is not None and expected is not None:
            assert (found.id, found.name, found.node) == (expected.id, expected.name, expected.node)


async def set_node(db_sessions: Sessions, name: str, assignments: str) -> None:
    """``UPDATE nodes SET <assignments>`` for the node ``name``."""
    async with db_sessions.begin() as session:
        await session.execute(text(f"UPDATE nodes SET {assignments} WHERE name = :n"), {"n": name})


async def assert_both_read(
    both: tuple[WireReads, ContainerReads], read: str, expected: dict[str, object]
) -> None:
    """Each reader's ``read`` of each node name is the expected answer."""
    for reader in both:
        for name, answer in expected.items():
            assert await getattr(reader, read)(name) == answer, (type(reader).__name__, name)


async def test_wire_reads_node_liveness_as_the_container_reads(
    both: tuple[WireReads, ContainerReads], db_sessions: Sessions, node: str, other_node: str
) -> None:
    await set_node(db_sessions, other_node, "last_seen_at = now() - interval '1 hour'")

    await assert_both_read(
        both, "node_is_live", {node: True, other_node: False, "no-such-node": False}
    )


async def test_wire_reads_node_endpoint_as_the_container_reads(
    both: tuple[WireReads, ContainerReads], db_sessions: Sessions, node: str, other_node: str
) -> None:
    await set_node(db_sessions, node, "endpoint = '127.0.0.1:4711'")
    await set_node(
        db_sessions,
        other_node,
        "endpoint = '127.0.0.1:4712', last_seen_at = now() - interval '1 hour'",
    )

    await assert_both_read(
        both, "node_endpoint", {node: "127.0.0.1:4711", other_node: None, "no-such-node": None}
    )


def test_wire_reads_of_an_unreachable_server_are_berth_failures_naming_it() -> None:
    port = closed_port()

    with pytest.raises(BerthFailure) as failure:
        WireReads.connect(f"postgresql+psycopg://postgres:pw@127.0.0.1:{port}/berth", 1.0, 0.0)

    message = str(failure.value)
    assert message.startswith(f"cannot connect to PostgreSQL at 127.0.0.1:{port}/berth: ")
    assert "refused" in message
    assert "pw" not in message
