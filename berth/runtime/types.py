"""Plain values that cross between the runtime modules."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mount:
    """One mount as containerd's snapshotter describes it (``types.Mount`` without a target)."""

    type: str
    source: str
    options: tuple[str, ...] = ()
