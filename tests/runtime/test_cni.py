"""CNI bridge networking on the real kernel with Debian's plugins, on a test-only bridge.

Each test gets its own bridge (``bt<6 hex>``) and subnet in 10.213.200.0/24-10.213.250.0/24; the
only traffic is between a test namespace and that bridge.
"""

from __future__ import annotations

import ipaddress
import json
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from berth.errors import InvalidParameter, NotFound
from berth.runtime.cni import (
    CNI_VERSION,
    CniNetwork,
    PortMap,
    delete_masquerade,
    masquerade_bridges,
)
from berth.runtime.mounts import mounts_under
from berth.runtime.netns import create_netns, delete_netns, list_netns, netns_addresses

CNI_BIN_DIR = Path("/usr/lib/cni")
# One third octet per test, so concurrent tests never share a subnet.
_SUBNET_OCTETS = iter(random.sample(range(200, 251), 51))


@dataclass
class Lab:
    """A test's network and the directory its namespaces live in."""

    network: CniNetwork
    netns_dir: Path

    def netns(self, name: str) -> Path:
        return create_netns(self.netns_dir / name)


def bridge_ports(bridge: str) -> list[str]:
    """Links enslaved to the bridge (the host ends of container veths)."""
    shown = subprocess.run(
        ["ip", "-j", "link", "show", "master", bridge], capture_output=True, text=True, check=False
    )
    return [link["ifname"] for link in json.loads(shown.stdout or "[]")]


def bridge_ports_after_netns_cleanup(bridge: str) -> list[str]:
    """Ports left once the kernel finished tearing down deleted namespaces (it does so async)."""
    deadline = time.monotonic() + 10
    while (ports := bridge_ports(bridge)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return ports


def masquerade_rules(bridge: str) -> list[str]:
    """The nat table's POSTROUTING rules that name ``bridge``."""
    listed = subprocess.run(
        ["iptables", "-w", "5", "-t", "nat", "-S", "POSTROUTING"],
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in listed.stdout.splitlines() if f" {bridge} " in f"{line} "]


def default_routes(netns: Path) -> list[dict[str, str]]:
    shown = subprocess.run(
        ["nsenter", f"--net={netns}", "ip", "-j", "-4", "route", "show", "default"],
        capture_output=True,
        text=True,
        check=True,
    )
    return list(json.loads(shown.stdout or "[]"))


def link_exists(name: str) -> bool:
    shown = subprocess.run(["ip", "link", "show", name], capture_output=True, check=False)
    return shown.returncode == 0


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A bridge network under a short temp dir; namespaces, veths and the bridge are removed."""
    directory = Path(tempfile.mkdtemp(prefix="bt", dir="/tmp"))
    bridge = f"bt{secrets.token_hex(3)}"
    subnet = f"10.213.{next(_SUBNET_OCTETS)}.0/24"
    network = CniNetwork(CNI_BIN_DIR, "berth-test", bridge, subnet, directory / "cni")
    yield Lab(network, directory / "netns")
    for path in list_netns(directory / "netns"):
        delete_netns(path)
    leaked_ports = bridge_ports_after_netns_cleanup(bridge) if link_exists(bridge) else []
    leaked_mounts = mounts_under(directory)
    subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
    delete_masquerade(bridge)
    shutil.rmtree(directory)
    assert leaked_ports == [], "veths outlived their namespaces"
    assert leaked_mounts == [], "namespaces left bound"


def test_cni_network_plugins_support_configured_version(lab: Lab) -> None:
    versions = lab.network.supported_versions()
    assert all(CNI_VERSION in supported for supported in versions.values())


def test_cni_network_invalid_subnet_raises_invalid_parameter() -> None:
    with pytest.raises(InvalidParameter):
        CniNetwork(CNI_BIN_DIR, "berth-test", "btinvalid", "10.213.200.1/24", Path("/tmp"))


def test_attach_new_netns_ip_in_subnet_present_inside(lab: Lab) -> None:
    netns = lab.netns("c1")
    result = lab.network.attach("c1", netns)
    assert ipaddress.ip_address(result.ip) in lab.network.subnet
    assert result.prefix_len == 24
    assert result.gateway == lab.network.gateway
    assert result.interface == "eth0"
    assert result.ip in netns_addresses(netns)
    assert "127.0.0.1" in netns_addresses(netns)


def test_attach_twice_keeps_one_reservation(lab: Lab) -> None:
    netns = lab.netns("c1")
    first = lab.network.attach("c1", netns)
    second = lab.network.attach("c1", netns)
    assert second == first
    assert lab.network.reservations() == {first.ip: "c1"}


def test_attach_after_netns_recreated_keeps_one_reservation(lab: Lab) -> None:
    lab.network.attach("c1", lab.netns("c1"))
    delete_netns(lab.netns_dir / "c1")
    result = lab.network.attach("c1", lab.netns("c1"))
    assert lab.network.reservations() == {result.ip: "c1"}
    assert result.ip in netns_addresses(lab.netns_dir / "c1")


def test_attach_missing_netns_raises_not_found(lab: Lab) -> None:
    with pytest.raises(NotFound):
        lab.network.attach("c1", lab.netns_dir / "never-created")


def test_attach_netns_reaches_gateway(lab: Lab) -> None:
    netns = lab.netns("c1")
    lab.network.attach("c1", netns)
    with socket.create_server((lab.network.gateway, 0)) as server:
        server.settimeout(5)
        port = server.getsockname()[1]
        client = (
            f"import socket; socket.create_connection(('{lab.network.gateway}', {port}), 5)"
            ".sendall(b'hello')"
        )
        subprocess.run(["nsenter", f"--net={netns}", sys.executable, "-c", client], check=True)
        connection, (peer, _) = server.accept()
        with connection:
            assert connection.recv(5) == b"hello"
    assert peer in netns_addresses(netns)


def test_reservations_two_containers_lists_both(lab: Lab) -> None:
    first = lab.network.attach("c1", lab.netns("c1"))
    second = lab.network.attach("c2", lab.netns("c2"))
    assert first.ip != second.ip
    assert lab.network.reservations() == {first.ip: "c1", second.ip: "c2"}


def test_reservations_nothing_attached_empty(lab: Lab) -> None:
    assert lab.network.reservations() == {}


def test_detach_attached_frees_reservation(lab: Lab) -> None:
    netns = lab.netns("c1")
    result = lab.network.attach("c1", netns)
    lab.network.detach("c1", netns)
    assert lab.network.reservations() == {}
    assert result.ip not in netns_addresses(netns)


def test_detach_after_netns_deleted_frees_ip(lab: Lab) -> None:
    netns = lab.netns("c1")
    lab.network.attach("c1", netns)
    delete_netns(netns)
    lab.network.detach("c1", netns)
    assert lab.network.reservations() == {}


def test_detach_netns_left_as_plain_file_frees_ip(lab: Lab) -> None:
    netns = lab.netns("c1")
    lab.network.attach("c1", netns)
    delete_netns(netns)
    netns.touch()
    lab.network.detach("c1", netns)
    assert lab.network.reservations() == {}


def test_detach_never_attached_succeeds(lab: Lab) -> None:
    lab.network.detach("c1", lab.netns("c1"))
    lab.network.detach("c1", lab.netns_dir / "never-created")
    assert lab.network.reservations() == {}


def test_detach_twice_succeeds(lab: Lab) -> None:
    netns = lab.netns("c1")
    lab.network.attach("c1", netns)
    lab.network.detach("c1", netns)
    lab.network.detach("c1", netns)
    assert lab.network.reservations() == {}


def test_detach_one_container_keeps_other_reservation(lab: Lab) -> None:
    lab.network.attach("c1", lab.netns("c1"))
    second = lab.network.attach("c2", lab.netns("c2"))
    lab.network.detach("c1", lab.netns_dir / "c1")
    assert lab.network.reservations() == {second.ip: "c2"}


def test_attach_loopback_only_brings_up_loopback_without_ip(lab: Lab) -> None:
    netns = lab.netns("c1")
    lab.network.attach_loopback_only(netns, "c1")
    lab.network.attach_loopback_only(netns, "c1")
    assert netns_addresses(netns) == ["127.0.0.1"]
    assert lab.network.reservations() == {}


def test_attach_netns_default_route_via_bridge_gateway(lab: Lab) -> None:
    netns = lab.netns("c1")
    lab.network.attach("c1", netns)
    routes = default_routes(netns)
    assert [(r.get("gateway"), r.get("dev")) for r in routes] == [(lab.network.gateway, "eth0")]


def test_attach_sets_one_masquerade_rule_for_the_subnet(lab: Lab) -> None:
    lab.network.attach("c1", lab.netns("c1"))
    lab.network.attach("c2", lab.netns("c2"))
    rules = masquerade_rules(lab.network.bridge)
    assert len(rules) == 1
    rule = rules[0].split()
    assert rule[:4] == ["-A", "POSTROUTING", "-s", str(lab.network.subnet)]
    assert rule[4:7] == ["!", "-o", lab.network.bridge]
    assert rule[-2:] == ["-j", "MASQUERADE"]


def test_ensure_masquerade_twice_changes_nothing_the_second_time(lab: Lab) -> None:
    assert lab.network.ensure_masquerade() is True
    assert lab.network.ensure_masquerade() is False
    assert len(masquerade_rules(lab.network.bridge)) == 1


def test_ensure_masquerade_setting_off_removes_the_rule(lab: Lab) -> None:
    lab.network.ensure_masquerade()
    off = CniNetwork(
        CNI_BIN_DIR,
        lab.network.name,
        lab.network.bridge,
        str(lab.network.subnet),
        lab.network.ipam_dir.parent,
        masquerade=False,
    )
    assert off.ensure_masquerade() is True
    assert masquerade_rules(lab.network.bridge) == []


def test_attach_masquerade_off_adds_no_rule_and_keeps_default_route(lab: Lab) -> None:
    off = CniNetwork(
        CNI_BIN_DIR,
        lab.network.name,
        lab.network.bridge,
        str(lab.network.subnet),
        lab.network.ipam_dir.parent,
        masquerade=False,
    )
    netns = lab.netns("c1")
    off.attach("c1", netns)
    assert masquerade_rules(lab.network.bridge) == []
    assert [r.get("gateway") for r in default_routes(netns)] == [lab.network.gateway]


def test_delete_masquerade_removes_only_its_bridges_rule(lab: Lab) -> None:
    lab.network.ensure_masquerade()
    assert delete_masquerade(f"{lab.network.bridge}x") == 0
    assert len(masquerade_rules(lab.network.bridge)) == 1
    assert delete_masquerade(lab.network.bridge) == 1
    assert masquerade_rules(lab.network.bridge) == []


def dnat_rules(container_id: str) -> list[str]:
    listed = subprocess.run(
        ["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in listed.splitlines() if f'id: \\"{container_id}\\"' in line]


def test_attach_with_ports_publishes_them_and_detach_removes_them(lab: Lab) -> None:
    container_id = f"pm{secrets.token_hex(6)}"
    netns = lab.netns(container_id)
    port = random.randrange(20000, 30000)

    result = lab.network.attach(container_id, netns, ports=[PortMap(port, 80, "tcp")])

    assert container_id in lab.network.port_forwards()
    assert dnat_rules(container_id), "no DNAT jump for the container"
    lab.network.detach(container_id, netns)
    assert container_id not in lab.network.port_forwards()
    assert dnat_rules(container_id) == []
    assert result.ip not in lab.network.reservations()


def test_detach_after_netns_deleted_removes_port_forwards(lab: Lab) -> None:
    container_id = f"pm{secrets.token_hex(6)}"
    netns = lab.netns(container_id)
    lab.network.attach(
        container_id, netns, ports=[PortMap(random.randrange(20000, 30000), 80, "udp")]
    )
    delete_netns(netns)

    lab.network.detach(container_id, netns)

    assert container_id not in lab.network.port_forwards()


def test_published_port_on_bridge_address_reaches_the_container(lab: Lab) -> None:
    container_id = f"pm{secrets.token_hex(6)}"
    netns = lab.netns(container_id)
    host_port = random.randrange(20000, 30000)
    lab.network.attach(container_id, netns, ports=[PortMap(host_port, 8080, "tcp")])
    server = subprocess.Popen(
        [
            "nsenter",
            f"--net={netns}",
            sys.executable,
            "-c",
            "import socket; s = socket.create_server(('0.0.0.0', 8080)); print('up', flush=True);"
            " c, _ = s.accept(); c.sendall(b'from-container'); c.close()",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline() == "up\n"
        with socket.create_connection((lab.network.gateway, host_port), 5) as client:
            client.settimeout(5)
            assert client.recv(64) == b"from-container"
    finally:
        server.kill()
        server.wait()
        lab.network.detach(container_id, netns)


def test_attach_existing_without_its_port_forward_publishes_again(lab: Lab) -> None:
    container_id = f"pm{secrets.token_hex(6)}"
    netns = lab.netns(container_id)
    lab.network.attach(container_id, netns)
    ports = [PortMap(random.randrange(20000, 30000), 80, "tcp")]

    lab.network.attach(container_id, netns, ports=ports)

    assert container_id in lab.network.port_forwards()
    lab.network.detach(container_id, netns)


def test_forwarded_ports_lists_every_published_port_with_its_container(lab: Lab) -> None:
    container_id = f"pm{secrets.token_hex(6)}"
    netns = lab.netns(container_id)
    port = random.randrange(20000, 30000)
    lab.network.attach(
        container_id, netns, ports=[PortMap(port, 80, "tcp"), PortMap(port + 1, 53, "udp")]
    )

    forwarded = lab.network.forwarded_ports()

    assert forwarded[("tcp", port)] == container_id
    assert forwarded[("udp", port + 1)] == container_id
    lab.network.detach(container_id, netns)
    assert ("tcp", port) not in lab.network.forwarded_ports()


def test_masquerade_bridges_names_the_bridge_until_its_rule_goes(lab: Lab) -> None:
    lab.network.ensure_masquerade()
    assert lab.network.bridge in masquerade_bridges()
    delete_masquerade(lab.network.bridge)
    assert lab.network.bridge not in masquerade_bridges()
