"""Plain values that cross between the runtime modules."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class Mount:
    """One mount as containerd's snapshotter describes it (``types.Mount`` without a target)."""

    type: str
    source: str
    options: tuple[str, ...] = ()


class TaskStatus(StrEnum):
    """A containerd task's status (``containerd.types.task.Status``), named as its protobuf is.

    Translated once, where the runtime reads a task (``berth.runtime.containerd``); a status
    containerd adds later reads as ``UNKNOWN``.
    """

    UNKNOWN = "UNKNOWN"
    CREATED = "CREATED"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    PAUSED = "PAUSED"
    PAUSING = "PAUSING"
