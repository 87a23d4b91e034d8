"""What the node endpoint's services are built from: the agent's own dependencies."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from berth.config import NodePaths, Settings
from berth.endpoint.exec_owners import AgentExecs
from berth.runtime.containerd import ContainerdClient


@dataclass(frozen=True)
class EndpointDeps:
    """The node agent's settings, paths, database sessions and containerd client, and the execs
    its calls run (shared with the node's reconciler, which leaves them alone)."""

    settings: Settings
    paths: NodePaths
    sessions: async_sessionmaker[AsyncSession]
    containerd: ContainerdClient
    execs: AgentExecs = field(default_factory=AgentExecs)
