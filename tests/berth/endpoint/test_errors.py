"""The endpoint's interceptor on a real grpc.aio server: errors answered as statuses, calls logged.

The servicers here are tiny generic handlers of this file (raw bytes in and out), registered
only on the test's own server.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from berth.endpoint.client import (
    ERROR_TYPE_KEY,
    EndpointError,
    EndpointUnreachable,
    call_failure,
)
from berth.endpoint.errors import INTERNAL_MESSAGE, CallGuard
from berth.errors import (
    BerthError,
    Conflict,
    Forbidden,
    InvalidParameter,
    NotFound,
    System,
    Unavailable,
)

SERVICE = "berth.test.Tiny"


async def raise_it(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise ERRORS[request.decode()]


async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


async def two_then_fail(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    yield b"one"
    yield b"two"
    raise ERRORS[request.decode()]


async def write_then_fail(request: bytes, context: grpc.aio.ServicerContext) -> None:
    await context.write(b"one")
    raise ERRORS[request.decode()]


async def count_then_fail(
    requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request
    raise NotFound("no such container: gone")


async def abort_itself(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    await context.abort(grpc.StatusCode.OUT_OF_RANGE, "its own status")
    raise AssertionError("abort returned")


# Set by ``endless`` when its generator is closed (the servicer's own clean-up ran).
CLOSED = asyncio.Event()


async def endless(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    try:
        while True:
            yield b"tick"
            await asyncio.sleep(0.01)
    finally:
        CLOSED.set()


ERRORS: dict[str, Exception] = {
    "NotFound": NotFound("no such container: x"),
    "InvalidParameter": InvalidParameter("tail: not a number"),
    "Conflict": Conflict("container x is not running"),
    "Forbidden": Forbidden("no"),
    "Unavailable": Unavailable("containerd on node-1 is down"),
    "System": System("runc failed at /var/lib/secret"),
    "KeyError": KeyError("/var/lib/secret"),
}


def handlers() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Raise": grpc.unary_unary_rpc_method_handler(raise_it),
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
            "Generate": grpc.unary_stream_rpc_method_handler(two_then_fail),
            "Write": grpc.unary_stream_rpc_method_handler(write_then_fail),
            "Chat": grpc.stream_stream_rpc_method_handler(count_then_fail),
            "Abort": grpc.unary_unary_rpc_method_handler(abort_itself),
            "Endless": grpc.unary_stream_rpc_method_handler(endless),
        },
    )


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server(interceptors=[CallGuard()])
    server.add_generic_rpc_handlers((handlers(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as opened:
        yield opened
    await server.stop(None)


def method(channel: grpc.aio.Channel, name: str) -> Callable[..., Any]:
    return channel.unary_unary(f"/{SERVICE}/{name}")


async def failure_of(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


async def streamed_until_failure(
    call: AsyncIterator[bytes],
) -> tuple[list[bytes], grpc.aio.AioRpcError]:
    """The responses a streaming call gave before it failed, and its failure."""
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for response in call:
            received.append(response)
    return received, raised.value


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ("NotFound", grpc.StatusCode.NOT_FOUND),
        ("InvalidParameter", grpc.StatusCode.INVALID_ARGUMENT),
        ("Conflict", grpc.StatusCode.FAILED_PRECONDITION),
        ("Forbidden", grpc.StatusCode.PERMISSION_DENIED),
        ("Unavailable", grpc.StatusCode.UNAVAILABLE),
    ],
)
async def test_call_guard_berth_error_in_unary_is_its_status_with_message_and_type(
    channel: grpc.aio.Channel, error: str, code: grpc.StatusCode
) -> None:
    err = await failure_of(method(channel, "Raise")(error.encode()))

    raised = ERRORS[error]
    assert isinstance(raised, BerthError)
    assert err.code() == code
    assert err.details() == raised.message
    assert (ERROR_TYPE_KEY, error) in list(err.trailing_metadata())


async def test_call_guard_system_error_is_internal_with_its_message_and_type(
    channel: grpc.aio.Channel,
) -> None:
    err = await failure_of(method(channel, "Raise")(b"System"))

    assert err.code() == grpc.StatusCode.INTERNAL
    assert err.details() == "runc failed at /var/lib/secret"
    assert (ERROR_TYPE_KEY, "System") in list(err.trailing_metadata())


async def test_call_guard_non_berth_error_is_internal_generic_with_traceback_logged(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="berth.endpoint.errors"):
        err = await failure_of(method(channel, "Raise")(b"KeyError"))

    assert err.code() == grpc.StatusCode.INTERNAL
    assert err.details() == INTERNAL_MESSAGE
    assert ERROR_TYPE_KEY not in dict(err.trailing_metadata())
    failed = [record for record in caplog.records if record.exc_info]
    assert failed and isinstance(failed[0].exc_info[1], KeyError)  # type: ignore[index]


@pytest.mark.parametrize(
    ("method_name", "requests", "responses", "code", "details"),
    [
        # An error raised after the generator yielded responses.
        (
            "Generate",
            b"Conflict",
            [b"one", b"two"],
            "FAILED_PRECONDITION",
            "container x is not running",
        ),
        # An error raised after context.write.
        ("Write", b"NotFound", [b"one"], "NOT_FOUND", "no such container: x"),
        # An error in a bidirectional stream, after echoing what came in.
        ("Chat", [b"a", b"b"], [b"a", b"b"], "NOT_FOUND", "no such container: gone"),
    ],
    ids=["server-stream", "context-write", "bidirectional"],
)
async def test_call_guard_error_mid_stream_keeps_the_responses_and_is_its_status(
    channel: grpc.aio.Channel,
    method_name: str,
    requests: bytes | list[bytes],
    responses: list[bytes],
    code: str,
    details: str,
) -> None:
    path = f"/{SERVICE}/{method_name}"
    if isinstance(requests, list):
        call = channel.stream_stream(path)(iter(requests))
    else:
        call = channel.unary_stream(path)(requests)

    received, failure = await streamed_until_failure(call)

    assert received == responses
    assert failure.code() == getattr(grpc.StatusCode, code)
    assert failure.details() == details


async def test_call_guard_servicer_abort_keeps_its_own_status(channel: grpc.aio.Channel) -> None:
    err = await failure_of(method(channel, "Abort")(b""))

    assert err.code() == grpc.StatusCode.OUT_OF_RANGE
    assert err.details() == "its own status"


async def test_call_guard_success_is_logged_with_method_and_peer(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="berth.endpoint.errors"):
        answer = await method(channel, "Echo")(b"hi")

    assert answer == b"hi"
    lines = [record.getMessage() for record in caplog.records]
    assert any(f"/{SERVICE}/Echo from ipv4:127.0.0.1:" in line for line in lines)


async def test_call_failure_berth_unavailable_is_the_daemons_error_not_unreachable(
    channel: grpc.aio.Channel,
) -> None:
    err = await failure_of(method(channel, "Raise")(b"Unavailable"))

    failure = call_failure(err, "127.0.0.1:1")

    assert isinstance(failure, EndpointError)
    assert str(failure) == "containerd on node-1 is down"
    assert failure.error_type == "Unavailable"


async def test_call_failure_unknown_method_is_a_daemon_error(channel: grpc.aio.Channel) -> None:
    err = await failure_of(method(channel, "Missing")(b""))

    failure = call_failure(err)

    assert isinstance(failure, EndpointError)
    assert failure.code == grpc.StatusCode.UNIMPLEMENTED
    assert failure.error_type is None


async def test_call_failure_nothing_listening_is_unreachable_naming_the_address() -> None:
    with socket.socket() as bound:  # bound, then closed: nothing listens there
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as closed:
        err = await failure_of(method(closed, "Echo")(b""))

    failure = call_failure(err, f"127.0.0.1:{port}")

    assert isinstance(failure, EndpointUnreachable)
    assert str(failure).startswith(f"cannot reach the node endpoint at 127.0.0.1:{port}: ")


async def test_call_guard_client_leaving_mid_stream_closes_servicer_generator_at_once(
    channel: grpc.aio.Channel,
) -> None:
    CLOSED.clear()
    call = channel.unary_stream(f"/{SERVICE}/Endless")(b"")
    assert await call.read() == b"tick"

    call.cancel()

    await asyncio.wait_for(CLOSED.wait(), 5)
