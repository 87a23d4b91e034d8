"""CNI plugins run directly, by the spec's exec protocol, for one node's bridge network.

``CniNetwork`` is the equivalent of a conflist: the loopback plugin, the bridge plugin with
host-local IPAM, then the portmap plugin, which publishes a container's ports (DNAT rules in
iptables' nat table, one chain per container) when the runtime hands it ``portMappings``.
``attach`` runs ADD down the chain; ``detach`` runs DEL up it. Both converge
when run again: attach returns the existing attachment instead of taking a second IP (host-local
refuses a second ADD for the same id), and detach succeeds when nothing is attached or the
namespace is already gone, freeing the IP all the same.

Outbound like Docker's default bridge: the bridge is each container's default gateway, and with
``masquerade`` on (the node's setting, on by default) one rule of the node,
``POSTROUTING -s <subnet> ! -o <bridge> -j MASQUERADE`` in iptables' nat table, lets containers
reach whatever the node reaches. The rule is the node's, not a container's, so no CNI DEL (which
cannot find a container's address once its namespace is gone) can leave one behind;
``ensure_masquerade`` adds it (or, with the setting off, removes it) and converges when run again.

Each plugin run has a deadline (``call_timeout``): a plugin stuck on host-local's lock or on the
kernel is killed at it and the run is ``Unavailable``, as is a plugin asking to be retried (CNI
error 11); both say they wait for the CNI plugins on this node for ``grace_seconds``, which the
workflows retry the step for.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from berth.errors import (
    DEFAULT_GRACE_SECONDS,
    BerthError,
    InvalidParameter,
    NotFound,
    System,
    Unavailable,
    Waiting,
)
from berth.runtime.netns import netns_exists, netns_interfaces

CNI_VERSION = "1.0.0"
# A plugin run's deadline unless the caller gives one: they take milliseconds.
PLUGIN_TIMEOUT_SECONDS = 10.0
_MAX_BRIDGE_NAME = 15  # IFNAMSIZ - 1
# CNI spec error codes that mean the configuration or call is wrong, not the host.
_INVALID_CODES = frozenset({1, 2, 4, 6, 7})
_TRY_AGAIN_CODE = 11
_IPAM_BOOKKEEPING = ("lock", "last_reserved_ip")
# portmap's DEL removes the container's whole chain, but only when it is handed some mapping:
# this one stands for "whatever was published", so DEL never needs the records.
_ANY_MAPPING = {"hostPort": 1, "containerPort": 1, "protocol": "tcp"}
# The comment portmap puts on its jump to a container's chain.
_DNAT_COMMENT = re.compile(r'dnat name: "(?P<name>[^"]*)" id: "(?P<id>[^"]*)"')


class PortMap(NamedTuple):
    """One published port as portmap takes it; ``host_ip`` empty is every address."""

    host_port: int
    container_port: int
    protocol: str
    host_ip: str = ""

    def as_runtime_config(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "hostPort": self.host_port,
            "containerPort": self.container_port,
            "protocol": self.protocol,
        }
        if self.host_ip:
            entry["hostIP"] = self.host_ip
        return entry


@dataclass(frozen=True)
class CniResult:
    """A container's address on the network, as the bridge plugin configured it."""

    ip: str
    prefix_len: int
    gateway: str
    mac: str
    interface: str


class CniNetwork:
    """One node's bridge network: its plugins, their configuration and host-local's records."""

    def __init__(
        self,
        bin_dir: Path,
        network_name: str,
        bridge: str,
        subnet: str,
        data_dir: Path,
        call_timeout: float = PLUGIN_TIMEOUT_SECONDS,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        node: str = "",
        masquerade: bool = True,
    ) -> None:
        try:
            network = ipaddress.ip_network(subnet, strict=True)
        except ValueError as error:
            raise InvalidParameter(f"subnet {subnet!r}: {error}") from error
        if not isinstance(network, ipaddress.IPv4Network) or network.prefixlen > 30:
            raise InvalidParameter(f"subnet {subnet!r}: must be IPv4 with room for hosts")
        if not bridge or len(bridge) > _MAX_BRIDGE_NAME:
            raise InvalidParameter(f"bridge {bridge!r}: must be 1 to 15 characters")
        self.bin_dir = bin_dir
        self.name = network_name
        self.bridge = bridge
        self.subnet = network
        self.gateway = str(network.network_address + 1)
        self.ipam_dir = data_dir / "ipam"
        self.call_timeout = call_timeout
        self.waiting = Waiting("the CNI plugins", node, grace_seconds)
        self.masquerade = masquerade
        self._masquerade_ensured = False

    def plugins(self) -> list[dict[str, Any]]:
        """The chain, as the ``plugins`` list of a conflist."""
        return [
            {"type": "loopback"},
            {
                "type": "bridge",
                "bridge": self.bridge,
                "isGateway": True,
                # Masquerading is the node's one rule (ensure_masquerade), not one per container.
                "ipMasq": False,
                "hairpinMode": True,
                # The bridge's address is the configured subnet's gateway, also after a change.
                "forceAddress": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(self.subnet), "gateway": self.gateway}]],
                    # The bridge is the default gateway, as on Docker's default bridge.
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": os.fspath(self.ipam_dir),
                },
            },
            # snat: the host's own connections to a published port (hairpin) are masqueraded.
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        ]

    def attach(
        self,
        container_id: str,
        netns: Path,
        ifname: str = "eth0",
        ports: Sequence[PortMap] = (),
    ) -> CniResult:
        """Connect the namespace to the bridge and publish ``ports``; returns the existing
        attachment if complete (its ports were published with it).

        Raises:
            NotFound: ``netns`` is not a bound network namespace.
            InvalidParameter: a plugin rejected the configuration.
            System: a plugin failed.
            Unavailable: a plugin timed out or asked to be retried.
        """
        if not netns_exists(netns):
            raise NotFound(f"network namespace {netns} does not exist")
        if not self._masquerade_ensured:
            self.ensure_masquerade()
        existing = self._existing_attachment(container_id, netns, ifname)
        # A half-done ADD may have stopped between the bridge and portmap: then redo it all.
        if existing is not None and (not ports or container_id in self.port_forwards()):
            return existing
        # Clear whatever a half-done attempt left (a veth without an IP, an IP without a veth;
        # portmap's rules only if it had ports to publish).
        self.detach(container_id, netns, ifname, published=bool(ports))
        previous: dict[str, Any] | None = None
        mappings = [port.as_runtime_config() for port in ports]
        for plugin in self.plugins():
            if plugin["type"] == "portmap":
                if not mappings:
                    continue  # nothing to publish: portmap would pass the result through
                plugin = {**plugin, "runtimeConfig": {"portMappings": mappings}}
            previous = self._exec("ADD", plugin, container_id, os.fspath(netns), ifname, previous)
        assert previous is not None
        return _parse_result(previous, self.gateway)

    def attach_loopback_only(self, netns: Path, container_id: str) -> None:
        """Bring up loopback and nothing else (network mode ``none``); safe to repeat.

        Raises:
            NotFound: ``netns`` is not a bound network namespace.
            System: the loopback plugin failed.
        """
        if not netns_exists(netns):
            raise NotFound(f"network namespace {netns} does not exist")
        self._exec("ADD", self.plugins()[0], container_id, os.fspath(netns), "lo", None)

    def detach(
        self,
        container_id: str,
        netns: Path,
        ifname: str = "eth0",
        published: bool | None = None,
    ) -> None:
        """Disconnect the container, unpublish its ports and free its IP; nothing attached or no
        namespace is fine.

        ``published`` says whether the container may have published ports (its records say so):
        portmap's DEL costs tens of milliseconds of iptables even with nothing to remove, so
        False skips it and None (the caller does not know) lists portmap's rules first.
        Every plugin's DEL is attempted; the first failure is raised after the rest ran.

        Raises:
            InvalidParameter: a plugin rejected the configuration.
            System: a plugin failed.
        """
        # Plugins reject a path that is not a namespace; an empty one means "already gone".
        netns_arg = os.fspath(netns) if netns_exists(netns) else ""
        failure = self._delete_chain(container_id, netns_arg, ifname, published)
        if failure is not None and netns_arg and not netns_exists(netns):
            # The namespace went away while DEL ran (a concurrent cleanup): free what is left.
            failure = self._delete_chain(container_id, "", ifname, published)
        if failure is not None:
            raise failure

    def _delete_chain(
        self, container_id: str, netns_arg: str, ifname: str, published: bool | None
    ) -> BerthError | None:
        """Run every plugin's DEL, last first; the first failure, after all were attempted."""
        failure: BerthError | None = None
        for plugin in reversed(self.plugins()):
            if plugin["type"] == "portmap":
                try:
                    if published is False or (
                        published is None and container_id not in self.port_forwards()
                    ):
                        continue
                except BerthError as error:
                    failure = failure or error
                plugin = {**plugin, "runtimeConfig": {"portMappings": [_ANY_MAPPING]}}
            try:
                self._exec("DEL", plugin, container_id, netns_arg, ifname, None)
            except BerthError as error:
                failure = failure or error
        return failure

    def ensure_masquerade(self) -> bool:
        """Add the node's masquerade rule (remove it when ``masquerade`` is off); converges.

        Returns whether it changed anything.

        Raises:
            System: iptables is missing or failed.
        """
        rule = masquerade_rule(self.subnet, self.bridge)
        present = _iptables("-C", rule, self.call_timeout)
        changed = False
        if self.masquerade and not present:
            changed = _iptables("-A", rule, self.call_timeout, check=True)
        elif not self.masquerade and present:
            changed = delete_masquerade(self.bridge, self.call_timeout) > 0
        self._masquerade_ensured = True
        return changed

    def port_forwards(self) -> set[str]:
        """Ids of the containers that portmap publishes ports for on this network.

        Raises:
            System: iptables is missing or failed.
        """
        return {cid for name, cid, _, _ in self._dnat_jumps() if name == self.name}

    def forwarded_ports(self) -> dict[tuple[str, int], str]:
        """(protocol, host port) -> container id, for every port portmap publishes on this
        host, whatever the network or deployment (they all share the host's addresses).

        Raises:
            System: iptables is missing or failed.
        """
        return {
            (protocol, port): cid
            for _, cid, protocol, ports in self._dnat_jumps()
            for port in ports
        }

    def _dnat_jumps(self) -> list[tuple[str, str, str, tuple[int, ...]]]:
        """portmap's jumps to its per-container chains: (network, id, protocol, host ports)."""
        listed = _run_iptables(["-S", "CNI-HOSTPORT-DNAT"], self.call_timeout)
        if listed.returncode != 0:
            return []  # no container ever published a port on this host: no chain
        jumps = []
        for line in listed.stdout.splitlines():
            words = shlex.split(line)
            comment = _DNAT_COMMENT.search(_option(words, "--comment"))
            if comment is None:
                continue
            ports = tuple(
                int(port)
                for part in _option(words, "--dports").split(",")
                if part
                for port in _port_span(part)
            )
            jumps.append((comment["name"], comment["id"], _option(words, "-p"), ports))
        return jumps

    def reservations(self) -> dict[str, str]:
        """host-local's reservations on this network: IP -> container id."""
        return {ip: container_id for ip, container_id, _ in self._reservation_records()}

    def supported_versions(self) -> dict[str, list[str]]:
        """Each plugin's supported CNI versions (the VERSION command).

        Raises:
            System: a plugin is missing or failed.
        """
        return {
            plugin["type"]: self._exec("VERSION", plugin, "", "", "", None)["supportedVersions"]
            for plugin in self.plugins()
        }

    def _existing_attachment(self, container_id: str, netns: Path, ifname: str) -> CniResult | None:
        """The attachment if host-local holds an IP for it and the namespace carries it."""
        reserved = {
            ip
            for ip, owner, owner_ifname in self._reservation_records()
            if owner == container_id and owner_ifname in (ifname, None)
        }
        if not reserved:
            return None
        for link in netns_interfaces(netns):
            if link.name != ifname:
                continue
            for address, prefix_len in link.addresses:
                if address in reserved:
                    return CniResult(address, prefix_len, self.gateway, link.mac, ifname)
        return None

    def _reservation_records(self) -> list[tuple[str, str, str | None]]:
        """(ip, container id, ifname or None) for each file host-local keeps per reservation."""
        records = []
        directory = self.ipam_dir / self.name
        try:
            entries = sorted(directory.iterdir())
        except FileNotFoundError:
            return []
        for entry in entries:
            if entry.name.startswith(_IPAM_BOOKKEEPING):
                continue
            try:
                ip = str(ipaddress.ip_address(entry.name))
                lines = entry.read_text().splitlines()
            except (ValueError, FileNotFoundError):
                continue
            if lines:
                records.append((ip, lines[0].strip(), lines[1].strip() if len(lines) > 1 else None))
        return records

    def _exec(
        self,
        command: str,
        plugin: dict[str, Any],
        container_id: str,
        netns: str,
        ifname: str,
        previous: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Run one plugin with one CNI command; returns its JSON result, {} if it printed none."""
        config: dict[str, Any] = {"cniVersion": CNI_VERSION, "name": self.name, **plugin}
        if previous is not None:
            config["prevResult"] = previous
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_PATH": os.fspath(self.bin_dir),
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        }
        binary = self.bin_dir / plugin["type"]
        action = f"CNI {command} {plugin['type']} for {container_id or '-'}"
        try:
            completed = subprocess.run(
                [os.fspath(binary)],
                input=json.dumps(config),
                env=env,
                capture_output=True,
                text=True,
                timeout=self.call_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise Unavailable.waiting(
                f"{action}: timed out after {self.call_timeout:g}s", self.waiting
            ) from error
        except OSError as error:
            raise System(f"{action}: {error}") from error
        if completed.returncode != 0:
            raise _plugin_error(action, completed.stdout, completed.stderr, self.waiting)
        try:
            return json.loads(completed.stdout) if completed.stdout.strip() else {}
        except json.JSONDecodeError as error:
            raise System(f"{action}: unreadable result: {completed.stdout[:200]!r}") from error


def _option(words: list[str], name: str) -> str:
    """The value after ``name`` in an iptables rule's words; empty when absent."""
    return words[words.index(name) + 1] if name in words[:-1] else ""


def _port_span(part: str) -> range:
    first, _, last = part.partition(":")
    return range(int(first), int(last or first) + 1)


def masquerade_rule(subnet: ipaddress.IPv4Network | str, bridge: str) -> list[str]:
    """The nat table's rule that masquerades the subnet's traffic leaving by another link."""
    return [
        "POSTROUTING",
        "-s",
        str(subnet),
        "!",
        "-o",
        bridge,
        "-m",
        "comment",
        "--comment",
        f"berth masquerade {bridge}",
        "-j",
        "MASQUERADE",
    ]


def delete_masquerade(bridge: str, timeout: float = PLUGIN_TIMEOUT_SECONDS) -> int:
    """Remove every masquerade rule of ``bridge``'s network (by its comment); returns how many.

    Raises:
        System: iptables is missing or failed.
    """
    listed = _iptables_output(["-S", "POSTROUTING"], timeout)
    removed = 0
    for line in listed.splitlines():
        words = shlex.split(line)
        if words[:1] == ["-A"] and f"berth masquerade {bridge}" in words:
            _iptables_output(["-D", *words[1:]], timeout)
            removed += 1
    return removed


def masquerade_bridges(timeout: float = PLUGIN_TIMEOUT_SECONDS) -> set[str]:
    """The bridges that have a masquerade rule of Berth's (also ones since deleted).

    Raises:
        System: iptables is missing or failed.
    """
    listed = _iptables_output(["-S", "POSTROUTING"], timeout)
    found = set()
    for line in listed.splitlines():
        words = shlex.split(line)
        comment = _option(words, "--comment")
        if comment.startswith("berth masquerade "):
            found.add(comment.removeprefix("berth masquerade "))
    return found


def _iptables(action: str, rule: list[str], timeout: float, check: bool = False) -> bool:
    """Run ``iptables -t nat <action> <rule>``; whether it succeeded (``check``: or raise).

    Raises:
        System: iptables is missing, timed out, or failed (with ``check``, or not with 1, the
            code of a rule that ``-C`` does not find).
    """
    completed = _run_iptables([action, *rule], timeout)
    if completed.returncode != 0 and (check or completed.returncode != 1):
        raise System(f"iptables {action} {' '.join(rule)}: {completed.stderr.strip()}")
    return completed.returncode == 0


def _iptables_output(arguments: list[str], timeout: float) -> str:
    """``iptables -t nat <arguments>``'s output.

    Raises:
        System: iptables is missing, timed out or failed.
    """
    completed = _run_iptables(arguments, timeout)
    if completed.returncode != 0:
        raise System(f"iptables {' '.join(arguments)}: {completed.stderr.strip()}")
    return completed.stdout


def _run_iptables(arguments: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("iptables") or "/usr/sbin/iptables"
    # -w: wait for the xtables lock that the portmap plugin and other tools take.
    command = [binary, "-w", "5", "-t", "nat", *arguments]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise System(f"iptables {' '.join(arguments)}: {error}") from error


def _plugin_error(action: str, stdout: str, stderr: str, waiting: Waiting) -> BerthError:
    """The Berth error for a plugin's error JSON (code, msg, details) by CNI error code."""
    try:
        error = json.loads(stdout)
        code, message = int(error["code"]), str(error["msg"])
        if error.get("details"):
            message = f"{message}: {error['details']}"
    except (ValueError, KeyError, TypeError):
        return System(f"{action}: {(stderr or stdout).strip()}")
    if code in _INVALID_CODES:
        return InvalidParameter(f"{action}: {message} (CNI error {code})")
    if code == _TRY_AGAIN_CODE:
        return Unavailable.waiting(f"{action}: {message} (CNI error {code})", waiting)
    return System(f"{action}: {message} (CNI error {code})")


def _parse_result(result: dict[str, Any], gateway: str) -> CniResult:
    """The container interface's IPv4 address from a CNI 1.0 result."""
    interfaces = result.get("interfaces", [])
    for entry in result.get("ips", []):
        index = entry.get("interface")
        if index is None or index >= len(interfaces) or not interfaces[index].get("sandbox"):
            continue
        interface = ipaddress.ip_interface(entry["address"])
        if interface.version != 4:
            continue
        return CniResult(
            ip=str(interface.ip),
            prefix_len=interface.network.prefixlen,
            gateway=entry.get("gateway", gateway),
            mac=interfaces[index].get("mac", ""),
            interface=interfaces[index]["name"],
        )
    raise System(f"CNI result carries no IPv4 address in the namespace: {json.dumps(result)}")
