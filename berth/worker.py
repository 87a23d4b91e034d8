"""The one place that wires real dependencies into the control worker and the node agents.

Run as ``python -m berth.worker control`` or ``python -m berth.worker node`` (configured by
``BERTH_*`` environment variables, see :mod:`berth.config`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.mount import MountActivities
from activities.network import NetworkActivities
from activities.shim import ShimActivities
from activities.spec import SpecActivities
from activities.state import StateActivities
from activities.task import TaskActivities
from berth.client import connect
from berth.config import Settings, node_task_queue
from berth.db.repository import NodeRepository
from berth.db.session import make_engine, make_sessionmaker
from berth.runtime.cni import CniNetwork
from berth.runtime.containerd import ContainerdClient
from workflows.container_create import ContainerCreate
from workflows.container_start import ContainerStart, ContainerStartOnNode

log = logging.getLogger("berth.worker")


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox, with Berth's own and its libraries' modules passed through.

    Re-importing them for every workflow run costs tens of milliseconds per start; they hold no
    per-run state, and the workflows that use them do no I/O.
    """
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            "activities", "berth", "workflows", "pydantic", "pydantic_core", "sqlalchemy", "grpc"
        )
    )


def control_worker(
    client: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> Worker:
    """The control worker: public workflows and their PostgreSQL steps, on queue ``berth``."""
    state = StateActivities(sessions)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[ContainerStart, ContainerCreate],
        workflow_runner=workflow_runner(),
        activities=[state.create_container, state.locate_container, state.abort_operation],
    )


@dataclass
class NodeRuntime:
    """The host-bound dependencies of one node agent."""

    containerd: ContainerdClient
    cni: CniNetwork


def node_runtime(settings: Settings) -> NodeRuntime:
    paths = settings.node_paths()
    return NodeRuntime(
        containerd=ContainerdClient(
            paths.containerd_socket, settings.containerd_namespace, settings.node
        ),
        cni=CniNetwork(
            settings.cni_bin_dir,
            network_name=f"berth-{settings.node}",
            bridge=settings.bridge,
            subnet=settings.subnet,
            data_dir=paths.cni_dir,
        ),
    )


async def register_node(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        await NodeRepository(session).register(settings.node, settings.bridge, settings.subnet)


def node_worker(
    client: Client,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    runtime: NodeRuntime,
) -> Worker:
    """A node agent: the saga's host-bound steps, on queue ``berth-node-<node>``."""
    paths = settings.node_paths()
    state = StateActivities(sessions)
    mount = MountActivities(sessions, runtime.containerd, paths)
    network = NetworkActivities(sessions, runtime.cni, paths)
    spec = SpecActivities(paths)
    shim = ShimActivities(runtime.containerd, paths)
    task = TaskActivities(runtime.containerd)
    return Worker(
        client,
        task_queue=node_task_queue(settings.node),
        workflows=[ContainerStartOnNode],
        workflow_runner=workflow_runner(),
        activities=[
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
            task.start_task,
            task.stop_task,
        ],
    )


@asynccontextmanager
async def running(
    role: str, settings: Settings, client: Client | None = None
) -> AsyncIterator[Worker]:
    """Build and run one worker (``control`` or ``node``) until the context exits."""
    async with AsyncExitStack() as stack:
        engine = make_engine(settings.database_url)
        stack.push_async_callback(engine.dispose)
        sessions = make_sessionmaker(engine)
        client = client or await connect(settings)
        if role == "control":
            worker = control_worker(client, settings, sessions)
        else:
            runtime = node_runtime(settings)
            stack.push_async_callback(runtime.containerd.close)
            await register_node(settings, sessions)
            worker = node_worker(client, settings, sessions, runtime)
        await stack.enter_async_context(worker)
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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve(args.role, Settings()))


if __name__ == "__main__":
    main()
