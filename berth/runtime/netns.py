"""Persistent network namespaces, bound at a path Berth chooses (``NodePaths.netns(id)``).

A namespace lives as long as an nsfs bind mount of it exists at its path, so it survives the
process that made it and is found again from the container id alone. ``create_netns`` and
``delete_netns`` converge when run again; a plain file left by a crash between creating the file
and binding the namespace is reused by create and removed by delete.

Binding needs no special propagation on the parent directory: the kernel refuses nsfs binds only
for mount namespaces (which could loop), and on a shared parent the unmount propagates to peers.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from berth.errors import NotFound, System
from berth.runtime.mounts import MNT_DETACH, mount_table, umount

_COMMAND_TIMEOUT_SECONDS = 30


def netns_exists(path: Path) -> bool:
    """Whether ``path`` is a bound network namespace (an nsfs mount of a ``net:`` inode)."""
    wanted = Path(os.path.realpath(path))
    return any(
        entry.mount_point == wanted and entry.fs_type == "nsfs" and entry.root.startswith("net:")
        for entry in mount_table()
    )


def create_netns(path: Path) -> Path:
    """Create a network namespace bound at ``path``; returns ``path``, already bound or not.

    Raises:
        System: the namespace could not be created or bound.
    """
    if netns_exists(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    # The bind target must exist; a file left by an earlier attempt is reused.
    path.touch(exist_ok=True)
    _run(["unshare", f"--net={path}", "true"], f"create network namespace {path}")
    return path


def delete_netns(path: Path) -> None:
    """Unbind and remove the namespace at ``path``; a missing or unbound path is already done.

    Raises:
        System: the bind mount could not be removed.
    """
    while netns_exists(path):
        code = umount(path)
        if code != 0:
            code = umount(path, MNT_DETACH)
        # A concurrent delete (a saga's undo beside the reconciler) may have unbound it first.
        if code != 0 and netns_exists(path):
            raise System(f"unmount network namespace {path}: {os.strerror(code)}")
    path.unlink(missing_ok=True)


def list_netns(directory: Path) -> list[Path]:
    """Every entry in ``directory``, bound namespaces and leftover plain files alike, sorted."""
    try:
        return sorted(directory.iterdir())
    except FileNotFoundError:
        return []


@dataclass(frozen=True)
class NetnsInterface:
    """One link inside a network namespace, with its IPv4 addresses as (address, prefix)."""

    name: str
    mac: str
    addresses: tuple[tuple[str, int], ...]


def netns_interfaces(path: Path) -> list[NetnsInterface]:
    """The links inside the namespace at ``path`` (read with ``nsenter ... ip -j addr``).

    Raises:
        NotFound: ``path`` is not a bound network namespace.
        System: the links could not be read.
    """
    if not netns_exists(path):
        raise NotFound(f"network namespace {path} does not exist")
    output = _run(
        ["nsenter", f"--net={path}", "ip", "-j", "addr", "show"],
        f"list links in network namespace {path}",
    )
    return [
        NetnsInterface(
            name=link["ifname"],
            mac=link.get("address", ""),
            addresses=tuple(
                (info["local"], int(info["prefixlen"]))
                for info in link.get("addr_info", [])
                if info.get("family") == "inet"
            ),
        )
        for link in json.loads(output or "[]")
    ]


def netns_addresses(path: Path) -> list[str]:
    """The IPv4 addresses inside the namespace at ``path``; 127.0.0.1 once loopback is up.

    Raises:
        NotFound: ``path`` is not a bound network namespace.
        System: the addresses could not be read.
    """
    return [address for link in netns_interfaces(path) for address, _ in link.addresses]


def _run(command: list[str], action: str) -> str:
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise System(f"{action}: {error}") from error
    if completed.returncode != 0:
        raise System(f"{action}: {completed.stderr.strip()}")
    return completed.stdout
