"""The client's transport errors: typed ``Unavailable`` naming the address, waited out a while."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from temporalio.service import RPCError, RPCStatusCode

from berth.client import BerthClient, call_error, connect, wait_out
from berth.config import Settings
from berth.db.session import make_engine
from berth.errors import Forbidden, NotFound, Unavailable

ADDRESS = "temporal.example:7233"


def closed_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    "status",
    [RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.RESOURCE_EXHAUSTED],
)
def test_call_error_transient_status_is_unavailable_naming_the_address(
    status: RPCStatusCode,
) -> None:
    error = call_error(ADDRESS, RPCError("frontend restarting", status, b""))

    assert isinstance(error, Unavailable)
    assert ADDRESS in error.message


def test_call_error_refused_identity_is_forbidden() -> None:
    error = call_error(ADDRESS, RPCError("no", RPCStatusCode.PERMISSION_DENIED, b""))

    assert isinstance(error, Forbidden)


def test_call_error_other_status_is_left_to_the_caller() -> None:
    assert call_error(ADDRESS, RPCError("no such run", RPCStatusCode.NOT_FOUND, b"")) is None


def test_call_error_connection_dropped_under_the_call_is_unavailable() -> None:
    # What the SDK raises from a result poll when the frontend is killed mid-call.
    error = call_error(ADDRESS, RPCError("transport error", RPCStatusCode.UNKNOWN, b""))

    assert isinstance(error, Unavailable)
    assert ADDRESS in error.message


def test_call_error_other_unknown_status_is_left_to_the_caller() -> None:
    assert call_error(ADDRESS, RPCError("boom", RPCStatusCode.UNKNOWN, b"")) is None


async def test_wait_out_unavailable_that_clears_returns_the_result() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Unavailable("restarting")
        return "answer"

    assert await wait_out(5, flaky) == "answer"
    assert calls == 3


async def test_wait_out_unavailable_past_the_bound_raises_it() -> None:
    async def down() -> str:
        raise Unavailable("still down")

    began = time.monotonic()
    with pytest.raises(Unavailable, match="still down"):
        await wait_out(0.5, down)
    assert time.monotonic() - began < 3


async def test_wait_out_other_errors_are_not_retried() -> None:
    calls = 0

    async def missing() -> str:
        nonlocal calls
        calls += 1
        raise NotFound("no such container")

    with pytest.raises(NotFound):
        await wait_out(5, missing)
    assert calls == 1


async def test_connect_closed_temporal_port_waits_the_bound_then_is_unavailable() -> None:
    address = f"127.0.0.1:{closed_loopback_port()}"

    began = time.monotonic()
    with pytest.raises(Unavailable, match=address):
        await connect(Settings(temporal_address=address, client_wait_seconds=1.5))
    waited = time.monotonic() - began

    assert 1.0 <= waited < 10


async def test_connect_temporal_back_within_the_bound_connects() -> None:
    # Nothing listens at first; a server that refuses nothing but speaks no gRPC is enough to
    # show the wait ended on a different failure than a closed port.
    port = closed_loopback_port()
    address = f"127.0.0.1:{port}"

    async def open_later() -> asyncio.Server:
        await asyncio.sleep(1.0)
        return await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)

    opening = asyncio.ensure_future(open_later())
    began = time.monotonic()
    with pytest.raises(Unavailable) as raised:
        await connect(Settings(temporal_address=address, client_wait_seconds=20))
    server = await opening
    server.close()
    await server.wait_closed()

    assert time.monotonic() - began < 15  # stopped waiting once the port answered
    assert "Connection refused" not in raised.value.message


async def test_client_calls_of_one_operation_share_one_waiting_bound() -> None:
    # Two calls of one operation against a frontend that stays down wait 0.6 s in all, not each.
    settings = Settings(client_wait_seconds=30)
    engine = make_engine(settings.database_url)  # never connects: no PostgreSQL call here
    client = BerthClient(None, engine, settings)  # type: ignore[arg-type]

    async def down() -> str:
        raise RPCError("tcp connect error", RPCStatusCode.UNAVAILABLE, b"")

    deadline = asyncio.get_running_loop().time() + 0.6
    began = time.monotonic()
    for _ in range(2):
        with pytest.raises(Unavailable):
            await client._temporal_call(down, deadline)
    assert time.monotonic() - began < 1.5
    await engine.dispose()
