"""Reaching a container's node endpoint from any host: find its address, open a channel.

Light on purpose (the CLI imports it): grpc and the standard library only, no SDK, no ORM.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from berth.config import Settings
from berth.db.reads import ContainerReads, ContainerRow


class EndpointUnreachable(Exception):
    """The container's node has no live agent, or its endpoint is not recorded."""


@dataclass(frozen=True)
class NodeTarget:
    """A container and a channel to its node's endpoint."""

    container: ContainerRow
    endpoint: str
    channel: grpc.aio.Channel

    async def close(self) -> None:
        await self.channel.close()


def open_channel(settings: Settings, endpoint: str) -> grpc.aio.Channel:
    """A channel to ``endpoint`` (host:port) with the client's credentials from ``settings``."""
    del settings  # credentials: not yet
    return grpc.aio.insecure_channel(endpoint)


async def node_target(
    settings: Settings, reader: ContainerReads, container: ContainerRow
) -> NodeTarget:
    """A channel to the endpoint of ``container``'s node; ``EndpointUnreachable`` if none."""
    endpoint = await reader.node_endpoint(container.node)
    if endpoint is None:
        raise EndpointUnreachable(
            f"node {container.node} of container {container.name} has no running agent endpoint"
        )
    return NodeTarget(container, endpoint, open_channel(settings, endpoint))
