"""Reaching a container's node endpoint from any host: find its address, open a channel, and
tell the endpoint's answers from the failures to reach it.

Light on purpose (the CLI imports it): grpc and the standard library only, no SDK, no ORM, no
asyncpg, no pydantic (``settings`` is anything with the fields of
``berth.endpoint.tls.EndpointSettings``).

The CLI's exit codes follow docker's: :class:`EndpointUnreachable` (no agent, a refused
connection or TLS handshake, no usable client certificate) is Berth's own failure, exit 125;
:class:`EndpointError` is the daemon's answer (``Error response from daemon: <message>``),
exit 1. :func:`call_failure` makes one of them from a ``grpc.aio.AioRpcError``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import grpc

from berth.endpoint.placement import Placement
from berth.endpoint.tls import EndpointSettings, TlsSettingsError, is_loopback, tls_files

# Trailing metadata the endpoint's interceptor sets on a Berth error: its type ("NotFound"...).
ERROR_TYPE_KEY = "berth-error-type"
# Statuses that, without the key above, come from the channel, not from a servicer.
_TRANSPORT_STATUSES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)


class EndpointUnreachable(Exception):
    """Berth cannot reach the node endpoint: no live agent or address, a refused connection or
    TLS handshake, or no usable client certificate. The CLI exits 125."""


class EndpointError(Exception):
    """The node endpoint answered with an error. The CLI prints ``Error response from daemon:``
    and the message, and exits 1.

    Attributes:
        code: the call's gRPC status.
        error_type: the Berth error's type name (``NotFound``...), or None when the status did
            not come from a Berth error (an older agent without the method, an internal error).
    """

    def __init__(self, message: str, code: grpc.StatusCode, error_type: str | None) -> None:
        super().__init__(message)
        self.code = code
        self.error_type = error_type


def _error_type(err: grpc.aio.AioRpcError) -> str | None:
    for key, value in err.trailing_metadata() or ():
        if key == ERROR_TYPE_KEY:
            return str(value)
    return None


def call_failure(
    err: grpc.aio.AioRpcError, endpoint: str | None = None
) -> EndpointUnreachable | EndpointError:
    """What a failed call to the endpoint at ``endpoint`` means for the caller (see the module)."""
    code = err.code()
    details = err.details() or code.name
    error_type = _error_type(err)
    if error_type is None and code in _TRANSPORT_STATUSES:
        where = f" at {endpoint}" if endpoint else ""
        return EndpointUnreachable(f"cannot reach the node endpoint{where}: {details}")
    if code is grpc.StatusCode.UNIMPLEMENTED:
        details = f"the node endpoint does not serve this call (an older agent?): {details}"
    return EndpointError(details, code, error_type)


def endpoint_failure(err: BaseException) -> EndpointUnreachable | EndpointError | None:
    """``err`` as an endpoint failure (translated if it is a bare ``AioRpcError``), or None."""
    if isinstance(err, EndpointUnreachable | EndpointError):
        return err
    if isinstance(err, grpc.aio.AioRpcError):
        return call_failure(err)
    return None


def open_channel(settings: EndpointSettings, endpoint: str) -> grpc.aio.Channel:
    """A channel to ``endpoint`` (host:port) that presents the client's certificate and checks
    the node's against the deployment's CA (plaintext only to a loopback endpoint, and only
    with ``endpoint_insecure_loopback``, as the agent serves it then).

    Raises:
        EndpointUnreachable: no client certificate is configured or it cannot be read.
    """
    if settings.endpoint_insecure_loopback and is_loopback(endpoint):
        return grpc.aio.insecure_channel(endpoint)
    try:
        files = tls_files(settings, "client")
        if files is None:
            raise EndpointUnreachable(
                "no client certificate for the node endpoint: set BERTH_ENDPOINT_TLS_CA_FILE,"
                " BERTH_ENDPOINT_TLS_CERT_FILE and BERTH_ENDPOINT_TLS_KEY_FILE"
                f" (the dev stack's are in {settings.state_dir}/endpoint)"
            )
        ca, cert, key = files.read()
    except (OSError, TlsSettingsError) as err:
        raise EndpointUnreachable(f"node endpoint TLS: {err}") from None
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )
    return grpc.aio.secure_channel(endpoint, credentials)


class EndpointReads(Protocol):
    """Where a node's endpoint is (``ContainerReads`` on asyncpg, or the CLI's ``WireReads``
    on ``berth.db.wire``, which spares a verb asyncpg's import)."""

    async def node_endpoint(self, node: str) -> str | None: ...


@dataclass(frozen=True)
class NodeTarget:
    """A container and a channel to its node's endpoint."""

    container: Placement
    endpoint: str
    channel: grpc.aio.Channel

    @contextlib.contextmanager
    def calls(self) -> Iterator[None]:
        """Raise a failed call inside as :class:`EndpointUnreachable` or
        :class:`EndpointError` naming this endpoint (see :func:`call_failure`)."""
        try:
            yield
        except grpc.aio.AioRpcError as err:
            raise call_failure(err, self.endpoint) from None

    async def close(self) -> None:
        await self.channel.close()


async def node_target(
    settings: EndpointSettings, reader: EndpointReads, container: Placement
) -> NodeTarget:
    """A channel to the endpoint of ``container``'s node; ``EndpointUnreachable`` if none."""
    endpoint = await reader.node_endpoint(container.node)
    if endpoint is None:
        raise EndpointUnreachable(
            f"node {container.node} of container {container.name} has no running agent endpoint"
        )
    return NodeTarget(container, endpoint, open_channel(settings, endpoint))
