"""The node endpoint's ``Files`` service (berth/node_api/files.proto)."""

from __future__ import annotations

import grpc

from berth.endpoint.deps import EndpointDeps


def register(server: grpc.aio.Server, deps: EndpointDeps) -> None:
    """Add the ``Files`` servicer to ``server``."""
    del server, deps  # not served yet
