"""The leak checker: what one node holds, compared with what PostgreSQL says it should hold.

It lists the kernel's mounts under the node's rootfs dir, its network namespace files, the
containers' generated /etc files, the CNI IPAM reservations and portmap's port forwards,
containerd's containers and tasks in Berth's namespace, the runc shims of the node's containerd
in that namespace (:mod:`berth.runtime.shims`) and the containers' cgroups
(:mod:`berth.runtime.cgroups`), and PostgreSQL's mount holders, network attachments, port
mappings and container states, and the node's named volumes (a directory under
``<workload root>/volumes`` against the ``volumes`` rows), and reports every disagreement as a
:class:`Finding`. Tests
assert that a node has none once a saga ended; the reconciler repairs what it finds.

A container whose ``operation`` is set, or whose state is transient (``starting``, ``stopping``,
``removing``), is in flight: its resources are not judged, and it is reported once as
``OPERATION_IN_FLIGHT`` so a test sees a saga that did not end.

A containerd lease of a pull (``berth-pull-<owner>``) outlives its pull only when the pull
crashed or was cut short and nothing dropped it: one whose owner is a container of this node that
no operation holds (or no container at all) is reported, since until it expires it keeps what
the pull wrote from containerd's garbage collector.

A mount holder of a node endpoint call (``endpoint:<agent>:<call>``, a cp or a streamed export)
is a leak once the agent process it names is gone (:mod:`berth.endpoint.holders`). So is a node
endpoint exec (``berth-exec-<agent>-…``) in a running task, or its FIFO directory, once the agent
process its id names is gone (:mod:`berth.endpoint.exec_owners`); a live agent's are its own
business (the reconciler, run by that agent, removes those no call of it runs).

A shim or a cgroup is a leak when containerd lists no task for its container (a shim that a
killed containerd lost, the cgroup a killed task left). The cgroup parent is shared by every
deployment on the machine, so only the cgroups of containers this node's records name (its
containers, containerd objects, shims, or its event history) are judged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from berth.config import NodePaths
from berth.contract import ContainerState
from berth.db.models import Container, MountHolder, NetworkAttachment
from berth.db.port_repository import PortRepository
from berth.db.repository import (
    ContainerRepository,
    MountHolderRepository,
    NetworkAttachmentRepository,
)
from berth.db.volume_repository import VolumeRepository
from berth.endpoint.exec_owners import endpoint_execs, exec_dirs
from berth.endpoint.holders import (
    endpoint_exec_alive,
    endpoint_holder_alive,
    is_endpoint_exec,
    is_endpoint_holder,
)
from berth.runtime.cgroups import container_cgroups
from berth.runtime.cni import CniNetwork
from berth.runtime.containerd import ContainerdClient, TaskInfo
from berth.runtime.mounts import mounts_under
from berth.runtime.netns import list_netns, netns_exists
from berth.runtime.pull import PULL_LEASE_PREFIX
from berth.runtime.shims import ShimProcess, list_shims, wait_shim_gone
from berth.runtime.types import TaskStatus
from berth.state_machine import LIVE_STATES
from berth.volumes_host import volume_dir, volume_names

# The holder a running task keeps (berth.activities.mount.TASK_HOLDER; not imported: no
# layering back).
TASK_HOLDER = "task"
TRANSIENT_STATES = frozenset(
    {ContainerState.STARTING, ContainerState.STOPPING, ContainerState.REMOVING}
)


class LeakKind(StrEnum):
    """Each way the host and PostgreSQL can disagree."""

    MOUNT_WITHOUT_HOLDER = "mount-without-holder"
    HOLDER_WITHOUT_MOUNT = "holder-without-mount"
    HOLDER_OF_UNKNOWN_CONTAINER = "holder-of-unknown-container"
    HOLDER_OF_ENDED_CALL = "holder-of-ended-call"
    TASK_HOLDER_OF_IDLE_CONTAINER = "task-holder-of-idle-container"
    NETNS_WITHOUT_ATTACHMENT = "netns-without-attachment"
    ATTACHMENT_WITHOUT_NETNS = "attachment-without-netns"
    ATTACHMENT_OF_IDLE_CONTAINER = "attachment-of-idle-container"
    IP_WITHOUT_ATTACHMENT = "ip-without-attachment"
    IP_NOT_RECORDED = "ip-not-recorded"
    CONTAINERD_CONTAINER_UNKNOWN = "containerd-container-unknown"
    TASK_UNKNOWN = "task-unknown"
    TASK_MISSING = "task-missing"
    OPERATION_IN_FLIGHT = "operation-in-flight"
    SHIM_WITHOUT_TASK = "shim-without-task"
    CGROUP_WITHOUT_TASK = "cgroup-without-task"
    LEASE_OF_ENDED_PULL = "lease-of-ended-pull"
    ETC_FILES_OF_IDLE_CONTAINER = "etc-files-of-idle-container"
    PORTS_OF_IDLE_CONTAINER = "ports-of-idle-container"
    PORT_FORWARD_OF_IDLE_CONTAINER = "port-forward-of-idle-container"
    VOLUME_DIR_WITHOUT_RECORD = "volume-dir-without-record"
    VOLUME_RECORD_WITHOUT_DIR = "volume-record-without-dir"
    EXEC_OF_ENDED_AGENT = "exec-of-ended-agent"


# How long a shim whose task was just deleted may take to exit before it counts as left behind.
SHIM_EXIT_GRACE_SECONDS = 1.0


@dataclass(frozen=True)
class Finding:
    """One disagreement: what kind, about which thing (path, IP or id), for which container."""

    kind: LeakKind
    subject: str
    container_id: str | None
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind}: {self.subject} ({self.detail})"


@dataclass(frozen=True)
class NodeView:
    """Everything the checker read from one node, each source once."""

    node: str
    mounted_targets: frozenset[Path]
    netns_files: tuple[Path, ...]
    bound_netns: frozenset[Path]
    reservations: dict[str, str]
    containerd_containers: frozenset[str]
    tasks: dict[str, TaskInfo]
    containers: dict[str, Container]
    holders: tuple[MountHolder, ...]
    attachments: dict[str, NetworkAttachment] = field(default_factory=dict)
    # Container id -> the live shims serving it (normally one).
    shims: dict[str, tuple[ShimProcess, ...]] = field(default_factory=dict)
    # Container id -> its cgroup directories, for the ids this node's records name.
    cgroups: dict[str, tuple[Path, ...]] = field(default_factory=dict)
    # containerd's leases in Berth's namespace (a pull holds one while it runs).
    leases: frozenset[str] = frozenset()
    # Ids with a directory of generated /etc files (``NodePaths.container_dir``).
    etc_dirs: frozenset[str] = frozenset()
    # Container id -> the host ports PostgreSQL says it publishes ("18080/tcp").
    port_claims: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Ids portmap publishes ports for in iptables, for the ids this node's records name.
    port_forwards: frozenset[str] = frozenset()
    # Named volumes: the directories under the node's volumes dir, and PostgreSQL's rows.
    volume_dirs: frozenset[str] = frozenset()
    volume_rows: frozenset[str] = frozenset()
    # (container id, exec id) of the node endpoint's execs in running tasks.
    endpoint_execs: tuple[tuple[str, str], ...] = ()
    # Every exec's FIFO directory (``<workload root>/exec/<container>/<exec>``).
    exec_dirs: tuple[Path, ...] = ()

    def busy(self, container_id: str) -> bool:
        """Whether an operation holds the container (its resources may be half made)."""
        container = self.containers.get(container_id)
        return container is not None and (
            container.operation is not None or container.state in TRANSIENT_STATES
        )

    def live(self, container_id: str) -> bool:
        container = self.containers.get(container_id)
        return container is not None and container.state in LIVE_STATES


async def observe_node(
    node: str,
    paths: NodePaths,
    containerd: ContainerdClient,
    cni: CniNetwork,
    sessions: async_sessionmaker[AsyncSession],
) -> NodeView:
    """Read every source of one node.

    PostgreSQL is read first: anything made after that is newer than the records and belongs to
    an operation that the records already show in flight (intent is written before effect).
    """
    async with sessions() as session:
        containers = {c.id: c for c in await ContainerRepository(session).on_node(node)}
        holders = tuple(await MountHolderRepository(session).holders(node))
        attachments = {
            a.container_id: a for a in await NetworkAttachmentRepository(session).on_node(node)
        }
        port_claims: dict[str, tuple[str, ...]] = {}
        for claim in await PortRepository(session).on_node(node):
            port_claims[claim.container_id] = (
                *port_claims.get(claim.container_id, ()),
                f"{claim.host_port}/{claim.protocol}",
            )
        volume_rows = frozenset(v.name for v in await VolumeRepository(session).list(node))
    volume_dirs = await asyncio.to_thread(volume_names, paths)
    mounted = await asyncio.to_thread(_mounted_targets, paths.rootfs_dir)
    etc_dirs = await asyncio.to_thread(_entries, paths.containers_dir)
    netns_files = tuple(await asyncio.to_thread(list_netns, paths.netns_dir))
    bound = frozenset([path for path in netns_files if await asyncio.to_thread(netns_exists, path)])
    containerd_containers = frozenset(await containerd.list_containers())
    tasks = {task.id: task for task in await containerd.list_tasks()}
    leases = frozenset(await containerd.list_leases())
    shims = await asyncio.to_thread(_settled_shims, containerd, frozenset(tasks))
    cgroups = await asyncio.to_thread(container_cgroups)
    forwards = await asyncio.to_thread(cni.port_forwards)
    execs = tuple(await endpoint_execs(containerd))
    fifo_dirs = tuple(await asyncio.to_thread(exec_dirs, paths))
    named = containers.keys() | containerd_containers | tasks.keys() | shims.keys()
    named |= port_claims.keys()
    # iptables is the machine's, shared by every deployment: judge only the ids of this node.
    unnamed = sorted((cgroups.keys() | forwards) - named)
    if unnamed:
        async with sessions() as session:
            named |= await ContainerRepository(session).ids_seen_on(node, unnamed)
    return NodeView(
        node=node,
        mounted_targets=mounted,
        netns_files=netns_files,
        bound_netns=bound,
        reservations=await asyncio.to_thread(cni.reservations),
        containerd_containers=containerd_containers,
        tasks=tasks,
        leases=leases,
        containers=containers,
        holders=holders,
        attachments=attachments,
        shims=shims,
        cgroups={cid: dirs for cid, dirs in cgroups.items() if cid in named},
        etc_dirs=etc_dirs,
        port_claims=port_claims,
        port_forwards=frozenset(forwards & named),
        volume_dirs=volume_dirs,
        volume_rows=volume_rows,
        endpoint_execs=execs,
        exec_dirs=fifo_dirs,
    )


def node_shims(containerd: ContainerdClient) -> dict[str, tuple[ShimProcess, ...]]:
    """The live shims of ``containerd``'s node and namespace, by container id."""
    found: dict[str, list[ShimProcess]] = {}
    for shim in list_shims(containerd.socket, containerd.namespace):
        found.setdefault(shim.container_id, []).append(shim)
    return {cid: tuple(shims) for cid, shims in found.items()}


def _settled_shims(
    containerd: ContainerdClient, tasks: frozenset[str]
) -> dict[str, tuple[ShimProcess, ...]]:
    """The node's shims; one whose task containerd does not list gets a moment to exit first
    (a shim ends itself just after its task's delete returns)."""
    shims = node_shims(containerd)
    for container_id in sorted(shims.keys() - tasks):
        left = tuple(
            shim
            for shim in shims[container_id]
            if not wait_shim_gone(shim, SHIM_EXIT_GRACE_SECONDS)
        )
        if left:
            shims[container_id] = left
        else:
            del shims[container_id]
    return shims


def _entries(directory: Path) -> frozenset[str]:
    try:
        return frozenset(entry.name for entry in directory.iterdir())
    except FileNotFoundError:
        return frozenset()


def _mounted_targets(rootfs_dir: Path) -> frozenset[Path]:
    """The per-container targets (``<rootfs dir>/<id>``) with anything mounted at or below."""
    top = Path(rootfs_dir).resolve()
    targets = set()
    for point in mounts_under(top):
        if point != top:
            targets.add(top / point.relative_to(top).parts[0])
    return frozenset(targets)


def find_leaks(view: NodeView, paths: NodePaths) -> list[Finding]:
    """Every disagreement in ``view``; in-flight containers are reported, not judged."""
    findings: list[Finding] = [
        Finding(
            LeakKind.OPERATION_IN_FLIGHT,
            container.id,
            container.id,
            f"state {container.state}, operation {container.operation}",
        )
        for container in view.containers.values()
        if view.busy(container.id)
    ]
    findings += _mount_findings(view, paths)
    findings += _network_findings(view, paths)
    findings += _containerd_findings(view)
    findings += _node_resource_findings(view)
    findings += _lease_findings(view)
    findings += _volume_findings(view, paths)
    findings += _exec_findings(view)
    return findings


def _mount_findings(view: NodeView, paths: NodePaths) -> Iterable[Finding]:
    rootfs_dir = Path(paths.rootfs_dir).resolve()
    held: dict[Path, list[MountHolder]] = {}
    for holder in view.holders:
        held.setdefault(Path(holder.target).resolve(), []).append(holder)
    for target in sorted(view.mounted_targets - held.keys()):
        if not view.busy(target.name):
            yield Finding(LeakKind.MOUNT_WITHOUT_HOLDER, str(target), target.name, "no holder")
    for target, holders in sorted(held.items()):
        container_id = holders[0].container_id
        if view.busy(container_id):
            continue
        names = sorted(h.holder for h in holders)
        for name in names:
            if is_endpoint_holder(name) and not endpoint_holder_alive(name):
                yield Finding(
                    LeakKind.HOLDER_OF_ENDED_CALL, str(target), container_id, f"holder {name}"
                )
        if target not in view.mounted_targets and target.parent == rootfs_dir:
            yield Finding(
                LeakKind.HOLDER_WITHOUT_MOUNT, str(target), container_id, f"holders {names}"
            )
        if container_id not in view.containers:
            yield Finding(
                LeakKind.HOLDER_OF_UNKNOWN_CONTAINER, str(target), container_id, f"holders {names}"
            )
        elif TASK_HOLDER in names and not view.live(container_id):
            state = view.containers[container_id].state
            yield Finding(
                LeakKind.TASK_HOLDER_OF_IDLE_CONTAINER, str(target), container_id, f"state {state}"
            )


def _network_findings(view: NodeView, paths: NodePaths) -> Iterable[Finding]:
    for path in view.netns_files:
        container_id = path.name
        if view.busy(container_id):
            continue
        if container_id not in view.attachments:
            bound = "bound" if path in view.bound_netns else "unbound file"
            yield Finding(LeakKind.NETNS_WITHOUT_ATTACHMENT, str(path), container_id, bound)
    for container_id, attachment in view.attachments.items():
        if view.busy(container_id):
            continue
        if not view.live(container_id):
            yield Finding(
                LeakKind.ATTACHMENT_OF_IDLE_CONTAINER,
                container_id,
                container_id,
                f"mode {attachment.mode}",
            )
        elif attachment.mode != "host" and paths.netns(container_id) not in view.bound_netns:
            yield Finding(
                LeakKind.ATTACHMENT_WITHOUT_NETNS,
                str(paths.netns(container_id)),
                container_id,
                f"mode {attachment.mode}",
            )
    for container_id in sorted(view.etc_dirs):
        if not view.busy(container_id) and not view.live(container_id):
            yield Finding(
                LeakKind.ETC_FILES_OF_IDLE_CONTAINER,
                str(paths.container_dir(container_id)),
                container_id,
                _described(view, container_id),
            )
    for container_id, ports in sorted(view.port_claims.items()):
        if not view.busy(container_id) and not view.live(container_id):
            yield Finding(
                LeakKind.PORTS_OF_IDLE_CONTAINER,
                ", ".join(ports),
                container_id,
                _described(view, container_id),
            )
    for container_id in sorted(view.port_forwards):
        if not view.busy(container_id) and not view.live(container_id):
            yield Finding(
                LeakKind.PORT_FORWARD_OF_IDLE_CONTAINER,
                container_id,
                container_id,
                f"portmap DNAT chain, {_described(view, container_id)}",
            )
    for ip, container_id in sorted(view.reservations.items()):
        if view.busy(container_id):
            continue
        recorded = view.attachments.get(container_id)
        if recorded is None:
            yield Finding(LeakKind.IP_WITHOUT_ATTACHMENT, ip, container_id, "IPAM reservation")
        elif recorded.ip != ip:
            yield Finding(LeakKind.IP_NOT_RECORDED, ip, container_id, f"recorded {recorded.ip}")


def _containerd_findings(view: NodeView) -> Iterable[Finding]:
    for container_id in sorted(view.containerd_containers):
        if not view.busy(container_id) and not view.live(container_id):
            yield Finding(
                LeakKind.CONTAINERD_CONTAINER_UNKNOWN,
                container_id,
                container_id,
                _described(view, container_id),
            )
    for container_id, task in sorted(view.tasks.items()):
        if not view.busy(container_id) and not view.live(container_id):
            yield Finding(
                LeakKind.TASK_UNKNOWN,
                container_id,
                container_id,
                f"task {task.status}, {_described(view, container_id)}",
            )
    for container_id, container in sorted(view.containers.items()):
        own = view.tasks.get(container_id)
        gone = own is None or own.status is TaskStatus.STOPPED
        if gone and container.state in LIVE_STATES and not view.busy(container_id):
            status = own.status if own else "no task"
            yield Finding(
                LeakKind.TASK_MISSING,
                container_id,
                container_id,
                f"{container.state}, {status}",
            )


def _node_resource_findings(view: NodeView) -> Iterable[Finding]:
    """Shims and cgroups of containers for which containerd lists no task."""
    for container_id, shims in sorted(view.shims.items()):
        if container_id in view.tasks or view.busy(container_id):
            continue
        for shim in shims:
            yield Finding(
                LeakKind.SHIM_WITHOUT_TASK,
                f"pid {shim.pid}",
                container_id,
                f"no task in containerd, {_described(view, container_id)}",
            )
    for container_id, dirs in sorted(view.cgroups.items()):
        if container_id in view.tasks or view.busy(container_id):
            continue
        yield Finding(
            LeakKind.CGROUP_WITHOUT_TASK,
            str(dirs[0]),
            container_id,
            f"{len(dirs)} hierarchies, {_described(view, container_id)}",
        )


def _lease_findings(view: NodeView) -> Iterable[Finding]:
    """Pull leases whose owner is no container in flight on this node."""
    for lease in sorted(view.leases):
        if not lease.startswith(PULL_LEASE_PREFIX):
            continue
        owner = lease.removeprefix(PULL_LEASE_PREFIX)
        if not view.busy(owner):
            yield Finding(LeakKind.LEASE_OF_ENDED_PULL, lease, owner, _described(view, owner))


def _volume_findings(view: NodeView, paths: NodePaths) -> Iterable[Finding]:
    """Volume directories without a row, and rows without a directory.

    A row is written first (at ``volume create``, or when a container naming the volume is
    created) and the directory is made on the node (at once, or at that container's first
    start): a row whose users are all containers that never started, or one in flight, is
    pending, not leaked.
    """
    users: dict[str, list[Container]] = {}
    for container in view.containers.values():
        for volume in container.config.get("volumes") or []:
            users.setdefault(volume.get("name", ""), []).append(container)
    for name in sorted(view.volume_dirs - view.volume_rows):
        if not any(view.busy(c.id) for c in users.get(name, [])):
            yield Finding(
                LeakKind.VOLUME_DIR_WITHOUT_RECORD,
                str(volume_dir(paths, name)),
                None,
                "no volumes row",
            )
    for name in sorted(view.volume_rows - view.volume_dirs):
        own = users.get(name, [])
        if own and all(view.busy(c.id) or not c.has_been_started_before for c in own):
            continue  # made at the first start of a container that names it
        yield Finding(
            LeakKind.VOLUME_RECORD_WITHOUT_DIR,
            str(volume_dir(paths, name)),
            None,
            f"row without directory, used by {sorted(c.name for c in own) or 'no container'}",
        )


def _exec_findings(view: NodeView) -> Iterable[Finding]:
    """Endpoint execs, and their FIFO directories, whose agent process is gone."""
    for container_id, exec_id in view.endpoint_execs:
        if not endpoint_exec_alive(exec_id):
            yield Finding(LeakKind.EXEC_OF_ENDED_AGENT, exec_id, container_id, "exec in its task")
    for directory in view.exec_dirs:
        if is_endpoint_exec(directory.name) and not endpoint_exec_alive(directory.name):
            yield Finding(
                LeakKind.EXEC_OF_ENDED_AGENT,
                directory.name,
                directory.parent.name,
                f"FIFO directory {directory}",
            )


def _described(view: NodeView, container_id: str) -> str:
    container = view.containers.get(container_id)
    return "not in PostgreSQL" if container is None else f"PostgreSQL says {container.state}"


async def check_node(
    node: str,
    paths: NodePaths,
    containerd: ContainerdClient,
    cni: CniNetwork,
    sessions: async_sessionmaker[AsyncSession],
) -> list[Finding]:
    """Every disagreement between node ``node``'s host state and PostgreSQL."""
    view = await observe_node(node, paths, containerd, cni, sessions)
    return find_leaks(view, paths)
