"""What the node endpoint's services are built from: the agent's own dependencies."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from berth.config import NodePaths, Settings
from berth.runtime.containerd import ContainerdClient


@dataclass(frozen=True)
class EndpointDeps:
    """The node agent's settings, paths, database sessions and containerd client."""

    settings: Settings
    paths: NodePaths
    sessions: async_sessionmaker[AsyncSession]
    containerd: ContainerdClient
