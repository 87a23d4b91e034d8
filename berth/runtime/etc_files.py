"""A container's ``/etc/hostname``, ``/etc/hosts`` and ``/etc/resolv.conf``, as dockerd writes them.

They are generated on the node under the container's own directory
(``NodePaths.container_dir(id)``, like ``/var/lib/docker/containers/<id>``) once its address is
known, and bind-mounted over the image's files by the spec. Each file is written whole to a
temporary name and renamed, so a retry rewrites it and a reader never sees half a file;
``remove_etc_files`` removes the directory and converges when run again. The content functions
are pure.

resolv.conf follows dockerd (libnetwork's ``sandbox_dns_unix``): the node's nameservers with
loopback ones dropped (a resolver on the node's 127.0.0.53 cannot be reached from the container's
namespace), Docker's public fallbacks when none remain; ``dns``, ``dns_search`` and ``dns_options``
each replace their part of the node's file; a search of ``.`` means none. A container on the
host's network (mode ``host``) shares the node's resolvers, loopback ones too, and starts its
hosts file from the node's, as dockerd does.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from berth.contract import HOST_GATEWAY
from berth.errors import InvalidParameter

# dockerd's defaults when the node lists no resolver a container can reach.
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")
# The node's resolv.conf is read with this bound (it is a few hundred bytes).
MAX_RESOLV_CONF_BYTES = 64 * 1024
# Readable by any user in the container (its processes need not be root).
ETC_FILE_MODE = 0o644
ETC_NAMES = ("hostname", "hosts", "resolv.conf")

_HOSTS_PREAMBLE = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


@dataclass(frozen=True)
class EtcFiles:
    """Where one container's generated files live on the node."""

    directory: Path

    @property
    def hostname(self) -> Path:
        return self.directory / "hostname"

    @property
    def hosts(self) -> Path:
        return self.directory / "hosts"

    @property
    def resolv_conf(self) -> Path:
        return self.directory / "resolv.conf"

    def mounts(self) -> list[tuple[str, Path]]:
        """(path in the container, file on the node) for each file, as the spec binds them."""
        return [(f"/etc/{name}", self.directory / name) for name in ETC_NAMES]

    def complete(self) -> bool:
        """Whether every file is there (an older agent's start wrote none)."""
        return all(path.is_file() for _, path in self.mounts())


@dataclass(frozen=True)
class NodeResolvConf:
    """What the node's own resolv.conf says."""

    nameservers: tuple[str, ...]
    search: tuple[str, ...]
    options: tuple[str, ...]


def parse_resolv_conf(text: str) -> NodeResolvConf:
    """The nameservers, search domains and options of a resolv.conf (last search line wins)."""
    nameservers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(words) < 2:
            continue
        key, values = words[0], words[1:]
        if key == "nameserver":
            nameservers.append(values[0])
        elif key in ("search", "domain"):
            search = values
        elif key == "options":
            options += values
    return NodeResolvConf(tuple(nameservers), tuple(search), tuple(options))


def read_node_file(path: Path) -> str:
    """A small file of the node's (bounded read); a missing file is an empty one."""
    try:
        with open(path, "rb") as source:
            return source.read(MAX_RESOLV_CONF_BYTES).decode(errors="replace")
    except FileNotFoundError:
        return ""


def read_node_resolv_conf(path: Path) -> NodeResolvConf:
    """The node's resolv.conf (bounded read); a missing file is an empty one."""
    return parse_resolv_conf(read_node_file(path))


def _reachable(nameserver: str) -> bool:
    """Not a loopback resolver (and a parseable address at all)."""
    try:
        return not ipaddress.ip_address(nameserver.split("%")[0]).is_loopback
    except ValueError:
        return False


def resolv_conf_content(
    node: NodeResolvConf,
    dns: Sequence[str] = (),
    dns_search: Sequence[str] = (),
    dns_options: Sequence[str] = (),
    host_network: bool = False,
) -> str:
    """The container's resolv.conf: the node's, each part replaced where the container gives it
    (on the host's network, loopback resolvers are reachable and kept)."""
    nameservers = list(dns) or [n for n in node.nameservers if host_network or _reachable(n)]
    if not nameservers:
        nameservers = list(FALLBACK_NAMESERVERS)
    search = list(dns_search) or list(node.search)
    if search == ["."]:
        search = []
    options = list(dns_options) or list(node.options)
    lines = [f"nameserver {server}" for server in nameservers]
    if search:
        lines.append("search " + " ".join(search))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def hosts_content(
    hostname: str,
    ip: str | None,
    extra_hosts: Sequence[str] = (),
    gateway: str | None = None,
    base: str | None = None,
) -> str:
    """The container's /etc/hosts: localhost entries (or ``base``, the node's file for a
    container on the host's network), ``extra_hosts``, then its own address.

    Raises:
        InvalidParameter: an extra host asks for ``host-gateway`` where the container has no
            bridge (network mode none or host).
    """
    lines = [_HOSTS_PREAMBLE if base is None else base.rstrip("\n") + "\n"]
    for entry in extra_hosts:
        name, _, address = entry.partition(":")
        if address == HOST_GATEWAY:
            if gateway is None:
                raise InvalidParameter(
                    f"config.extra_hosts: {entry!r}: host-gateway needs the bridge network"
                )
            address = gateway
        lines.append(f"{address}\t{name}\n")
    if ip:
        short = hostname.split(".", 1)[0]
        names = hostname if short == hostname else f"{hostname} {short}"
        lines.append(f"{ip}\t{names}\n")
    return "".join(lines)


def write_etc_files(files: EtcFiles, contents: dict[str, str]) -> None:
    """Write each of ``contents`` (name -> text) atomically into the container's directory."""
    files.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, text in contents.items():
        if name not in ETC_NAMES:
            raise ValueError(f"not a generated /etc file: {name}")
        partial = files.directory / f".{name}.partial"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(partial, flags, ETC_FILE_MODE)
        with os.fdopen(fd, "w") as out:
            os.fchmod(fd, ETC_FILE_MODE)
            out.write(text)
        partial.replace(files.directory / name)


def remove_etc_files(files: EtcFiles) -> bool:
    """Remove the container's directory of generated files; whether there was one."""
    if not files.directory.exists():
        return False
    shutil.rmtree(files.directory, ignore_errors=True)
    return True
