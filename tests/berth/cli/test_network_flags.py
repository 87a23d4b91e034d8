"""docker run's network flags as ContainerConfig fields, and ports as ps and inspect show them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from berth.cli.network_flags import add_network_flags, docker_ports, network_fields, ports_column
from berth.cli.usage import UsageError
from berth.contract import ContainerConfig


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_network_flags(parser)
    return parser.parse_args(list(argv))


def test_network_fields_no_flags_gives_nothing() -> None:
    assert network_fields(_parse()) == {}


def test_network_fields_every_flag_validates_as_a_config() -> None:
    fields = network_fields(
        _parse(
            "-p", "18080:80", "-p", "127.0.0.1::53/udp", "-P", "--hostname", "web",
            "--add-host", "db:10.0.0.9", "--dns", "10.53.0.1", "--dns-search", "corp.example",
            "--dns-option", "ndots:2",
        )
    )  # fmt: skip
    config = ContainerConfig.model_validate({"name": "web-1", "image": "busybox", **fields})
    assert [(p.host_ip, p.host_port, p.container_port, p.protocol) for p in config.ports] == [
        ("", 18080, 80, "tcp"),
        ("127.0.0.1", None, 53, "udp"),
    ]
    assert config.publish_all and config.hostname == "web"
    assert (config.extra_hosts, config.dns) == (["db:10.0.0.9"], ["10.53.0.1"])
    assert (config.dns_search, config.dns_options) == (["corp.example"], ["ndots:2"])


def test_network_fields_bad_publish_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="for -p"):
        network_fields(_parse("-p", "http:80"))


@dataclass
class Row:
    host_ip: str
    host_port: int
    container_port: int
    protocol: str


ROWS = [Row("127.0.0.1", 5353, 53, "udp"), Row("", 18080, 80, "tcp"), Row("", 18081, 80, "tcp")]


def test_ports_column_as_docker_ps_shows_them() -> None:
    assert ports_column(ROWS) == (
        "127.0.0.1:5353->53/udp, 0.0.0.0:18080->80/tcp, 0.0.0.0:18081->80/tcp"
    )


def test_docker_ports_groups_bindings_and_shows_unpublished_exposed_as_null() -> None:
    assert docker_ports(ROWS, ["80/tcp", "443/tcp"]) == {
        "80/tcp": [
            {"HostIp": "0.0.0.0", "HostPort": "18080"},
            {"HostIp": "0.0.0.0", "HostPort": "18081"},
        ],
        "443/tcp": None,
        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}],
    }
