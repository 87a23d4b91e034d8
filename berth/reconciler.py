"""The per-node reconciler: repairs what a terminated workflow or a lost agent left behind.

Terminate, a workflow timeout or a workflow-task failure runs no compensation, and an agent
killed between a side effect and its record leaves the side effect. The node agent runs
:meth:`Reconciler.reconcile` when it starts and then periodically. It reads the node with the
leak checker (:mod:`berth.leaks`) and repairs, per container, under the container's row lock
(so no lifecycle operation can begin meanwhile):

- a container whose ``operation`` names a workflow that no longer runs: undo what the start
  left (the saga's own compensations) and reset the state;
- mount holders whose operation no longer runs (``task`` of a container that is not running,
  ``<kind>:<workflow id>`` of a workflow that ended, ``endpoint:<agent>:<call>`` of a node
  endpoint call whose agent process is gone, e.g. one that crashed mid-cp) and mounts with no
  holder at all;
- network namespaces, attachments, IPAM reservations, published ports (records and portmap's
  rules) and generated /etc files of containers that are not running;
- containerd containers and tasks of containers that PostgreSQL does not say are running;
- shims and cgroups of containers that PostgreSQL does not say are running, or for which
  containerd lists no task: the task's delete through containerd first (the shim's own
  shutdown), then the shim ended by its pid, the container's processes by its cgroup, and the
  empty cgroup removed;
- node endpoint execs (``berth-exec-<agent>-…``) that no call of this agent runs and no other
  live agent started (a crashed agent's, or one whose delete failed), and their FIFO
  directories (:mod:`berth.endpoint.exec_owners`): the agent hands the reconciler the execs its
  calls run, so a live exec is never one;
- containerd leases of pulls that no longer run: the workflow the lease's label names
  (:data:`berth.runtime.pull.PULL_WORKFLOW_LABEL`) ended, and the container that asked for the
  pull (if any) is held by no operation, checked under its row lock, so a start that begins
  meanwhile waits and makes a new lease. Only leases older than :data:`STALE_PULL_LEASE_AGE`:
  containerd collects them itself, but only when they expire, an hour after the pull began;
- a named volume whose row is there but whose directory vanished (the leak checker's
  ``VOLUME_RECORD_WITHOUT_DIR``: not one still waiting for its first user's start): the
  directory is made again, empty, under the row's lock, and the loss logged as a repair. Its
  data is gone either way; a start would make it the same way (a volume's first use fills it
  from the image, as docker does), and a mark would need every start to refuse the volume, a
  failure docker does not have. A volume directory with no row is only reported: it may be
  a user's data (a row deleted by hand, a database restored from before its create), and
  whether it becomes a volume again, or goes, is the operator's call.

When the agent boots, :meth:`Reconciler.recover_boot` runs first, before the exit monitor: a
live container whose task did not survive the node going down (a reboot: containerd, shims and
tasks gone) is started again if its policy says so (``always``, ``unless-stopped``), through its
exit's workflow as for any exit; any other is recorded ``exited`` with the reboot as the reason,
and its host resources and records are released (:func:`berth.state_machine.decide_lost_at_boot`).

Every repair is a ``reconcile`` container event and a log line. Containers that PostgreSQL says
are running whose task is gone are not repaired here: the exit monitor's sweep
(:mod:`berth.exit_monitor`) records them as exits, with restart policies; they are only logged.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from berth.activities.mount import MountActivities
from berth.activities.network import NetworkActivities
from berth.activities.shim import ShimActivities
from berth.activities.spec import SpecActivities
from berth.activities.state import facts_of, transition_if_exists
from berth.activities.task import TaskActivities
from berth.config import NodePaths
from berth.contract import ContainerState, NetworkMode
from berth.db.models import Container
from berth.db.repository import ContainerRepository, MountHolderRepository
from berth.db.volume_repository import VolumeRepository
from berth.endpoint.exec_owners import AgentExecs, of_ended_agent, remove_stray_execs
from berth.endpoint.holders import endpoint_holder_alive, is_endpoint_holder
from berth.leaks import (
    SHIM_EXIT_GRACE_SECONDS,
    TASK_HOLDER,
    TRANSIENT_STATES,
    Finding,
    LeakKind,
    NodeView,
    find_leaks,
    node_shims,
    observe_node,
)
from berth.runtime.cgroups import container_cgroups, kill_cgroup_processes, remove_cgroup
from berth.runtime.cni import CniNetwork
from berth.runtime.containerd import ContainerdClient
from berth.runtime.mounts import is_mounted, unmount_rootfs
from berth.runtime.netns import delete_netns
from berth.runtime.pull import PullLease, pull_leases
from berth.runtime.shims import kill_shim, wait_shim_gone
from berth.runtime.types import TaskStatus
from berth.state_machine import (
    LIVE_STATES,
    Verdict,
    decide_end_exit,
    decide_lost_at_boot,
    state_before_start,
)
from berth.steps import (
    HOST_CLEANUP,
    UNKNOWN_EXIT_CODE,
    CleanupStep,
    ContainerRef,
    HostTarget,
    NetworkInput,
    ReleaseRootfsInput,
)
from berth.volumes_host import make_volume_dir, volume_dir

log = logging.getLogger("berth.reconciler")

WorkflowRunning = Callable[[str], Awaitable[bool]]

# A pull's lease younger than this is left alone whatever its workflow says (a pull just begun).
STALE_PULL_LEASE_AGE = timedelta(minutes=2)


def temporal_workflow_running(client: Client) -> WorkflowRunning:
    """Whether an operation's run (``<workflow id>@<run id>``, or a bare workflow id) runs."""

    async def running(operation: str) -> bool:
        workflow_id, sep, run_id = operation.rpartition("@")
        if not sep:
            workflow_id, run_id = operation, ""
        try:
            handle = client.get_workflow_handle(workflow_id, run_id=run_id or None)
            described = await handle.describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return described.status == WorkflowExecutionStatus.RUNNING

    return running


@dataclass(frozen=True)
class Repair:
    """One thing the reconciler fixed."""

    kind: str
    subject: str
    container_id: str | None

    def __str__(self) -> str:
        return f"{self.kind}: {self.subject}"


@dataclass(frozen=True)
class Undo:
    """The saga's own compensations, reused for repairs (one implementation of each undo)."""

    mount: MountActivities
    network: NetworkActivities
    spec: SpecActivities
    shim: ShimActivities
    task: TaskActivities

    async def run(self, step: CleanupStep, target: HostTarget) -> None:
        """Run one step of the host cleanup order, by its activity, for ``target``."""
        undo: dict[str, Callable[[Any], Awaitable[None]]] = {
            "stop_task": self.task.stop_task,
            "delete_shim": self.shim.delete_shim,
            "drop_spec": self.spec.drop_spec,
            "detach_network": self.network.detach_network,
            "release_rootfs": self.mount.release_rootfs,
        }
        await undo[step.activity](step.request(target))


class Reconciler:
    """Repairs one node; every method is idempotent and safe beside running sagas."""

    def __init__(
        self,
        node: str,
        paths: NodePaths,
        containerd: ContainerdClient,
        cni: CniNetwork,
        sessions: async_sessionmaker[AsyncSession],
        undo: Undo,
        workflow_running: WorkflowRunning,
        *,
        stale_pull_lease_age: timedelta = STALE_PULL_LEASE_AGE,
        execs: AgentExecs | None = None,
    ) -> None:
        """``execs``: the agent's own running execs; without them only the execs of agents
        that are gone are strays."""
        self._node = node
        self._exec_is_stray = execs.is_stray if execs is not None else of_ended_agent
        self._stale_pull_lease_age = stale_pull_lease_age
        self._paths = paths
        self._containerd = containerd
        self._cni = cni
        self._sessions = sessions
        self._undo = undo
        self._workflow_running = workflow_running

    async def recover_boot(self) -> list[Repair]:
        """The agent's first pass: containers the node lost when it went down, then a reconcile.

        A container PostgreSQL says is live, that no operation holds, and for which this node's
        containerd lists no task at all lost its task with the node (containerd keeps a task
        while its shim lives, even across its own restarts; a task that merely exited is listed
        as stopped). Run before the exit monitor starts, so that its sweep sees only what this
        pass leaves to it: the containers whose policy restarts them at boot.
        """
        tasks = {task.id for task in await self._containerd.list_tasks()}
        async with self._sessions() as session:
            lost = [
                (container.id, container.name, container.config.get("network_mode"))
                for container in await ContainerRepository(session).live_unheld_on(self._node)
                if container.id not in tasks
            ]
        repairs: list[Repair] = []
        operation = f"node-boot-{self._node}@{uuid.uuid4()}"
        reason = f"the task was lost when node {self._node} went down (node reboot)"
        for container_id, name, network_mode in lost:
            done = await transition_if_exists(
                self._sessions,
                container_id,
                lambda facts: decide_lost_at_boot(
                    facts, operation, UNKNOWN_EXIT_CODE, reason, datetime.now(UTC)
                ),
            )
            if done is None or done.decision.verdict is not Verdict.APPLY:
                if done is not None and done.decision.restart and done.decision.restart.restart:
                    log.info("boot: %s lost its task; its exit's workflow restarts it", name)
                continue
            # Held by this boot while its host resources go, so no operation begins meanwhile.
            await self._undo_start(container_id, NetworkMode(network_mode or NetworkMode.BRIDGE))
            await transition_if_exists(
                self._sessions, container_id, lambda facts: decide_end_exit(facts, operation)
            )
            repair = Repair("lost-at-boot", reason, container_id)
            log.warning("reconciler on %s: %s recorded exited: %s", self._node, name, reason)
            repairs.append(repair)
        return repairs + await self.reconcile()

    async def reconcile(self) -> list[Repair]:
        """One pass over the node; returns what was repaired."""
        # The node's masquerade rule (its setting decides whether there is one): node setup, not
        # a container's leftover, so it is logged, not counted as a repair.
        if await asyncio.to_thread(self._cni.ensure_masquerade):
            log.info("reconciler on %s: masquerade rule of %s set", self._node, self._cni.bridge)
        repairs: list[Repair] = []
        view = await observe_node(
            self._node, self._paths, self._containerd, self._cni, self._sessions
        )
        for container in list(view.containers.values()):
            if container.operation is not None:
                repairs += await self._end_stale_operation(container.id, container.operation)
        # Re-read: ending stale operations changed what is busy and what is held.
        view = await observe_node(
            self._node, self._paths, self._containerd, self._cni, self._sessions
        )
        for container_id in sorted(_suspects(view)):
            repairs += await self._repair_container(container_id, view)
        repairs += await self._repair_unheld_mounts(view)
        repairs += await self._delete_stray_execs()
        repairs += await self._delete_stale_pull_leases()
        findings = find_leaks(view, self._paths)
        repairs += await self._restore_volume_dirs(findings)
        for finding in findings:
            if finding.kind is LeakKind.TASK_MISSING:
                log.info("reconciler: %s (left to the exit monitor's sweep)", finding)
        return repairs

    async def run_periodically(self, interval_seconds: float) -> None:
        """Reconcile now and then every ``interval_seconds`` until cancelled."""
        while True:
            try:
                repairs = await self.reconcile()
                if repairs:
                    log.info("reconciler repaired %d things on %s", len(repairs), self._node)
            except Exception:
                log.exception("reconciler pass on %s failed; next pass will retry", self._node)
            await asyncio.sleep(interval_seconds)

    # --- stale operations ------------------------------------------------------------------

    async def _end_stale_operation(self, container_id: str, operation: str) -> list[Repair]:
        """Undo a start whose workflow ended without ending its operation, and reset the state."""
        if await self._workflow_running(operation):
            return []
        async with self._sessions() as session:
            container = await ContainerRepository(session).find(container_id)
            if container is None or container.operation != operation:
                return []
            state = ContainerState(container.state)
            network = NetworkMode(container.config.get("network_mode", NetworkMode.BRIDGE))
        # The operation still names the dead workflow, so no other operation can begin meanwhile.
        if state is ContainerState.STARTING:
            await self._undo_start(container_id, network)
        async with self._sessions.begin() as session:
            containers = ContainerRepository(session)
            container = await containers.find(container_id, for_update=True)
            if container is None or container.operation != operation:
                return []
            container.operation = None
            container.error = f"operation {operation} ended without finishing; reconciled"
            if state is ContainerState.STARTING:
                container.state = state_before_start(facts_of(container))
                container.pid = None
                container.ip = None
            elif state in TRANSIENT_STATES:
                task = await self._task_status(container_id)
                container.state = (
                    ContainerState.RUNNING if task is TaskStatus.RUNNING else container.state
                )
            repair = Repair("terminated-operation", operation, container_id)
            self._record(containers, container, repair, {"state": container.state})
        return [repair]

    async def _undo_start(self, container_id: str, network: NetworkMode) -> None:
        """The start saga's compensations, in the one host cleanup order, every one attempted."""
        target = HostTarget(container_id=container_id, node=self._node, mode=network)
        for step in HOST_CLEANUP:
            try:
                await self._undo.run(step, target)
            except Exception:
                log.exception(
                    "reconciler: undo %s of %s failed; next pass retries", step.step, container_id
                )

    async def _task_status(self, container_id: str) -> TaskStatus | None:
        try:
            return (await self._containerd.get_task(container_id)).status
        except Exception:
            return None

    # --- per-container leftovers ------------------------------------------------------------

    async def _repair_container(self, container_id: str, view: NodeView) -> list[Repair]:
        """Remove what a container holds but should not, under its row lock."""
        repairs: list[Repair] = []
        async with self._sessions.begin() as session:
            containers = ContainerRepository(session)
            container = await containers.find(container_id, for_update=True)
            if container is not None and (
                container.operation is not None or container.state in TRANSIENT_STATES
            ):
                return []
            live = container is not None and container.state in LIVE_STATES
            if not live:
                repairs += await self._remove_runtime(container_id, view)
                repairs += await self._reap_node_resources(container_id, view)
            repairs += await self._release_dead_holders(container_id, view, live)
            for repair in repairs:
                self._record(containers, container, repair, {})
        return repairs

    async def _remove_runtime(self, container_id: str, view: NodeView) -> list[Repair]:
        """containerd task and container, network, of a container that is not running."""
        repairs = []
        ref = ContainerRef(container_id=container_id, node=self._node)
        if container_id in view.tasks or container_id in view.containerd_containers:
            await self._undo.shim.delete_shim(ref)
            repairs.append(Repair("containerd-leftover", container_id, container_id))
        netns = self._paths.netns(container_id)
        attachment = view.attachments.get(container_id)
        has_ip = container_id in view.reservations.values()
        has_etc = container_id in view.etc_dirs
        has_ports = container_id in view.port_claims or container_id in view.port_forwards
        if attachment is not None or netns in view.netns_files or has_ip or has_etc or has_ports:
            mode = NetworkMode(attachment.mode) if attachment else NetworkMode.BRIDGE
            await self._undo.network.detach_network(
                NetworkInput(container_id=container_id, node=self._node, mode=mode)
            )
            # detach skips DEL for modes without CNI; a stray IP or netns goes all the same.
            await asyncio.to_thread(self._cni.detach, container_id, netns)
            await asyncio.to_thread(delete_netns, netns)
            repairs.append(Repair("network-leftover", str(netns), container_id))
        return repairs

    async def _reap_node_resources(self, container_id: str, view: NodeView) -> list[Repair]:
        """Shims and cgroups of a container that is not running (its task already deleted).

        A shim given a moment to exit by itself after the delete is ended by its pid; processes
        left in the container's cgroups are killed, and the empty cgroups removed.
        """
        repairs = []
        shims = (await asyncio.to_thread(node_shims, self._containerd)).get(container_id, ())
        for shim in shims:
            if await asyncio.to_thread(wait_shim_gone, shim, SHIM_EXIT_GRACE_SECONDS):
                continue
            if await asyncio.to_thread(kill_shim, shim):
                repairs.append(Repair("shim-leftover", f"pid {shim.pid}", container_id))
            else:
                log.warning("reconciler: shim %s of %s survived SIGKILL", shim.pid, container_id)
        if container_id not in view.cgroups and not shims:
            return repairs  # not a cgroup this node's records name
        dirs = (await asyncio.to_thread(container_cgroups)).get(container_id, ())
        if dirs:
            await asyncio.to_thread(kill_cgroup_processes, dirs)
            left = await asyncio.to_thread(remove_cgroup, dirs)
            if left:
                log.warning("reconciler: cgroups of %s still busy: %s", container_id, left)
            else:
                repairs.append(Repair("cgroup-leftover", str(dirs[0]), container_id))
        return repairs

    async def _release_dead_holders(
        self, container_id: str, view: NodeView, live: bool
    ) -> list[Repair]:
        repairs = []
        for holder in view.holders:
            if holder.container_id != container_id:
                continue
            if await self._holder_alive(holder.holder, live):
                continue
            await self._undo.mount.release_rootfs(
                ReleaseRootfsInput(container_id=container_id, node=self._node, holder=holder.holder)
            )
            repairs.append(Repair("dead-mount-holder", holder.holder, container_id))
        return repairs

    async def _holder_alive(self, holder: str, container_live: bool) -> bool:
        """``task`` lives with a running container; ``<kind>:<workflow id>`` with its workflow;
        an endpoint call's with the agent process that took it."""
        if holder == TASK_HOLDER:
            return container_live
        if is_endpoint_holder(holder):
            return endpoint_holder_alive(holder)
        _, sep, workflow_id = holder.partition(":")
        return bool(sep) and await self._workflow_running(workflow_id)

    async def _repair_unheld_mounts(self, view: NodeView) -> list[Repair]:
        """Unmount targets with no holder at all (checked again under the target's lock)."""
        repairs = []
        held = {Path(h.target).resolve() for h in view.holders}
        for target in sorted(view.mounted_targets - held):
            container_id = target.name
            if view.busy(container_id):
                continue
            async with self._sessions.begin() as session:
                holders = MountHolderRepository(session)
                path = str(self._paths.rootfs(container_id))
                await holders.lock_target(self._node, path)
                if await holders.count(self._node, path) > 0:
                    continue
                if not await asyncio.to_thread(is_mounted, target):
                    continue
                await asyncio.to_thread(unmount_rootfs, target)
                repair = Repair("mount-without-holder", str(target), container_id)
                containers = ContainerRepository(session)
                self._record(containers, await containers.find(container_id), repair, {})
            repairs.append(repair)
        return repairs

    # --- stray execs ---------------------------------------------------------------------------

    async def _delete_stray_execs(self) -> list[Repair]:
        """Endpoint execs no call of this agent runs and no live agent started, each recorded."""
        deleted = await remove_stray_execs(self._containerd, self._paths, self._exec_is_stray)
        repairs = []
        for container_id, exec_id in deleted:
            async with self._sessions.begin() as session:
                containers = ContainerRepository(session)
                repair = Repair("stray-exec", exec_id, container_id)
                self._record(containers, await containers.by_id(container_id), repair, {})
            repairs.append(repair)
        return repairs

    # --- pull leases ---------------------------------------------------------------------------

    async def _delete_stale_pull_leases(self) -> list[Repair]:
        """Delete the leases of pulls that no longer run (what they held becomes garbage)."""
        repairs = []
        oldest = datetime.now(UTC) - self._stale_pull_lease_age
        for lease in pull_leases(await self._containerd.lease_infos()):
            if lease.created_at > oldest:
                continue
            if lease.workflow is not None and await self._workflow_running(lease.workflow):
                continue
            repair = await self._delete_pull_lease(lease)
            if repair is not None:
                repairs.append(repair)
        return repairs

    async def _delete_pull_lease(self, lease: PullLease) -> Repair | None:
        """Delete ``lease`` unless the container that owns it is held by an operation, under
        that container's row lock (a start beginning now waits, then makes a lease anew)."""
        async with self._sessions.begin() as session:
            containers = ContainerRepository(session)
            container = await session.get(Container, lease.owner, with_for_update=True)
            if container is not None and (
                container.operation is not None or container.state in TRANSIENT_STATES
            ):
                return None
            await self._containerd.delete_lease(lease.lease)
            repair = Repair("pull-lease-leftover", lease.lease, container.id if container else None)
            self._record(containers, container, repair, {"workflow": lease.workflow})
        return repair

    # --- volumes -------------------------------------------------------------------------------

    async def _restore_volume_dirs(self, findings: list[Finding]) -> list[Repair]:
        """Make again, empty, the directory of each volume whose row outlived it; report a
        directory without a row (never deleted: it may be a user's data)."""
        repairs = []
        for finding in findings:
            name = Path(finding.subject).name
            if finding.kind is LeakKind.VOLUME_DIR_WITHOUT_RECORD:
                log.warning("reconciler: %s (left to the operator: it may hold data)", finding)
            elif finding.kind is LeakKind.VOLUME_RECORD_WITHOUT_DIR:
                async with self._sessions.begin() as session:
                    # Locked as create and remove lock it: a removal in flight goes first.
                    if await VolumeRepository(session).get(self._node, name, lock=True) is None:
                        continue
                    if await asyncio.to_thread(volume_dir(self._paths, name).is_dir):
                        continue
                    await asyncio.to_thread(make_volume_dir, self._paths, name)
                repair = Repair("volume-dir-lost", str(volume_dir(self._paths, name)), None)
                log.warning(
                    "reconciler on %s: volume %s had lost its directory (its data is gone); "
                    "made again, empty",
                    self._node,
                    name,
                )
                repairs.append(repair)
        return repairs

    def _record(
        self,
        containers: ContainerRepository,
        container: Container | None,
        repair: Repair,
        extra: dict[str, object],
    ) -> None:
        log.warning(
            "reconciler on %s repaired %s (container %s)", self._node, repair, repair.container_id
        )
        if repair.container_id is None:
            return
        containers.add_event_by_id(
            repair.container_id,
            container.name if container is not None else "",
            self._node,
            "reconcile",
            {"repair": repair.kind, "subject": repair.subject, **extra},
        )


def _suspects(view: NodeView) -> set[str]:
    """Containers that hold something on the node (each gets a locked, re-checked repair)."""
    found = set(view.tasks) | set(view.containerd_containers) | set(view.attachments)
    found |= {path.name for path in view.netns_files}
    found |= set(view.reservations.values())
    found |= view.etc_dirs
    found |= set(view.port_claims) | view.port_forwards
    found |= {h.container_id for h in view.holders}
    found |= {c for c in set(view.shims) | set(view.cgroups) if c not in view.tasks}
    return {c for c in found if not view.busy(c) and _holds_too_much(view, c)}


def _holds_too_much(view: NodeView, container_id: str) -> bool:
    """Whether a container holds anything beyond what its state allows (or any dead holder)."""
    if not view.live(container_id):
        return True
    # A live container may still hold export holders of ended workflows: check them too.
    return any(h.container_id == container_id and h.holder != TASK_HOLDER for h in view.holders)
