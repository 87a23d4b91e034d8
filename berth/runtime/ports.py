"""Published ports: which a container asks for, and whether the node can take one.

``published_ports`` is docker's rule for ``-p`` and ``-P``: the container's own bindings, plus,
with ``publish_all``, every port the image exposes that no binding names, on a port the node
picks. ``host_port_free`` asks the kernel whether anything on the node holds a port (portmap's
DNAT rules would hide a listener on the node from outside traffic, so it is refused instead).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence
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
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as probe:
        # As a server would bind it: a port in TIME_WAIT does not count as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host_ip or "0.0.0.0", port))
        except OSError as error:
            return error.errno != errno.EADDRINUSE
    return True
