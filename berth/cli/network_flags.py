"""docker run's network flags for create and run; ports as ``ps`` and ``inspect`` show them.

``add_network_flags`` adds ``-p/--publish``, ``-P/--publish-all``, ``--hostname``,
``--add-host``, ``--dns``, ``--dns-search`` and ``--dns-option`` to a parser;
``network_fields`` turns them into ``ContainerConfig`` fields (only those given). The formatters
take rows with ``host_ip``, ``host_port``, ``container_port`` and ``protocol`` (a ``port_mappings``
row from ``berth.db.node_reads`` or the ORM). Standard library only at import time.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any, Protocol

from berth.cli.usage import UsageError


class PublishedPort(Protocol):
    host_ip: str
    host_port: int
    container_port: int
    protocol: str


def add_network_flags(parser: argparse.ArgumentParser) -> None:
    """docker run's publishing, hostname and DNS flags."""
    group = parser.add_argument_group("network")
    group.add_argument(
        "-p",
        "--publish",
        action="append",
        default=[],
        metavar="[IP:][HOST:]CONTAINER[/PROTO]",
        help="publish a container's port on the node",
    )
    group.add_argument(
        "-P",
        "--publish-all",
        action="store_true",
        help="publish every port the image exposes, on ports the node picks",
    )
    group.add_argument("--hostname", help="the container's host name (default: its short id)")
    group.add_argument(
        "--add-host",
        action="append",
        default=[],
        metavar="HOST:IP",
        help="add a line to /etc/hosts (IP may be host-gateway)",
    )
    group.add_argument(
        "--dns", action="append", default=[], metavar="IP", help="a DNS server to use"
    )
    group.add_argument(
        "--dns-search", action="append", default=[], metavar="DOMAIN", help="a DNS search domain"
    )
    group.add_argument(
        "--dns-option", action="append", default=[], metavar="OPT", help="a resolv.conf option"
    )


def network_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The ``ContainerConfig`` fields the flags give (absent when not given).

    Raises:
        UsageError: a ``-p`` spec docker would refuse.
    """
    from berth.contract import PortBinding

    fields: dict[str, Any] = {}
    ports = []
    for spec in args.publish:
        try:
            ports += [binding.model_dump() for binding in PortBinding.parse(spec)]
        except ValueError as err:
            raise UsageError(f"invalid argument {spec!r} for -p: {_first_line(err)}") from None
    if ports:
        fields["ports"] = ports
    if args.publish_all:
        fields["publish_all"] = True
    if args.hostname is not None:
        fields["hostname"] = args.hostname
    for flag, field in (
        ("add_host", "extra_hosts"),
        ("dns", "dns"),
        ("dns_search", "dns_search"),
        ("dns_option", "dns_options"),
    ):
        if getattr(args, flag):
            fields[field] = list(getattr(args, flag))
    return fields


def _first_line(error: ValueError) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def ports_column(ports: Iterable[PublishedPort]) -> str:
    """docker ps's PORTS: ``0.0.0.0:18080->80/tcp, 127.0.0.1:5353->53/udp``."""
    return ", ".join(
        f"{port.host_ip or '0.0.0.0'}:{port.host_port}->{port.container_port}/{port.protocol}"
        for port in sorted(ports, key=lambda p: (p.container_port, p.protocol, p.host_port))
    )


def docker_ports(
    ports: Iterable[PublishedPort], exposed: Iterable[str] = ()
) -> dict[str, list[dict[str, str]] | None]:
    """``NetworkSettings.Ports`` as docker inspect shows it: ``"80/tcp"`` -> its host bindings,
    or None for a port the image exposes (``"80/tcp"`` keys of ``ExposedPorts``) and nothing
    publishes."""
    shown: dict[str, list[dict[str, str]] | None] = {
        key if "/" in key else f"{key}/tcp": None for key in exposed
    }
    for port in sorted(ports, key=lambda p: (p.container_port, p.protocol, p.host_port)):
        key = f"{port.container_port}/{port.protocol}"
        bindings = shown.get(key) or []
        bindings.append({"HostIp": port.host_ip or "0.0.0.0", "HostPort": str(port.host_port)})
        shown[key] = bindings
    return shown
