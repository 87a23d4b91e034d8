"""The node endpoint's gRPC server, run by the node agent beside its Temporal worker.

Each service module (``logs``, ``exec``, ``files``) has ``register(server, deps)``, which adds
its servicer; :data:`SERVICES` lists them. The server listens on ``endpoint_address`` and the
address it got (port 0 picks one) is what the agent records with its heartbeat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from berth.config import Settings
from berth.endpoint import exec as exec_service
from berth.endpoint import files, logs
from berth.endpoint.deps import EndpointDeps
from berth.endpoint.errors import CallGuard
from berth.endpoint.tls import (
    TlsSettingsError,
    dev_directory,
    is_loopback,
    split_address,
    tls_files,
)
from berth.errors import Forbidden, InvalidParameter

log = logging.getLogger(__name__)

SERVICES: tuple[Callable[[grpc.aio.Server, EndpointDeps], None], ...] = (
    logs.register,
    exec_service.register,
    files.register,
)
# How long a stopping agent lets calls in flight finish (a follow or an exec is cut then).
GRACE_SECONDS = 2.0


@dataclass
class RunningEndpoint:
    """A started endpoint and the address clients reach it at."""

    server: grpc.aio.Server
    address: str

    async def stop(self) -> None:
        await self.server.stop(GRACE_SECONDS)


def advertised_address(settings: Settings, port: int) -> str:
    """What the agent records for clients: ``endpoint_advertise``, else the host it listens on
    with the port it got.

    Raises:
        InvalidParameter: it listens on a wildcard address (every interface) and nothing says
            which one clients reach (a client cannot dial 0.0.0.0, nor check a certificate
            against it).
    """
    if settings.endpoint_advertise:
        return settings.endpoint_advertise
    host, _ = split_address(settings.endpoint_address)
    if host in ("", "0.0.0.0", "::"):
        raise InvalidParameter(
            f"node endpoint: {settings.endpoint_address} listens on every address; set"
            " endpoint_advertise to the host:port clients reach it at"
        )
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """The node's mTLS credentials: its pair, and client certificates required and checked
    against the deployment's CA. None (plaintext) only for a loopback address with
    ``endpoint_insecure_loopback`` set.

    Raises:
        Forbidden: no TLS material (no settings, no dev stack files) and no explicit
            ``endpoint_insecure_loopback`` for a loopback address: the endpoint is not served.
        InvalidParameter: the TLS settings are incomplete or a file cannot be read.
    """
    address = settings.endpoint_address
    if settings.endpoint_insecure_loopback:
        if not is_loopback(address):
            raise Forbidden(
                f"node endpoint: endpoint_insecure_loopback does not apply to {address}, which"
                " is not a loopback address; set endpoint_tls_ca_file, endpoint_tls_cert_file"
                " and endpoint_tls_key_file"
            )
        log.warning("node endpoint on %s serves WITHOUT TLS (endpoint_insecure_loopback)", address)
        return None
    try:
        files = tls_files(settings, "node")
        if files is None:
            raise Forbidden(
                f"node endpoint: no TLS certificate to serve {address} with: set"
                " endpoint_tls_ca_file, endpoint_tls_cert_file and endpoint_tls_key_file (the dev"
                f" stack writes its own under {dev_directory(settings.state_dir)})"
            )
        ca, cert, key = files.read()
    except (OSError, TlsSettingsError) as err:
        raise InvalidParameter(f"node endpoint TLS: {err}") from None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )


async def start_endpoint(deps: EndpointDeps) -> RunningEndpoint:
    """Serve the node's endpoint on ``settings.endpoint_address`` with mTLS (see
    :func:`server_credentials`), every call through :class:`CallGuard`."""
    settings = deps.settings
    credentials = server_credentials(settings)
    advertised_address(settings, 0)  # refused before listening, not after
    # Every call logged with who asked; servicers raise berth.errors, answered as statuses.
    server = grpc.aio.server(interceptors=[CallGuard()])
    for register in SERVICES:
        register(server, deps)
    if credentials is None:
        port = server.add_insecure_port(settings.endpoint_address)
    else:
        port = server.add_secure_port(settings.endpoint_address, credentials)
    if port == 0:
        raise OSError(f"node endpoint: cannot listen on {settings.endpoint_address}")
    await server.start()
    address = advertised_address(settings, port)
    tls = "mTLS" if credentials is not None else "plaintext"
    log.info("node endpoint listening on %s (%s)", address, tls)
    return RunningEndpoint(server, address)
