"""Published ports: claimed per node before CNI's portmap maps them, released after.

A claim takes the node's advisory lock, so concurrent starts on one node see each other's
claims; the table's key (node, protocol, host port) holds even without it. Claiming again for
the same container returns its existing mappings (a retried step keeps the ports it picked).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from berth.contract import PortBinding
from berth.db.models import PortMapping
from berth.errors import Conflict

# Docker's default range for ports it picks (-P, or -p with no host port).
EPHEMERAL_PORTS = range(49153, 61000)

# Whether the node can take (host_ip, host_port, protocol): nothing else listens there.
PortFree = Callable[[str, int, str], bool]


def _describe(host_ip: str, host_port: int) -> str:
    return f"{host_ip or '0.0.0.0'}:{host_port}"


class PortRepository:
    """The port mappings of one deployment's nodes."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def claim(
        self,
        node: str,
        container_id: str,
        bindings: Sequence[PortBinding],
        port_free: PortFree,
        ephemeral: range = EPHEMERAL_PORTS,
    ) -> list[PortMapping]:
        """Record ``bindings`` for the container, picking host ports where none is given.

        Raises:
            Conflict: a host port is published by another container on this node, or taken by
                something else on the node; or no free port is left in ``ephemeral``.
        """
        await self._session.execute(
            select(func.pg_advisory_xact_lock(func.hashtext(f"ports:{node}")))
        )
        existing = await self.for_container(container_id)
        if existing:
            return existing
        rows = await self._session.execute(
            select(PortMapping.protocol, PortMapping.host_port, PortMapping.container_id).where(
                PortMapping.node == node
            )
        )
        taken = {(protocol, port): owner for protocol, port, owner in rows}
        made: list[PortMapping] = []
        for binding in bindings:
            port = binding.host_port or 0
            if port:
                owner = taken.get((binding.protocol, port))
                if owner is not None:
                    raise Conflict(
                        f"Bind for {_describe(binding.host_ip, port)} failed: port is already "
                        f"allocated (by container {owner[:12]} on node {node})"
                    )
                if not port_free(binding.host_ip, port, binding.protocol):
                    raise Conflict(
                        f"Bind for {_describe(binding.host_ip, port)} failed: port is already "
                        f"in use on node {node}"
                    )
            else:
                port = _pick(binding, taken, port_free, ephemeral, node)
            taken[(binding.protocol, port)] = container_id
            made.append(
                PortMapping(
                    node=node,
                    protocol=binding.protocol,
                    host_port=port,
                    host_ip=binding.host_ip,
                    container_id=container_id,
                    container_port=binding.container_port,
                )
            )
        self._session.add_all(made)
        await self._session.flush()
        return made

    async def for_container(self, container_id: str) -> list[PortMapping]:
        query = (
            select(PortMapping)
            .where(PortMapping.container_id == container_id)
            .order_by(PortMapping.container_port, PortMapping.protocol, PortMapping.host_port)
        )
        return list((await self._session.scalars(query)).all())

    async def on_node(self, node: str) -> list[PortMapping]:
        query = select(PortMapping).where(PortMapping.node == node)
        return list((await self._session.scalars(query)).all())

    async def release(self, container_id: str) -> None:
        """Forget the container's mappings (after they were removed from the node)."""
        await self._session.execute(
            delete(PortMapping).where(PortMapping.container_id == container_id)
        )


def _pick(
    binding: PortBinding,
    taken: dict[tuple[str, int], str],
    port_free: PortFree,
    ephemeral: range,
    node: str,
) -> int:
    """A free port of ``ephemeral``, from a random point on (as the kernel picks them)."""
    start = random.randrange(len(ephemeral))
    for offset in range(len(ephemeral)):
        port = ephemeral[(start + offset) % len(ephemeral)]
        if (binding.protocol, port) not in taken and port_free(
            binding.host_ip, port, binding.protocol
        ):
            return port
    raise Conflict(
        f"no free {binding.protocol} port left in {ephemeral.start}-{ephemeral.stop - 1} "
        f"on node {node}"
    )
