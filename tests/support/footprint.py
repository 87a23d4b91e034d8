"""What one container holds on its node, read from the kernel, CNI, containerd and PostgreSQL.

Tests use it to prove that a start made exactly what it should and a failed start left nothing;
a leak checker compares footprints with what PostgreSQL says should exist.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from berth.config import NodePaths
from berth.db.models import MountHolder, NetworkAttachment
from berth.db.port_repository import PortRepository
from berth.errors import NotFound
from berth.runtime.cni import CniNetwork
from berth.runtime.containerd import ContainerdClient
from berth.runtime.mounts import mount_table
from berth.runtime.netns import netns_exists


@dataclass(frozen=True)
class Footprint:
    """Every trace of one container on its node."""

    rootfs_mounts: int
    netns: bool
    ips: list[str]
    containerd_container: bool
    task_status: str | None
    mount_holders: list[str] = field(default_factory=list)
    network_attachment: bool = False
    # The container's directory of generated /etc files (hosts, hostname, resolv.conf).
    etc_files: bool = False
    # Host ports PostgreSQL records for it ("18080/tcp"), and whether portmap's rules exist.
    ports: list[str] = field(default_factory=list)
    port_forward: bool = False

    @property
    def empty(self) -> bool:
        """Nothing at all is left: no mount, netns, IP, /etc files, port, containerd object or
        record."""
        return self == Footprint(0, False, [], False, None)


async def footprint(
    container_id: str,
    paths: NodePaths,
    containerd: ContainerdClient,
    cni: CniNetwork,
    sessions: async_sessionmaker[AsyncSession],
) -> Footprint:
    """Read the container's footprint from every source."""
    target = paths.rootfs(container_id)
    table = await asyncio.to_thread(mount_table)
    mounts = sum(1 for entry in table if entry.mount_point == target)
    ips = [
        ip
        for ip, owner in (await asyncio.to_thread(cni.reservations)).items()
        if owner == container_id
    ]
    try:
        status: str | None = (await containerd.get_task(container_id)).status
    except NotFound:
        status = None
    async with sessions() as session:
        holders = await session.scalars(
            select(MountHolder.holder).where(MountHolder.container_id == container_id)
        )
        attachment = await session.get(NetworkAttachment, container_id)
        holder_list = sorted(holders.all())
        ports = sorted(
            f"{m.host_port}/{m.protocol}"
            for m in await PortRepository(session).for_container(container_id)
        )
    return Footprint(
        rootfs_mounts=mounts,
        netns=await asyncio.to_thread(netns_exists, paths.netns(container_id)),
        ips=ips,
        containerd_container=container_id in await containerd.list_containers(),
        task_status=status,
        mount_holders=holder_list,
        network_attachment=attachment is not None,
        etc_files=await asyncio.to_thread(paths.container_dir(container_id).exists),
        ports=ports,
        port_forward=container_id in await asyncio.to_thread(cni.port_forwards),
    )
