"""``-v/--volume`` and ``--mount`` as docker parses them: bind mounts and named volumes.

``-v /host:/path`` and ``--mount type=bind`` are binds; ``-v name:/path`` and ``--mount
[type=volume,]source=name,target=/path`` name a volume of the container's node (made when
missing). An anonymous volume, tmpfs through ``--mount``, SELinux relabelling (``z``/``Z``) or a
propagation other than the default is refused with a message naming it. The host path is
checked again by the node (allow-listed roots); here only the shape is.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import TypedDict, TypeGuard

from berth.cli.usage import UsageError

_TRUE = ("", "1", "true")
_FALSE = ("0", "false")
# Docker's volume name rule (the contract checks it again).
_VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


class Bind(TypedDict):
    """One bind as ``ContainerConfig.binds`` takes it."""

    source: str
    target: str
    read_only: bool


class Volume(TypedDict):
    """One named volume as ``ContainerConfig.volumes`` takes it."""

    name: str
    target: str
    read_only: bool


def _volume_name(spec: str, name: str) -> str:
    if not _VOLUME_NAME.match(name):
        raise UsageError(
            f"invalid volume {spec!r}: {name!r} includes invalid characters for a local volume "
            "name, only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed; a host directory needs an "
            "absolute path"
        )
    return name


def parse_volume(spec: str) -> Bind | Volume:
    """``/host:/in/container[:ro|rw]`` as a bind, ``name:/in/container[:ro|rw]`` as a volume.

    Raises:
        UsageError: not ``src:dst[:mode]``, a relative source that is no volume name, a
            destination alone (an anonymous volume), or a mode other than ``ro``/``rw``.
    """
    parts = spec.split(":")
    if len(parts) == 1 or (len(parts) == 2 and not parts[0]):
        raise UsageError(
            f"invalid volume {spec!r}: anonymous volumes are not supported, give /host:/container"
        )
    if len(parts) > 3:
        raise UsageError(f"invalid volume specification: {spec!r}")
    source, target = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else ""
    if not target.startswith("/"):
        raise UsageError(f"invalid volume specification: {spec!r}: {target!r} is not absolute")
    read_only = False
    for option in filter(None, mode.split(",")):
        if option == "ro":
            read_only = True
        elif option != "rw":
            raise UsageError(f"invalid volume {spec!r}: mode {option!r} is not supported")
    if not source.startswith("/"):
        return Volume(name=_volume_name(spec, source), target=target, read_only=read_only)
    return Bind(source=source, target=target, read_only=read_only)


def parse_mount(spec: str) -> Bind | Volume:
    """``type=bind,source=/a,target=/b[,readonly]`` (docker's ``--mount``, CSV) as a bind, and
    ``[type=volume,]source=name,target=/b`` as a named volume.

    Raises:
        UsageError: a type other than ``bind`` or ``volume`` (docker's default), a missing
            source or target, an unknown key, or an option Berth does not support.
    """
    try:
        fields = next(csv.reader([spec]))
    except (csv.Error, StopIteration):
        raise UsageError(f"invalid mount {spec!r}: not comma-separated key=value") from None
    kind = "volume"
    source = target = ""
    read_only = False
    for item in fields:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if key in ("readonly", "ro"):
            if value.lower() in _TRUE:
                read_only = True
            elif value.lower() in _FALSE:
                read_only = False
            else:
                raise UsageError(f"invalid value for {key}: {value!r}")
            continue
        if not sep:
            raise UsageError(f"invalid field {item!r} must be a key=value pair")
        if key == "type":
            kind = value.lower()
        elif key in ("source", "src"):
            source = value
        elif key in ("target", "destination", "dst"):
            target = value
        elif key == "consistency":
            continue  # docker ignores it on Linux
        elif key == "bind-propagation" and value == "rprivate":
            continue  # the default
        elif key.startswith(("bind-", "volume-", "tmpfs-")):
            raise UsageError(f"invalid mount {spec!r}: {key} is not supported")
        else:
            raise UsageError(f"unexpected key {key!r} in {item!r}")
    if kind not in ("bind", "volume"):
        raise UsageError(
            f"invalid mount {spec!r}: type {kind!r} is not supported, use type=bind or volume"
        )
    if not target:
        raise UsageError("target is required")
    if kind == "volume":
        if not source:
            raise UsageError(f"invalid mount {spec!r}: anonymous volumes are not supported")
        return Volume(name=_volume_name(spec, source), target=target, read_only=read_only)
    if not source:
        raise UsageError(f"invalid mount {spec!r}: source is required for a bind mount")
    if not source.startswith("/"):
        raise UsageError(f"invalid mount {spec!r}: source {source!r} is not an absolute path")
    return Bind(source=source, target=target, read_only=read_only)


def _parse_all(volumes: Iterable[str], mounts: Iterable[str]) -> list[Bind | Volume]:
    result = [*map(parse_volume, volumes), *map(parse_mount, mounts)]
    seen: set[str] = set()
    for mount in result:
        target = mount["target"].rstrip("/") or "/"
        if target in seen:
            raise UsageError(f"Duplicate mount point: {mount['target']}")
        seen.add(target)
    return result


def _is_bind(mount: Bind | Volume) -> TypeGuard[Bind]:
    return "source" in mount


def _is_volume(mount: Bind | Volume) -> TypeGuard[Volume]:
    return "name" in mount


def binds(volumes: Iterable[str], mounts: Iterable[str]) -> list[Bind]:
    """The binds among every ``-v`` and ``--mount``, in that order; one target at most once.

    Raises:
        UsageError: as :func:`parse_volume` and :func:`parse_mount`, or a duplicate target.
    """
    return [mount for mount in _parse_all(volumes, mounts) if _is_bind(mount)]


def named_volumes(volumes: Iterable[str], mounts: Iterable[str]) -> list[Volume]:
    """The named volumes among every ``-v`` and ``--mount``, in that order.

    Raises:
        UsageError: as :func:`binds`.
    """
    return [mount for mount in _parse_all(volumes, mounts) if _is_volume(mount)]
