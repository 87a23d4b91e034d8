"""Reads for ``berth node ls`` and the ports ``ps``/``inspect`` show, in plain SQL.

Light like :mod:`berth.db.reads` (its driver and the standard library only), on its connection:
``NodeReads`` is a ``ContainerReads`` with the node and port queries added.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime

from berth.db.reads import NODE_LIVENESS_SECONDS, ContainerReads


@dataclass(frozen=True)
class NodeUsageRow:
    """One node's use: its containers and the addresses its subnet has left."""

    name: str
    bridge: str
    subnet: str
    last_seen_at: datetime
    live: bool
    containers: int
    running: int
    ips_used: int

    @property
    def ips_total(self) -> int:
        """Addresses host-local hands out: the subnet less network, gateway and broadcast."""
        return max(ipaddress.ip_network(self.subnet, strict=False).num_addresses - 3, 0)

    @property
    def ips_free(self) -> int:
        return max(self.ips_total - self.ips_used, 0)


@dataclass(frozen=True)
class PortRow:
    """A ``port_mappings`` row (``berth.db.models.PortMapping``)."""

    node: str
    protocol: str
    host_port: int
    host_ip: str
    container_id: str
    container_port: int


_USAGE = """
SELECT n.name, n.bridge, n.subnet, n.last_seen_at,
       n.last_seen_at > now() - %s * interval '1s' AS live,
       coalesce(c.total, 0) AS containers, coalesce(c.live, 0) AS running,
       coalesce(a.used, 0) AS ips_used
FROM nodes n
LEFT JOIN (SELECT node, count(*) AS total,
                  count(*) FILTER (WHERE state IN ('running', 'paused')) AS live
           FROM containers GROUP BY node) c ON c.node = n.name
LEFT JOIN (SELECT node, count(*) AS used FROM network_attachments
           WHERE ip IS NOT NULL GROUP BY node) a ON a.node = n.name
ORDER BY n.name
"""
_PORTS = (
    "SELECT node, protocol, host_port, host_ip, container_id, container_port FROM port_mappings"
)


class NodeReads(ContainerReads):
    """``ContainerReads`` plus nodes' use and published ports."""

    async def node_usage(self) -> list[NodeUsageRow]:
        """Every node with its containers (all, running or paused) and the IPs they hold."""
        rows: list[NodeUsageRow] = await self._rows(NodeUsageRow, _USAGE, (NODE_LIVENESS_SECONDS,))
        return rows

    async def ports(self, container_id: str | None = None) -> list[PortRow]:
        """The published ports of one container, or of all."""
        order = " ORDER BY container_id, container_port, protocol, host_port"
        if container_id is None:
            rows: list[PortRow] = await self._rows(PortRow, _PORTS + order)
        else:
            rows = await self._rows(
                PortRow, f"{_PORTS} WHERE container_id = %s{order}", (container_id,)
            )
        return rows
