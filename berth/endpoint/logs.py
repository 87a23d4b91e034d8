"""The node endpoint's ``Logs`` service (berth/node_api/logs.proto)."""

from __future__ import annotations

import grpc

from berth.endpoint.deps import EndpointDeps


def register(server: grpc.aio.Server, deps: EndpointDeps) -> None:
    """Add the ``Logs`` servicer to ``server``."""
    del server, deps  # not served yet
