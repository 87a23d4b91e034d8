"""The endpoint client's failures as the CLI reports them: exit 125 or the daemon's error."""

from __future__ import annotations

import grpc
from grpc.aio import Metadata

from berth.cli.context import Context, berth_failure, daemon_error
from berth.endpoint.client import (
    ERROR_TYPE_KEY,
    EndpointError,
    EndpointUnreachable,
    call_failure,
    endpoint_failure,
)


def rpc_error(code: grpc.StatusCode, details: str, error_type: str | None = None) -> Exception:
    trailing = Metadata((ERROR_TYPE_KEY, error_type)) if error_type else Metadata()
    return grpc.aio.AioRpcError(code, Metadata(), trailing, details)


def test_call_failure_tls_refused_is_unreachable() -> None:
    err = rpc_error(
        grpc.StatusCode.UNAVAILABLE,
        "failed to connect to all addresses; last error: Ssl handshake failed",
    )

    failure = call_failure(err, "10.0.0.5:7000")  # type: ignore[arg-type]

    assert isinstance(failure, EndpointUnreachable)
    assert "at 10.0.0.5:7000" in str(failure)
    assert "Ssl handshake failed" in str(failure)


def test_call_failure_unauthenticated_without_berth_type_is_unreachable() -> None:
    err = rpc_error(grpc.StatusCode.UNAUTHENTICATED, "no certificate")

    assert isinstance(call_failure(err), EndpointUnreachable)  # type: ignore[arg-type]


def test_call_failure_not_found_is_daemon_error_with_message() -> None:
    err = rpc_error(grpc.StatusCode.NOT_FOUND, "No such container: web-1", "NotFound")

    failure = call_failure(err)  # type: ignore[arg-type]

    assert isinstance(failure, EndpointError)
    assert str(failure) == "No such container: web-1"
    assert failure.code == grpc.StatusCode.NOT_FOUND
    assert failure.error_type == "NotFound"


def test_endpoint_failure_other_exception_is_none() -> None:
    assert endpoint_failure(ValueError("x")) is None


def test_cli_berth_failure_unreachable_endpoint_is_berth_failure() -> None:
    err = rpc_error(grpc.StatusCode.UNAVAILABLE, "Connection refused")

    assert berth_failure(err) == "cannot reach the node endpoint: Connection refused"
    assert berth_failure(EndpointUnreachable("node node-2 has no agent")) == (
        "node node-2 has no agent"
    )
    assert daemon_error(Context(), EndpointUnreachable("x")) is None


def test_cli_daemon_error_endpoint_answer_is_daemon_error_not_berth_failure() -> None:
    err = rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "container x is not running", "Conflict")

    assert berth_failure(err) is None
    assert daemon_error(Context(), err) == "container x is not running"
