"""Mount holders of the node endpoint's calls, and whether the agent that took one still runs.

A cp or a streamed export holds the container's rootfs as ``endpoint:<agent>:<call>``, where
``<agent>`` names the agent process: the kernel's boot id, its pid and its start time (in clock
ticks since boot, from ``/proc/<pid>/stat``). A call releases its holder when it ends, also when
the client goes away; a holder left by an agent that crashed mid-stream names a process that no
longer exists (another boot, a gone pid, or a pid reused by a process started later), so the
reconciler and the leak checker find it dead from the name alone, on the node's host.
"""

from __future__ import annotations

import os
import uuid

PREFIX = "endpoint:"


def agent_identity(pid: int | None = None) -> str | None:
    """``<boot id>.<pid>.<start ticks>`` of process ``pid`` (this one by default); None if gone."""
    pid = os.getpid() if pid is None else pid
    try:
        with open("/proc/sys/kernel/random/boot_id") as file:
            boot = file.read().strip()
        with open(f"/proc/{pid}/stat") as file:
            fields = file.read().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # After the command's closing parenthesis: state is field 3, starttime field 22.
    return f"{boot}.{pid}.{fields[19]}"


def call_holder(agent: str) -> str:
    """A fresh holder name for one call of the agent ``agent``."""
    return f"{PREFIX}{agent}:{uuid.uuid4().hex}"


def is_endpoint_holder(holder: str) -> bool:
    return holder.startswith(PREFIX)


def endpoint_holder_alive(holder: str) -> bool:
    """Whether the agent process named in an endpoint holder still runs on this host."""
    agent = holder[len(PREFIX) :].rpartition(":")[0]
    try:
        pid = int(agent.split(".")[1])
    except (IndexError, ValueError):
        return False
    return agent_identity(pid) == agent
