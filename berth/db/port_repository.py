"""Published ports: claimed per node before CNI's portmap maps them, released after.

A claim takes the node's advisory lock, so concurrent starts on one node see each other's
claims; the table's key (node, protocol, host port) holds even without it. Claiming again for
the same container returns its existing mappings (a retried step keeps the ports it picked).
The claim is the authority; ``check_available`` is the same test without recording anything,
run by a start's first step so that the common conflict is refused before anything is made.
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
        taken = await self._taken(node)
        made: list[PortMapping] = []
        for binding in bindings:
            port = binding.host_port or 0
            if port:
                _check_fixed(binding, taken, port_free, node)
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

    async def check_available(
        self,
        node: str,
        container_id: str,
        bindings: Sequence[PortBinding],
        port_free: PortFree,
    ) -> None:
        """Refuse, as ``claim`` would, a fixed host port of ``bindings`` that another container
        publishes on ``node`` or that something on the node holds; records nothing.

        Raises:
            Conflict: as ``claim`` does for a fixed host port.
        """
        taken = {
            key: owner
            for key, owner in (await self._taken(node)).items()
            if owner != container_id  # a retried start's own ports are no conflict
        }
        for binding in bindings:
            if binding.host_port:
                _check_fixed(binding, taken, port_free, node)
                taken[(binding.protocol, binding.host_port)] = container_id

    async def nodes_publishing(self, bindings: Sequence[PortBinding]) -> set[str]:
        """The nodes where another container publishes a fixed host port of ``bindings``."""
        wanted = {(b.protocol, b.host_port) for b in bindings if b.host_port}
        if not wanted:
            return set()
        rows = await self._session.execute(
            select(PortMapping.node, PortMapping.protocol, PortMapping.host_port).where(
                PortMapping.host_port.in_({port for _, port in wanted})
            )
        )
        return {node for node, protocol, port in rows if (protocol, port) in wanted}

    async def _taken(self, node: str) -> dict[tuple[str, int], str]:
        """(protocol, host port) -> the container that publishes it on ``node``."""
        rows = await self._session.execute(
            select(PortMapping.protocol, PortMapping.host_port, PortMapping.container_id).where(
                PortMapping.node == node
            )
        )
        return {(protocol, port): owner for protocol, port, owner in rows}

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


def _check_fixed(
    binding: PortBinding, taken: dict[tuple[str, int], str], port_free: PortFree, node: str
) -> None:
    """Refuse the binding's host port when a container on the node has it or the node does."""
    port = binding.host_port or 0
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
