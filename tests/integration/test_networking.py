"""A container's network as Docker sets it up, on the real stack: its /etc files, its default
route and the node's masquerade rule, published ports, and ``berth node ls``.

No traffic leaves the machine: the only connections are from the host to the node's own bridge.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from berth.leaks import LeakKind, check_node
from berth.runtime.cni import delete_masquerade, masquerade_bridges
from tests.integration.conftest import Stack
from tests.integration.test_published_ports import node_reconciler

BERTH = Path(sys.executable).parent / "berth"
SHOW_ETC = "cat /etc/hostname; echo --; cat /etc/hosts; echo --; cat /etc/resolv.conf; sleep 600"


async def _output(stack: Stack, container_id: str, until: str) -> str:
    """The container's output once it holds ``until`` (waits up to 10 s)."""
    text = ""
    for _ in range(100):
        text = (await stack.berth.logs(container_id)).decode()
        if until in text:
            break
        await asyncio.sleep(0.1)
    return text


def _default_routes(netns: Path) -> list[dict[str, str]]:
    shown = subprocess.run(
        ["nsenter", f"--net={netns}", "ip", "-j", "-4", "route", "show", "default"],
        capture_output=True,
        text=True,
        check=True,
    )
    return list(json.loads(shown.stdout or "[]"))


async def test_start_etc_files_inside_are_as_configured(stack: Stack) -> None:
    container_id = await stack.create(
        cmd=["sh", "-c", SHOW_ETC],
        hostname="web.example",
        extra_hosts=["db:10.9.9.9", "gw:host-gateway"],
        dns=["10.53.0.1"],
        dns_search=["corp.example"],
        dns_options=["ndots:2"],
    )

    started = await stack.berth.start(container_id)

    hostname, hosts, resolv = (await _output(stack, container_id, "options")).split("--\n")
    assert hostname == "web.example\n"
    assert "127.0.0.1\tlocalhost\n" in hosts
    assert "10.9.9.9\tdb\n" in hosts
    assert f"{stack.runtime.cni.gateway}\tgw\n" in hosts
    assert f"{started.ip}\tweb.example web\n" in hosts
    assert resolv == "nameserver 10.53.0.1\nsearch corp.example\noptions ndots:2\n"


async def test_start_defaults_short_id_hostname_and_nodes_resolvers_without_loopback(
    stack: Stack,
) -> None:
    container_id = await stack.create(cmd=["sh", "-c", SHOW_ETC])

    started = await stack.berth.start(container_id)

    hostname, hosts, resolv = (await _output(stack, container_id, "nameserver")).split("--\n")
    assert hostname == f"{container_id[:12]}\n"
    assert hosts.endswith(f"{started.ip}\t{container_id[:12]}\n")
    servers = [line.split()[1] for line in resolv.splitlines() if line.startswith("nameserver")]
    assert servers and not any(s.startswith("127.") or s == "::1" for s in servers)


async def test_start_netns_has_default_route_via_bridge_and_node_masquerades(
    stack: Stack,
) -> None:
    container_id = await stack.create()

    await stack.berth.start(container_id)

    netns = stack.settings.node_paths().netns(container_id)
    routes = await asyncio.to_thread(_default_routes, netns)
    assert [(r.get("gateway"), r.get("dev")) for r in routes] == [
        (stack.runtime.cni.gateway, "eth0")
    ]
    rules = subprocess.run(
        ["iptables", "-w", "5", "-t", "nat", "-S", "POSTROUTING"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    subnet, bridge = stack.settings.subnet, stack.settings.bridge
    assert f"-A POSTROUTING -s {subnet} ! -o {bridge}" in rules
    assert "-j MASQUERADE" in rules


async def test_stop_removes_the_etc_files(stack: Stack) -> None:
    container_id = await stack.create()
    await stack.berth.start(container_id)
    assert (await stack.footprint(container_id)).etc_files

    await stack.berth.stop(container_id, timeout=1)

    assert (await stack.footprint(container_id)).empty


async def test_leak_checker_reports_etc_files_of_idle_container(stack: Stack) -> None:
    container_id = await stack.create()
    leftover = stack.settings.node_paths().container_dir(container_id)
    leftover.mkdir(parents=True)
    (leftover / "hosts").write_text("127.0.0.1\tlocalhost\n")

    findings = await check_node(
        stack.settings.node,
        stack.settings.node_paths(),
        stack.containerd,
        stack.runtime.cni,
        stack.sessions,
    )

    assert [(f.kind, f.container_id) for f in findings if f.container_id == container_id] == [
        (LeakKind.ETC_FILES_OF_IDLE_CONTAINER, container_id)
    ]


def _berth(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BERTH_DATABASE_URL": stack.settings.database_url.get_secret_value()}
    return subprocess.run([str(BERTH), *args], capture_output=True, text=True, env=env, timeout=60)


async def test_node_ls_shows_the_nodes_containers_and_ips_used_and_free(stack: Stack) -> None:
    container_id = await stack.create()
    await stack.berth.start(container_id)

    listed = await asyncio.to_thread(_berth, stack, "node", "ls", "--format", "json")

    assert listed.returncode == 0, listed.stderr
    nodes = {n["Name"]: n for n in map(json.loads, listed.stdout.splitlines())}
    node = nodes[stack.settings.node]
    assert node["Status"] == "ready"
    assert node["Subnet"] == stack.settings.subnet
    assert node["Containers"] >= 1 and node["ContainersRunning"] >= 1
    assert node["IPsUsed"] >= 1
    assert node["IPsFree"] == node["IPsTotal"] - node["IPsUsed"]
    assert node["IPsTotal"] >= 1000
    table = await asyncio.to_thread(_berth, stack, "node", "ls")
    assert table.stdout.splitlines()[0].split() == [
        "NODE",
        "STATUS",
        "BRIDGE",
        "SUBNET",
        "CONTAINERS",
        "RUNNING",
        "IPS",
        "USED",
        "IPS",
        "FREE",
    ]


async def test_reconciler_puts_the_nodes_masquerade_rule_back(stack: Stack) -> None:
    container_id = await stack.create()
    await stack.berth.start(container_id)
    bridge = stack.settings.bridge
    await asyncio.to_thread(delete_masquerade, bridge)
    assert bridge not in await asyncio.to_thread(masquerade_bridges)

    await node_reconciler(stack).reconcile()

    assert bridge in await asyncio.to_thread(masquerade_bridges)
