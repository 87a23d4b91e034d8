"""Published ports (``-p``) on the real stack, through CNI's portmap plugin.

The only connections are from the host to the node's own bridge address (the project's own
network). Host ports are picked per test from 18000-18999 (free on the host, published by no
one), so suites that run side by side on one machine never ask for the same one.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import urllib.error
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select
from temporalio.api.enums.v1 import EventType

from berth.activities.mount import MountActivities
from berth.activities.network import NetworkActivities
from berth.activities.shim import ShimActivities
from berth.activities.spec import SpecActivities
from berth.activities.state import StateActivities
from berth.activities.task import TaskActivities
from berth.contract import ContainerConfig, ContainerCreateInput, NetworkMode
from berth.db.models import Container, Node, PortMapping, SagaStep
from berth.db.repository import NodeRepository
from berth.errors import Conflict, System
from berth.leaks import LeakKind, check_node
from berth.reconciler import STALE_PULL_LEASE_AGE, Reconciler, Undo, WorkflowRunning
from berth.runtime.image import build_busybox_image, import_image
from berth.runtime.ports import host_port_free
from berth.steps import NetworkInput
from tests.integration.conftest import Stack

# The start saga's steps up to the network, as its history names them.
SAGA_FRONT = ("begin_start", "check_image", "pull_image", "mount_rootfs", "attach_network")
HTTPD = ["sh", "-c", "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 80 -h /www"]


def free_host_port(stack: Stack, protocol: str = "tcp") -> int:
    forwarded = stack.runtime.cni.forwarded_ports()
    for _ in range(1000):
        port = random.randrange(18000, 19000)
        if (protocol, port) not in forwarded and host_port_free("", port, protocol):
            return port
    raise AssertionError("no free port in 18000-18999")


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.read().decode()


async def fetch(url: str, attempts: int = 50) -> str:
    """The body at ``url`` once the server answers (httpd takes a moment to listen)."""
    for _ in range(attempts):
        try:
            return await asyncio.to_thread(get, url)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            await asyncio.sleep(0.1)
    return await asyncio.to_thread(get, url)


async def never_running(operation: str) -> bool:
    return False


def node_reconciler(
    stack: Stack,
    workflow_running: WorkflowRunning = never_running,
    stale_pull_lease_age: timedelta = STALE_PULL_LEASE_AGE,
) -> Reconciler:
    """A reconciler of the session's node-1 that takes every operation for ended (unless
    ``workflow_running`` says otherwise)."""
    paths, runtime = stack.settings.node_paths(), stack.runtime
    return Reconciler(
        stack.settings.node,
        paths,
        runtime.containerd,
        runtime.cni,
        stack.sessions,
        Undo(
            mount=MountActivities(stack.sessions, runtime.containerd, paths),
            network=NetworkActivities(stack.sessions, runtime.cni, paths),
            spec=SpecActivities(paths),
            shim=ShimActivities(runtime.containerd, paths),
            task=TaskActivities(runtime.containerd),
        ),
        workflow_running,
        stale_pull_lease_age=stale_pull_lease_age,
    )


async def start_steps(stack: Stack, container_id: str) -> list[str]:
    """The saga's steps the container's last start ran, in order, from its workflow's history
    (local activities are markers there; the Web UI lists them)."""
    history = await stack.berth.temporal.get_workflow_handle(
        f"container-start-{container_id}"
    ).fetch_history()
    ran = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            marker = event.marker_recorded_event_attributes
            if marker.marker_name == "core_local_activity":
                ran.append(json.loads(marker.details["data"].payloads[0].data)["activity_type"])
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            ran.append(event.activity_task_scheduled_event_attributes.activity_type.name)
    return [step for step in ran if step in SAGA_FRONT]


async def journaled_steps(stack: Stack, container_id: str) -> list[str]:
    async with stack.sessions() as session:
        rows = await session.scalars(
            select(SagaStep.step).where(SagaStep.container_id == container_id)
        )
        return list(rows.all())


async def assert_refused_before_anything(stack: Stack, container_id: str) -> None:
    """The start ran its first step only: no mount, netns, IP, holder, port or record of a
    step, and the leak checker finds nothing of the container."""
    assert await start_steps(stack, container_id) == ["begin_start"]
    assert await journaled_steps(stack, container_id) == []
    assert (await stack.footprint(container_id)).empty
    paths, runtime, node = stack.settings.node_paths(), stack.runtime, stack.settings.node
    leaks = await check_node(node, paths, runtime.containerd, runtime.cni, stack.sessions)
    assert [f for f in leaks if f.container_id == container_id] == []
    assert (await stack.berth.get(container_id)).state == "created"


def refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), 2).close()
    except ConnectionRefusedError:
        return True
    return False


async def test_published_port_answers_on_the_bridge_address_and_is_gone_after_stop(
    stack: Stack,
) -> None:
    port = free_host_port(stack)
    container_id = await stack.create(cmd=HTTPD, ports=[{"container_port": 80, "host_port": port}])

    await stack.berth.start(container_id)

    gateway = stack.runtime.cni.gateway
    assert await fetch(f"http://{gateway}:{port}/") == "hello\n"
    trace = await stack.footprint(container_id)
    assert (trace.ports, trace.port_forward) == ([f"{port}/tcp"], True)

    await stack.berth.stop(container_id, timeout=1)

    assert (await stack.footprint(container_id)).empty
    assert await asyncio.to_thread(refused, gateway, port)


async def test_second_container_on_the_same_host_port_is_conflict_and_leaves_nothing(
    stack: Stack,
) -> None:
    port = free_host_port(stack)
    first = await stack.create(cmd=HTTPD, ports=[{"container_port": 80, "host_port": port}])
    second = await stack.create(cmd=HTTPD, ports=[{"container_port": 80, "host_port": port}])
    await stack.berth.start(first)

    with pytest.raises(Conflict, match=f"0.0.0.0:{port} failed: port is already allocated"):
        await stack.berth.start(second)

    await assert_refused_before_anything(stack, second)
    assert await start_steps(stack, first) == [
        "begin_start",
        "mount_rootfs",
        "attach_network",
    ]
    assert await fetch(f"http://{stack.runtime.cni.gateway}:{port}/") == "hello\n"


async def test_two_starts_racing_for_one_host_port_one_runs_the_other_is_conflict(
    stack: Stack,
) -> None:
    port = free_host_port(stack)
    ids = [
        await stack.create(cmd=HTTPD, ports=[{"container_port": 80, "host_port": port}])
        for _ in range(2)
    ]

    outcomes = await asyncio.gather(
        *(stack.berth.start(cid) for cid in ids), return_exceptions=True
    )

    conflicts = [cid for cid, out in zip(ids, outcomes, strict=True) if isinstance(out, Conflict)]
    assert len(conflicts) == 1, outcomes
    (winner,) = set(ids) - set(conflicts)
    assert (await stack.footprint(conflicts[0])).empty
    assert (await stack.footprint(winner)).ports == [f"{port}/tcp"]
    assert await fetch(f"http://{stack.runtime.cni.gateway}:{port}/") == "hello\n"


async def test_network_step_claim_of_a_taken_port_is_conflict_when_the_early_check_was_passed(
    stack: Stack,
) -> None:
    """Two starts that both passed ``begin_start``: the network step's claim decides."""
    port = free_host_port(stack)
    first = await stack.create(cmd=HTTPD, ports=[{"container_port": 80, "host_port": port}])
    second = await stack.create(ports=[{"container_port": 80, "host_port": port}])
    await stack.berth.start(first)
    paths, runtime, node = stack.settings.node_paths(), stack.runtime, stack.settings.node
    network = NetworkActivities(stack.sessions, runtime.cni, paths)
    config = ContainerConfig.model_validate((await stack.berth.get(second)).config)
    request = NetworkInput(container_id=second, node=node, mode=NetworkMode.BRIDGE, config=config)

    with pytest.raises(Conflict, match="port is already allocated"):
        await network.attach_network(request)

    await network.detach_network(request)
    assert (await stack.footprint(second)).empty
    assert (await stack.footprint(first)).ports == [f"{port}/tcp"]


async def test_placement_skips_a_node_where_the_host_port_is_published(stack: Stack) -> None:
    """Two idle nodes named to sort first: the first would be picked, but it publishes the
    port, so the container is placed on the second (a named node would not be refused)."""
    tag = uuid.uuid4().hex[:8]
    busy, free = f"0-ports-a-{tag}", f"0-ports-b-{tag}"
    port = free_host_port(stack)
    async with stack.sessions.begin() as session:
        for name in (busy, free):
            await NodeRepository(session).register(name, "berth-x0", "10.254.0.0/24")
        session.add(
            PortMapping(
                node=busy,
                protocol="tcp",
                host_port=port,
                container_id=f"{tag}-holder",
                container_port=80,
            )
        )
    state = StateActivities(stack.sessions)

    def config(name: str, node: str | None) -> ContainerConfig:
        return ContainerConfig.model_validate(
            {
                "name": name,
                "image": "busybox",
                "node": node,
                "ports": [{"container_port": 80, "host_port": port}],
            }
        )

    try:
        placed = await state.create_container(ContainerCreateInput(config=config(f"p-{tag}", None)))
        pinned = await state.create_container(ContainerCreateInput(config=config(f"q-{tag}", busy)))
    finally:
        async with stack.sessions.begin() as session:
            await session.execute(delete(Container).where(Container.node.in_([busy, free])))
            await session.execute(delete(PortMapping).where(PortMapping.node == busy))
            await session.execute(delete(Node).where(Node.name.in_([busy, free])))

    assert (placed.node, pinned.node) == (free, busy)


async def test_host_port_held_by_a_process_on_the_node_is_conflict(stack: Stack) -> None:
    port = free_host_port(stack)
    container_id = await stack.create(ports=[{"container_port": 80, "host_port": port}])

    with (
        socket.create_server(("0.0.0.0", port)),
        pytest.raises(Conflict, match="already in use on node"),
    ):
        await stack.berth.start(container_id)

    await assert_refused_before_anything(stack, container_id)


async def test_host_port_bound_by_a_plain_socket_is_conflict_before_mount(stack: Stack) -> None:
    """A socket bound and not listening, as a plain ``bind`` leaves it (no SO_REUSEADDR)."""
    port = free_host_port(stack, "udp")
    container_id = await stack.create(
        ports=[{"container_port": 53, "host_port": port, "protocol": "udp"}]
    )

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", port))
        with pytest.raises(Conflict, match=f"0.0.0.0:{port} failed: port is already in use"):
            await stack.berth.start(container_id)

    await assert_refused_before_anything(stack, container_id)


async def test_failed_start_undoes_the_port_mapping(stack: Stack) -> None:
    port = free_host_port(stack)
    container_id = await stack.create(
        cmd=["/no/such/binary"], ports=[{"container_port": 80, "host_port": port}]
    )

    with pytest.raises(System):
        await stack.berth.start(container_id)

    trace = await stack.footprint(container_id)
    assert trace.empty, trace
    assert port not in {p for _, p in stack.runtime.cni.forwarded_ports()}


async def test_port_without_host_port_gets_one_from_the_ephemeral_range(stack: Stack) -> None:
    container_id = await stack.create(cmd=HTTPD, ports=[{"container_port": 80}])

    await stack.berth.start(container_id)

    (published,) = (await stack.footprint(container_id)).ports
    port = int(published.split("/")[0])
    assert 49153 <= port <= 60999
    assert await fetch(f"http://{stack.runtime.cni.gateway}:{port}/") == "hello\n"


async def test_reconciler_releases_ports_a_crashed_start_left(stack: Stack) -> None:
    """What an agent killed after the network step leaves: ports recorded and forwarded, the
    container not running and no operation in flight. The reconciler releases both."""
    port = free_host_port(stack)
    container_id = await stack.create(ports=[{"container_port": 80, "host_port": port}])
    paths, runtime, node = stack.settings.node_paths(), stack.runtime, stack.settings.node
    network = NetworkActivities(stack.sessions, runtime.cni, paths)
    config = (await stack.berth.get(container_id)).config
    await network.attach_network(
        NetworkInput(
            container_id=container_id,
            node=node,
            mode=NetworkMode.BRIDGE,
            config=ContainerConfig.model_validate(config),
        )
    )
    leaks = await check_node(node, paths, runtime.containerd, runtime.cni, stack.sessions)
    kinds = {f.kind for f in leaks if f.container_id == container_id}
    assert {LeakKind.PORTS_OF_IDLE_CONTAINER, LeakKind.PORT_FORWARD_OF_IDLE_CONTAINER} <= kinds

    reconciler = node_reconciler(stack)
    repairs = await reconciler.reconcile()

    assert any(r.container_id == container_id for r in repairs)
    assert (await stack.footprint(container_id)).empty
    leaks = await check_node(node, paths, runtime.containerd, runtime.cni, stack.sessions)
    assert [f for f in leaks if f.container_id == container_id] == []


async def test_container_that_exits_by_itself_releases_its_ports(stack: Stack) -> None:
    port = free_host_port(stack)
    container_id = await stack.create(
        cmd=["sh", "-c", "sleep 1"], ports=[{"container_port": 80, "host_port": port}]
    )
    await stack.berth.start(container_id)

    assert await stack.berth.wait(container_id) == 0

    for _ in range(100):  # the exit's workflow releases the host resources after the record
        trace = await stack.footprint(container_id)
        if trace.empty:
            break
        await asyncio.sleep(0.1)
    assert trace.empty, trace


async def test_publish_all_publishes_the_images_exposed_ports(stack: Stack, tmp_path: Path) -> None:
    ref = "local/exposed-http:latest"
    tar = build_busybox_image(tmp_path / "image.tar", ref, config={"ExposedPorts": {"80/tcp": {}}})
    paths = stack.settings.node_paths()
    await import_image(paths, stack.settings.containerd_namespace, tar, ref)
    container_id = await stack.create(image=ref, cmd=HTTPD, publish_all=True)

    await stack.berth.start(container_id)

    (published,) = (await stack.footprint(container_id)).ports
    port = int(published.removesuffix("/tcp"))
    assert 49153 <= port <= 60999
    assert await fetch(f"http://{stack.runtime.cni.gateway}:{port}/") == "hello\n"


async def test_network_step_run_twice_keeps_one_picked_port_and_undo_removes_it(
    stack: Stack,
) -> None:
    container_id = await stack.create(ports=[{"container_port": 80}])
    paths, runtime, node = stack.settings.node_paths(), stack.runtime, stack.settings.node
    network = NetworkActivities(stack.sessions, runtime.cni, paths)
    config = ContainerConfig.model_validate((await stack.berth.get(container_id)).config)
    request = NetworkInput(
        container_id=container_id, node=node, mode=NetworkMode.BRIDGE, config=config
    )

    first = await network.attach_network(request)
    ports = (await stack.footprint(container_id)).ports
    again = await network.attach_network(request)

    assert again == first
    trace = await stack.footprint(container_id)
    assert (trace.ports, trace.port_forward) == (ports, True) and len(ports) == 1
    await network.detach_network(request)
    assert (await stack.footprint(container_id)).empty
