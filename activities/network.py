"""Step ``network``: a network namespace per container, its CNI attachment and /etc files.

Do: record the attachment (mode and netns path) and claim the published ports (bridge only;
a host port another container publishes or something on the node holds is a ``Conflict``; the
start's first step ``begin_start`` refused the common case already, before anything was made,
and this claim stays the authority when two starts race) in PostgreSQL, create the netns at
``<node>/netns/<id>``, run CNI ADD (bridge, with portmap's mappings) or bring up loopback
(none), record the IP, then write the container's ``/etc/hostname``, ``/etc/hosts`` and
``/etc/resolv.conf`` under ``<node>/containers/<id>`` (``berth.runtime.etc_files``; the spec
binds them). Host mode makes no namespace, only the files. Undo: CNI DEL (which frees the IP
and removes the port mappings even when the netns is already gone), remove the netns and the
files, forget the record and release the ports. Everything is derived from the container id,
so undo is safe when do never ran or half ran, and idempotent.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from berth.config import NodePaths
from berth.contract import NetworkMode
from berth.db.port_repository import PortRepository
from berth.db.repository import NetworkAttachmentRepository
from berth.faults import NO_FAULTS, FaultHook, fault_point
from berth.runtime.cni import CniNetwork, PortMap
from berth.runtime.etc_files import (
    EtcFiles,
    hosts_content,
    read_node_file,
    read_node_resolv_conf,
    remove_etc_files,
    resolv_conf_content,
    write_etc_files,
)
from berth.runtime.netns import create_netns, delete_netns
from berth.runtime.ports import port_free_on_node, published_ports
from berth.steps import AttachNetworkOutput, NetworkInput


class NetworkActivities:
    """Network namespaces and the node's CNI bridge network."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        cni: CniNetwork,
        paths: NodePaths,
        faults: FaultHook = NO_FAULTS,
        *,
        resolv_conf: Path = Path("/etc/resolv.conf"),
        hosts: Path = Path("/etc/hosts"),
    ) -> None:
        self._sessions = sessions
        self._cni = cni
        self._paths = paths
        self._faults = faults
        self._resolv_conf = resolv_conf
        self._hosts = hosts

    @activity.defn(name="attach_network")
    @fault_point("network")
    async def attach_network(self, request: NetworkInput) -> AttachNetworkOutput:
        """Record the attachment and claim the ports, then create the netns, attach it to the
        node's network (publishing the ports) and write the container's /etc files.

        Raises:
            Conflict: a host port is published by another container or held on the node.
        """
        netns = (
            None if request.mode is NetworkMode.HOST else self._paths.netns(request.container_id)
        )
        wanted = (
            published_ports(request.config.ports, request.config.publish_all, request.image_config)
            if request.config is not None and request.mode is NetworkMode.BRIDGE
            else []
        )
        # Ports other deployments on this host publish (they share its addresses), and ours.
        forwarded = await asyncio.to_thread(self._cni.forwarded_ports) if wanted else {}
        port_free = port_free_on_node(forwarded, request.container_id)
        async with self._sessions.begin() as session:
            await NetworkAttachmentRepository(session).intend(
                request.container_id, request.node, request.mode, str(netns) if netns else None
            )
            claimed = (
                await PortRepository(session).claim(
                    request.node, request.container_id, wanted, port_free
                )
                if wanted
                else []
            )
            ports = [PortMap(m.host_port, m.container_port, m.protocol, m.host_ip) for m in claimed]
        if netns is None:
            await asyncio.to_thread(self._write_etc_files, request, None)
            return AttachNetworkOutput(netns=None, ip=None)
        await asyncio.to_thread(create_netns, netns)
        ip = None
        if request.mode is NetworkMode.BRIDGE:
            attached = await asyncio.to_thread(
                self._cni.attach, request.container_id, netns, "eth0", ports
            )
            ip = attached.ip
        else:
            await asyncio.to_thread(self._cni.attach_loopback_only, netns, request.container_id)
        async with self._sessions.begin() as session:
            await NetworkAttachmentRepository(session).record_ip(request.container_id, ip)
        await asyncio.to_thread(self._write_etc_files, request, ip)
        return AttachNetworkOutput(netns=str(netns), ip=ip)

    def _write_etc_files(self, request: NetworkInput, ip: str | None) -> None:
        """The container's /etc/hostname, /etc/hosts and /etc/resolv.conf, from its config."""
        config = request.config
        hostname = (config.hostname if config else None) or request.container_id[:12]
        gateway = self._cni.gateway if request.mode is NetworkMode.BRIDGE else None
        host_network = request.mode is NetworkMode.HOST
        resolv = resolv_conf_content(
            read_node_resolv_conf(self._resolv_conf),
            config.dns if config else (),
            config.dns_search if config else (),
            config.dns_options if config else (),
            host_network=host_network,
        )
        base = read_node_file(self._hosts) if host_network else None
        write_etc_files(
            self._etc_files(request.container_id),
            {
                "hostname": f"{hostname}\n",
                "hosts": hosts_content(
                    hostname, ip, config.extra_hosts if config else (), gateway, base
                ),
                "resolv.conf": resolv,
            },
        )

    def _etc_files(self, container_id: str) -> EtcFiles:
        return EtcFiles(self._paths.container_dir(container_id))

    @activity.defn(name="detach_network")
    @fault_point("undo-network")
    async def detach_network(self, request: NetworkInput) -> None:
        """CNI DEL (even without a netns), remove the netns and the /etc files, forget the
        record and release the ports."""
        netns = self._paths.netns(request.container_id)
        if request.mode is NetworkMode.BRIDGE:
            # Claimed before they were published, released after: no record, no rules.
            async with self._sessions() as session:
                published = bool(await PortRepository(session).for_container(request.container_id))
            await asyncio.to_thread(
                self._cni.detach, request.container_id, netns, "eth0", published
            )
        if request.mode is not NetworkMode.HOST:
            await asyncio.to_thread(delete_netns, netns)
        await asyncio.to_thread(remove_etc_files, self._etc_files(request.container_id))
        async with self._sessions.begin() as session:
            await NetworkAttachmentRepository(session).forget(request.container_id)
            await PortRepository(session).release(request.container_id)
