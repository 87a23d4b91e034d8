"""The one place that wires real dependencies into the control worker and the node agents.

Run as ``python -m berth.worker control`` or ``python -m berth.worker node`` (configured by
``BERTH_*`` environment variables, see :mod:`berth.config`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from berth.activities.exit import ExitActivities
from berth.activities.export import ExportActivities
from berth.activities.fleet import FleetActivities
from berth.activities.health import HealthActivities
from berth.activities.images import ImageActivities
from berth.activities.mount import MountActivities
from berth.activities.network import NetworkActivities
from berth.activities.pull import PullActivities
from berth.activities.shim import ShimActivities
from berth.activities.spec import SpecActivities
from berth.activities.state import StateActivities
from berth.activities.state_lifecycle import LifecycleStateActivities
from berth.activities.task import TaskActivities
from berth.activities.volume import VolumeActivities
from berth.client import connect
from berth.config import Settings, node_task_queue
from berth.container_logs import LogPolicy
from berth.db.repository import NodeRepository
from berth.db.session import make_engine, make_sessionmaker
from berth.endpoint.deps import EndpointDeps
from berth.endpoint.exec_owners import AgentExecs
from berth.endpoint.server import start_endpoint
from berth.exit_monitor import ExitMonitor
from berth.faults import NO_FAULTS, FaultHook, faults_from_env
from berth.health_prober import HealthProber
from berth.logs import configure as configure_logging
from berth.reconciler import Reconciler, Undo, temporal_workflow_running
from berth.registry.client import RegistryClient
from berth.runtime.cni import CniNetwork
from berth.runtime.containerd import ContainerdClient
from berth.runtime.pull import ImagePuller
from berth.workflows.container_create import ContainerCreate
from berth.workflows.container_exit import ContainerExitedOnNode
from berth.workflows.container_export import ContainerExport, ContainerExportOnNode
from berth.workflows.container_pause import ContainerPause, ContainerPauseOnNode, ContainerUnpause
from berth.workflows.container_remove import ContainerRemove, ContainerRemoveOnNode
from berth.workflows.container_restart import ContainerRestart, ContainerRestartOnNode
from berth.workflows.container_start import ContainerStart, ContainerStartOnNode
from berth.workflows.container_stop import ContainerStop, ContainerStopOnNode
from berth.workflows.fleet_restart import FleetRestart
from berth.workflows.image_ops import (
    ImageListOnNode,
    ImageLoadOnNode,
    ImagePull,
    ImagePullOnNode,
    ImageRemoveOnNode,
)
from berth.workflows.steps import CONTROL, NODE, check_registered
from berth.workflows.volume_ops import VolumeCreateOnNode, VolumeRemoveOnNode

log = logging.getLogger("berth.worker")
NODE_HEARTBEAT_SECONDS = 5.0
BOOT_RETRY_SECONDS = 1.0


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox, with Berth's own and its libraries' modules passed through.

    Re-importing them for every workflow run costs tens of milliseconds per start; they hold no
    per-run state, and the workflows that use them do no I/O. Workflows import only the contract,
    the steps module and temporalio, so no activity, runtime or SQLAlchemy module is needed here.
    """
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            "berth", "pydantic", "pydantic_core"
        )
    )


def control_worker(
    client: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> Worker:
    """The control worker: public workflows and their PostgreSQL steps, on queue ``berth``."""
    state = StateActivities(
        sessions,
        settings.allowed_host_paths,
        settings.allowed_seccomp_paths,
        settings.allowed_capabilities,
    )
    fleet = FleetActivities(sessions, client)
    health = HealthActivities(sessions)
    activities: list[Callable[..., Any]] = [
        state.create_container,
        state.locate_container,
        state.abort_operation,
        fleet.begin_fleet_run,
        fleet.next_fleet_items,
        fleet.record_fleet_item,
        fleet.set_fleet_status,
        fleet.check_healthy,
        health.container_health,
        fleet.stalled_children,
    ]
    check_registered(CONTROL, activities)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[
            ContainerStart,
            ContainerCreate,
            ContainerExport,
            ContainerStop,
            ContainerRestart,
            ContainerPause,
            ContainerUnpause,
            ContainerRemove,
            FleetRestart,
            ImagePull,
        ],
        workflow_runner=workflow_runner(),
        activities=activities,
    )


@dataclass
class NodeRuntime:
    """The host-bound dependencies of one node agent."""

    containerd: ContainerdClient
    cni: CniNetwork
    # Failure injection; NO_FAULTS unless the test-only variables enable it (berth.faults).
    faults: FaultHook = NO_FAULTS


def node_runtime(settings: Settings) -> NodeRuntime:
    paths = settings.node_paths()
    return NodeRuntime(
        containerd=ContainerdClient(
            paths.containerd_socket,
            settings.containerd_namespace,
            settings.node,
            call_timeout=settings.runtime_call_timeout_seconds,
            grace_seconds=settings.runtime_grace_seconds,
        ),
        cni=CniNetwork(
            settings.cni_bin_dir,
            network_name=f"berth-{settings.node}",
            bridge=settings.bridge,
            subnet=settings.subnet,
            data_dir=paths.cni_dir,
            call_timeout=settings.runtime_call_timeout_seconds,
            grace_seconds=settings.runtime_grace_seconds,
            node=settings.node,
            masquerade=settings.masquerade,
        ),
        faults=faults_from_env(os.environ),
    )


def registry_client(settings: Settings) -> RegistryClient:
    """A registry client with the node's registry settings (one per pull)."""
    return RegistryClient(
        settings.insecure_registries,
        settings.registry_auth_file,
        settings.node,
        allowed_registries=settings.allowed_registries,
        timeout_seconds=settings.runtime_call_timeout_seconds * 3,
        grace_seconds=settings.runtime_grace_seconds,
    )


def node_reconciler(
    client: Client,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    runtime: NodeRuntime,
    execs: AgentExecs | None = None,
) -> Reconciler:
    """The node's reconciler, repairing with the saga's own (fault-free) compensations; it
    leaves alone ``execs``, those the agent's endpoint calls run."""
    paths = settings.node_paths()
    undo = Undo(
        mount=MountActivities(sessions, runtime.containerd, paths),
        network=NetworkActivities(sessions, runtime.cni, paths, resolv_conf=settings.resolv_conf),
        spec=SpecActivities(paths),
        shim=ShimActivities(runtime.containerd, paths),
        task=TaskActivities(runtime.containerd),
    )
    return Reconciler(
        settings.node,
        paths,
        runtime.containerd,
        runtime.cni,
        sessions,
        undo,
        temporal_workflow_running(client),
        execs=execs,
    )


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def watch_node(reconciler: Reconciler, exits: ExitMonitor, interval: float) -> None:
    """The node's boot recovery, then its periodic reconciler and exit monitor, until cancelled.

    The boot pass (:meth:`Reconciler.recover_boot`) decides the containers the node lost while
    it was down before the exit monitor sees them; it is retried until containerd and
    PostgreSQL answer.
    """
    while True:
        try:
            repairs = await reconciler.recover_boot()
            log.info("boot recovery done (%d repairs)", len(repairs))
            break
        except Exception:
            log.exception("boot recovery failed; retrying")
            await asyncio.sleep(BOOT_RETRY_SECONDS)

    async def reconcile_later() -> None:
        await asyncio.sleep(interval)  # the boot pass has just reconciled
        await reconciler.run_periodically(interval)

    await asyncio.gather(reconcile_later(), exits.run())


async def register_node(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], endpoint: str | None
) -> None:
    async with sessions.begin() as session:
        await NodeRepository(session).register(
            settings.node, settings.bridge, settings.subnet, endpoint
        )


async def leave_node(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        await NodeRepository(session).leave(settings.node)


async def heartbeat(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], endpoint: str | None
) -> None:
    """Refresh the node's ``last_seen_at`` so placement only picks nodes whose agent runs."""
    while True:
        await asyncio.sleep(NODE_HEARTBEAT_SECONDS)
        try:
            await register_node(settings, sessions, endpoint)
        except Exception:
            log.exception("node heartbeat failed; retrying")


def node_worker(
    client: Client,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    runtime: NodeRuntime,
) -> Worker:
    """A node agent: the saga's host-bound steps, on queue ``berth-node-<node>``."""
    paths = settings.node_paths()
    state = StateActivities(
        sessions,
        settings.allowed_host_paths,
        settings.allowed_seccomp_paths,
        settings.allowed_capabilities,
        forwarded_ports=runtime.cni.forwarded_ports,
    )
    mount = MountActivities(sessions, runtime.containerd, paths, runtime.faults)
    network = NetworkActivities(
        sessions, runtime.cni, paths, runtime.faults, resolv_conf=settings.resolv_conf
    )
    spec = SpecActivities(
        paths,
        runtime.faults,
        settings.allowed_host_paths,
        allowed_seccomp_paths=settings.allowed_seccomp_paths,
        allow_unconfined_seccomp=settings.allow_unconfined_seccomp,
        allow_host_network=settings.allow_host_network,
        allowed_capabilities=settings.allowed_capabilities,
    )
    shim = ShimActivities(
        runtime.containerd,
        paths,
        runtime.faults,
        LogPolicy(max_bytes=settings.log_max_bytes, max_files=settings.log_max_files),
        allowed_host_paths=settings.allowed_host_paths,
    )
    task = TaskActivities(runtime.containerd, runtime.faults)
    export = ExportActivities(sessions, paths, runtime.faults, settings.allowed_export_paths)
    lifecycle = LifecycleStateActivities(sessions)
    exits = ExitActivities(sessions, runtime.containerd, settings.node)
    pull = PullActivities(
        ImagePuller(runtime.containerd, lambda: registry_client(settings), runtime.faults),
        runtime.faults,
        import_roots=[paths.imports_dir, *settings.allowed_import_paths],
    )
    images = ImageActivities(runtime.containerd, sessions)
    volumes = VolumeActivities(settings.node, paths, sessions)
    activities: list[Callable[..., Any]] = [
        export.begin_export,
        export.export_rootfs,
        state.begin_start,
        state.commit_start,
        state.fail_start,
        mount.mount_rootfs,
        mount.release_rootfs,
        mount.remove_rootfs_snapshot,
        network.attach_network,
        network.detach_network,
        spec.write_spec,
        spec.drop_spec,
        shim.create_shim,
        shim.delete_shim,
        shim.replace_task,
        task.start_task,
        task.stop_task,
        task.signal_and_wait,
        task.pause_task,
        task.resume_task,
        state.abort_operation,
        lifecycle.begin_stop,
        lifecycle.finish_stop,
        lifecycle.commit_restart,
        lifecycle.begin_pause,
        lifecycle.commit_pause,
        lifecycle.begin_remove,
        lifecycle.finish_remove,
        lifecycle.fail_removal,
        lifecycle.record_exit,
        lifecycle.end_exit,
        lifecycle.claim_policy_restart,
        exits.verify_exit,
        pull.check_image,
        pull.pull_image,
        pull.release_pull,
        images.list_images,
        images.remove_image,
        pull.load_image,
        volumes.create_volume,
        volumes.remove_volume,
    ]
    check_registered(NODE, activities)
    return Worker(
        client,
        task_queue=node_task_queue(settings.node),
        workflows=[
            ContainerStartOnNode,
            ContainerExportOnNode,
            ContainerStopOnNode,
            ContainerRestartOnNode,
            ContainerPauseOnNode,
            ContainerRemoveOnNode,
            ContainerExitedOnNode,
            ImagePullOnNode,
            ImageListOnNode,
            ImageRemoveOnNode,
            ImageLoadOnNode,
            VolumeCreateOnNode,
            VolumeRemoveOnNode,
        ],
        workflow_runner=workflow_runner(),
        activities=activities,
    )


@asynccontextmanager
async def running(
    role: str, settings: Settings, client: Client | None = None
) -> AsyncIterator[Worker]:
    """Build and run one worker (``control`` or ``node``) until the context exits."""
    async with AsyncExitStack() as stack:
        engine = make_engine(
            settings.database_url,
            settings.runtime_call_timeout_seconds,
            settings.runtime_grace_seconds,
        )
        stack.push_async_callback(engine.dispose)
        sessions = make_sessionmaker(engine)
        client = client or await connect(settings)
        if role == "control":
            worker = control_worker(client, settings, sessions)
        else:
            runtime = node_runtime(settings)
            await asyncio.to_thread(settings.node_paths().make_private_dirs)
            stack.push_async_callback(runtime.containerd.close)
            deps = EndpointDeps(settings, settings.node_paths(), sessions, runtime.containerd)
            endpoint = await start_endpoint(deps)
            stack.push_async_callback(endpoint.stop)
            await register_node(settings, sessions, endpoint.address)
            stack.push_async_callback(leave_node, settings, sessions)
            worker = node_worker(client, settings, sessions, runtime)
        await stack.enter_async_context(worker)
        if role != "control":
            reconciler = node_reconciler(client, settings, sessions, runtime, deps.execs)
            exits = ExitMonitor(client, sessions, runtime.containerd, settings.node)
            watch = watch_node(reconciler, exits, settings.reconcile_interval_seconds)
            stack.push_async_callback(_cancel, asyncio.create_task(watch))
            prober = HealthProber(
                sessions, runtime.containerd, settings.node_paths(), settings.node
            )
            stack.push_async_callback(_cancel, asyncio.create_task(prober.run()))
            stack.push_async_callback(
                _cancel, asyncio.create_task(heartbeat(settings, sessions, endpoint.address))
            )
        yield worker


async def serve(role: str, settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with running(role, settings):
        log.info("berth %s worker running (node %s)", role, settings.node)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m berth.worker")
    parser.add_argument("role", choices=["control", "node"])
    args = parser.parse_args()
    configure_logging()
    asyncio.run(serve(args.role, Settings()))


if __name__ == "__main__":
    main()
