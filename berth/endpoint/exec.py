"""The node endpoint's ``Exec`` service (berth/node_api/exec.proto)."""

from __future__ import annotations

import grpc

from berth.endpoint.deps import EndpointDeps


def register(server: grpc.aio.Server, deps: EndpointDeps) -> None:
    """Add the ``Exec`` servicer to ``server``."""
    del server, deps  # not served yet
