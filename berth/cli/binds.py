"""``-v/--volume`` and ``--mount type=bind`` as docker parses them, into Berth's bind mounts.

Berth has bind mounts only: a named or anonymous volume, tmpfs, SELinux relabelling (``z``/``Z``)
or a propagation other than the default is refused with a message naming it. The host path is
checked again by the node (allow-listed roots); here only the shape is.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import TypedDict

from berth.cli.usage import UsageError

_TRUE = ("", "1", "true")
_FALSE = ("0", "false")


class Bind(TypedDict):
    """One bind as ``ContainerConfig.binds`` takes it."""

    source: str
    target: str
    read_only: bool


def parse_volume(spec: str) -> Bind:
    """``/host:/in/container[:ro|rw]`` as a bind.

    Raises:
        UsageError: not ``src:dst[:mode]``, a relative source (a named volume), a destination
            alone (an anonymous volume), or a mode other than ``ro``/``rw``.
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
    if not source.startswith("/"):
        raise UsageError(
            f"invalid volume {spec!r}: named volumes are not supported, the source must be an "
            "absolute host path"
        )
    if not target.startswith("/"):
        raise UsageError(f"invalid volume specification: {spec!r}: {target!r} is not absolute")
    read_only = False
    for option in filter(None, mode.split(",")):
        if option == "ro":
            read_only = True
        elif option != "rw":
            raise UsageError(f"invalid volume {spec!r}: mode {option!r} is not supported")
    return Bind(source=source, target=target, read_only=read_only)


def parse_mount(spec: str) -> Bind:
    """``type=bind,source=/a,target=/b[,readonly]`` (docker's ``--mount``, CSV) as a bind.

    Raises:
        UsageError: a type other than ``bind`` (docker's default is ``volume``), a missing source
            or target, an unknown key, or an option Berth does not support.
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
    if kind != "bind":
        raise UsageError(f"invalid mount {spec!r}: type {kind!r} is not supported, use type=bind")
    if not target:
        raise UsageError("target is required")
    if not source:
        raise UsageError(f"invalid mount {spec!r}: source is required for a bind mount")
    if not source.startswith("/"):
        raise UsageError(f"invalid mount {spec!r}: source {source!r} is not an absolute path")
    return Bind(source=source, target=target, read_only=read_only)


def binds(volumes: Iterable[str], mounts: Iterable[str]) -> list[Bind]:
    """Every ``-v`` and ``--mount`` as binds, in that order; one target at most once.

    Raises:
        UsageError: as :func:`parse_volume` and :func:`parse_mount`, or a duplicate target.
    """
    result = [*map(parse_volume, volumes), *map(parse_mount, mounts)]
    seen: set[str] = set()
    for bind in result:
        target = bind["target"].rstrip("/") or "/"
        if target in seen:
            raise UsageError(f"Duplicate mount point: {bind['target']}")
        seen.add(target)
    return result
