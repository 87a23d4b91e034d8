"""Which ports a container publishes, and whether the node can take one."""

from __future__ import annotations

import socket

import pytest

from berth.contract import PortBinding
from berth.errors import InvalidParameter
from berth.runtime.ports import exposed_ports, host_port_free, port_free_on_node, published_ports

IMAGE = {"ExposedPorts": {"80/tcp": {}, "53/udp": {}, "9000": {}}}


def test_exposed_ports_reads_port_and_protocol_tcp_by_default() -> None:
    assert exposed_ports(IMAGE) == [(80, "tcp"), (53, "udp"), (9000, "tcp")]


def test_exposed_ports_malformed_raises_invalid_parameter() -> None:
    with pytest.raises(InvalidParameter):
        exposed_ports({"ExposedPorts": {"http/tcp": {}}})


def test_published_ports_without_publish_all_only_the_bindings() -> None:
    bindings = PortBinding.parse("18080:80")
    assert published_ports(bindings, False, IMAGE) == bindings


def test_published_ports_publish_all_adds_exposed_ports_not_bound_yet() -> None:
    chosen = published_ports(PortBinding.parse("18080:80"), True, IMAGE)
    assert [(p.container_port, p.protocol, p.host_port) for p in chosen] == [
        (80, "tcp", 18080),
        (53, "udp", None),
        (9000, "tcp", None),
    ]


def test_host_port_free_false_while_a_socket_listens() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert host_port_free("127.0.0.1", port, "tcp") is False
        assert host_port_free("", port, "tcp") is False
    assert host_port_free("127.0.0.1", port, "tcp") is True


def test_host_port_free_udp_false_while_a_receiver_that_allows_reuse_holds_it() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        receiver.bind(("127.0.0.1", 0))
        port = receiver.getsockname()[1]
        assert host_port_free("", port, "udp") is False
    assert host_port_free("", port, "udp") is True


def test_port_free_on_node_another_containers_forwarded_port_is_taken() -> None:
    with socket.socket() as probe:  # a port nothing listens on, for the bind test to pass
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    forwarded = {("tcp", port): "other"}
    assert port_free_on_node(forwarded, "mine")("", port, "tcp") is False
    assert port_free_on_node(forwarded, "other")("", port, "tcp") is True
    assert port_free_on_node(forwarded, "mine")("", port, "udp") is True
