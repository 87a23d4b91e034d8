"""Published ports: which a container asks for, and whether the node can take one.

``published_ports`` is docker's rule for ``-p`` and ``-P``: the container's own bindings, plus,
with ``publish_all``, every port the image exposes that no binding names, on a port the node
picks. ``host_port_free`` asks the kernel whether anything on the node holds a port (portmap's
DNAT rules would hide a listener on the node from outside traffic, so it is refused instead);
``port_free_on_node`` adds the ports other containers' portmap rules forward on this host.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from berth.contract import PortBinding
from berth.errors import InvalidParameter


def exposed_ports(image_config: dict[str, Any]) -> list[tuple[int, str]]:
    """The image's ``ExposedPorts`` (``{"80/tcp": {}}``) as (port, protocol), in order.

    Raises:
        InvalidParameter: an entry is not ``<port>[/tcp|udp]``.
    """
    found = []
    for key in image_config.get("ExposedPorts") or {}:
        port, _, protocol = str(key).partition("/")
        protocol = protocol or "tcp"
        if not port.isdigit() or not 0 < int(port) < 65536 or protocol not in ("tcp", "udp"):
            if protocol == "sctp":
                continue  # portmap publishes tcp and udp only
            raise InvalidParameter(f"the image exposes an invalid port {key!r}")
        found.append((int(port), protocol))
    return found


def published_ports(
    ports: Sequence[PortBinding], publish_all: bool, image_config: dict[str, Any]
) -> list[PortBinding]:
    """The container's bindings, then (``publish_all``) each exposed port none of them names.

    Raises:
        InvalidParameter: the image exposes a malformed port (only read with ``publish_all``).
    """
    chosen = list(ports)
    if publish_all:
        named = {(binding.container_port, binding.protocol) for binding in ports}
        chosen += [
            PortBinding.model_validate({"container_port": port, "protocol": protocol})
            for port, protocol in exposed_ports(image_config)
            if (port, protocol) not in named
        ]
    return chosen


def host_port_free(host_ip: str, port: int, protocol: str) -> bool:
    """Whether a socket could bind ``host_ip:port`` (every address when empty) on the node.

    An address the node does not have is refused by the kernel; that is reported as free so
    that the plugin's own error names it (portmap publishes on any local address).
    """
    tcp = protocol == "tcp"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM) as probe:
        # TCP as a server binds (Go's listeners, docker-proxy's too): a listener or a socket bound
        # without the option still refuses it, a TIME_WAIT left by a closed connection does not.
        # UDP has no TIME_WAIT, and with the option on a receiver that set it would pass unseen.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, int(tcp))
        try:
            probe.bind((host_ip or "0.0.0.0", port))
        except OSError as error:
            return error.errno != errno.EADDRINUSE
    return True


def port_free_on_node(
    forwarded: Mapping[tuple[str, int], str], container_id: str
) -> Callable[[str, int, str], bool]:
    """Whether the node can take a port for ``container_id``: no other container's portmap rule
    forwards it (``forwarded``: (protocol, port) -> container id, as ``CniNetwork`` lists them for
    every deployment on the host) and no socket on the node holds it (``host_port_free``)."""

    def port_free(host_ip: str, port: int, protocol: str) -> bool:
        owner = forwarded.get((protocol, port), container_id)
        return owner == container_id and host_port_free(host_ip, port, protocol)

    return port_free
