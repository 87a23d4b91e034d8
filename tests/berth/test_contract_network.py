"""ContainerConfig's networking fields: docker's -p syntax, hostname, --add-host, --dns*."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from berth.contract import ContainerConfig, PortBinding


def _config(**fields: Any) -> ContainerConfig:
    return ContainerConfig(name="web-1", image="local/busybox:latest", **fields)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("18080:80", [(80, "tcp", "", 18080)]),
        ("127.0.0.1:8080:80/udp", [(80, "udp", "127.0.0.1", 8080)]),
        ("80", [(80, "tcp", "", None)]),
        ("127.0.0.1::53/udp", [(53, "udp", "127.0.0.1", None)]),
        ("8000-8001:80-81", [(80, "tcp", "", 8000), (81, "tcp", "", 8001)]),
    ],
)
def test_port_binding_parse_docker_syntax(spec: str, expected: list[tuple[Any, ...]]) -> None:
    parsed = [
        (p.container_port, p.protocol, p.host_ip, p.host_port) for p in PortBinding.parse(spec)
    ]
    assert parsed == expected


@pytest.mark.parametrize(
    "spec", ["", "a", "x:80", "1:2:3:4", "80/sctp", "0", "70000", "8000-8002:80-81", "::1:80:80"]
)
def test_port_binding_parse_malformed_raises_value_error(spec: str) -> None:
    with pytest.raises(ValueError):
        PortBinding.parse(spec)


def test_config_ports_and_publish_all_default_empty() -> None:
    config = _config()
    assert (config.ports, config.publish_all, config.hostname) == ([], False, None)


def test_config_extra_hosts_normalised_and_host_gateway_kept() -> None:
    config = _config(extra_hosts=["db:10.0.0.1", "gw:host-gateway", "v6:[::1]"])
    assert config.extra_hosts == ["db:10.0.0.1", "gw:host-gateway", "v6:::1"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hostname", "-bad"),
        ("hostname", "a" * 64),
        ("extra_hosts", ["nocolon"]),
        ("extra_hosts", ["db:not-an-ip"]),
        ("dns", ["resolver.example"]),
        ("dns_search", ["bad domain"]),
        ("dns_options", ["ndots 2"]),
    ],
)
def test_config_bad_network_field_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as raised:
        _config(**{field: value})
    assert raised.value.errors()[0]["loc"][0] == field


def test_config_host_ip_must_be_ipv4() -> None:
    with pytest.raises(ValidationError):
        _config(ports=[{"container_port": 80, "host_ip": "::1"}])
