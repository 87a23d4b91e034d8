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

from berth.endpoint import exec as exec_service
from berth.endpoint import files, logs
from berth.endpoint.deps import EndpointDeps
from berth.endpoint.errors import CallGuard

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


def _host(address: str) -> str:
    return address.rsplit(":", 1)[0]


async def start_endpoint(deps: EndpointDeps) -> RunningEndpoint:
    """Serve the node's endpoint on ``settings.endpoint_address``."""
    settings = deps.settings
    # Every call logged with who asked; servicers raise berth.errors, answered as statuses.
    server = grpc.aio.server(interceptors=[CallGuard()])
    for register in SERVICES:
        register(server, deps)
    port = server.add_insecure_port(settings.endpoint_address)
    if port == 0:
        raise OSError(f"node endpoint: cannot listen on {settings.endpoint_address}")
    await server.start()
    address = settings.endpoint_advertise or f"{_host(settings.endpoint_address)}:{port}"
    log.info("node endpoint listening on %s", address)
    return RunningEndpoint(server, address)
