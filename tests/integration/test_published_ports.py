"""Published ports (``-p``) on the real stack, through CNI's portmap plugin.

The only connections are from the host to the node's own bridge address (the project's own
network). Host ports are picked per test from 18000-18999 (free on the host, published by no
one), so suites that run side by side on one machine never ask for the same one.
"""

from __future__ import annotations

import asyncio
import random
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from berth.activities.mount import MountActivities
from berth.activities.network import NetworkActivities
from berth.activities.shim import ShimActivities
from berth.activities.spec import SpecActivities
from berth.activities.task import TaskActivities
from berth.contract import ContainerConfig, NetworkMode
from berth.errors import Conflict, System
from berth.leaks import LeakKind, check_node
from berth.reconciler import Reconciler, Undo
from berth.runtime.image import build_busybox_image, import_image
from berth.runtime.ports import host_port_free
from berth.steps import NetworkInput
from tests.integration.conftest import Stack

HTTPD = ["sh", "-c", "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 80 -h /www"]


def free_host_port(stack: Stack) -> int:
    forwarded = stack.runtime.cni.forwarded_ports()
    for _ in range(1000):
        port = random.randrange(18000, 19000)
        if ("tcp", port) not in forwarded and host_port_free("", port, "tcp"):
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


def node_reconciler(stack: Stack) -> Reconciler:
    """A reconciler of the session's node-1 that takes every operation for ended."""
    paths, runtime = stack.settings.node_paths(), stack.runtime

    async def never_running(operation: str) -> bool:
        return False

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
        never_running,
    )


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

    assert (await stack.footprint(second)).empty
    assert (await stack.berth.get(second)).state == "created"
    assert await fetch(f"http://{stack.runtime.cni.gateway}:{port}/") == "hello\n"


async def test_host_port_held_by_a_process_on_the_node_is_conflict(stack: Stack) -> None:
    port = free_host_port(stack)
    container_id = await stack.create(ports=[{"container_port": 80, "host_port": port}])

    with (
        socket.create_server(("0.0.0.0", port)),
        pytest.raises(Conflict, match="already in use on node"),
    ):
        await stack.berth.start(container_id)

    assert (await stack.footprint(container_id)).empty


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
