"""Mount holders of the node endpoint's calls, and whether the agent that took one still runs.

A cp or a streamed export holds the container's rootfs as ``endpoint:<agent>:<call>``, where
``<agent>`` names the agent process: the kernel's boot id, its pid and its start time (in clock
ticks since boot, from ``/proc/<pid>/stat``). A call releases its holder when it ends, also when
the client goes away; a holder left by an agent that crashed mid-stream names a process that no
longer exists (another boot, a gone pid, or a pid reused by a process started later), so the
reconciler and the leak checker find it dead from the name alone, on the node's host.

An exec of the node endpoint is named the same way: ``berth-exec-<agent>-<random>``
(:func:`endpoint_exec_id`), so an exec a crashed agent left in a task is told from a live
agent's by its id alone too.
"""

from __future__ import annotations

import os
import secrets
import uuid

PREFIX = "endpoint:"
EXEC_PREFIX = "berth-exec-"


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


def agent_alive(agent: str) -> bool:
    """Whether the agent process ``agent`` (an :func:`agent_identity`) still runs on this host."""
    try:
        pid = int(agent.split(".")[1])
    except (IndexError, ValueError):
        return False
    return agent_identity(pid) == agent


def endpoint_holder_alive(holder: str) -> bool:
    """Whether the agent process named in an endpoint holder still runs on this host."""
    return agent_alive(holder[len(PREFIX) :].rpartition(":")[0])


def endpoint_exec_id(agent: str) -> str:
    """A fresh exec id for one exec of the agent ``agent``.

    At most 75 characters (a 36-character boot id, a pid and ten digits of start ticks), within
    the 76 containerd allows an id; 32 random bits tell apart the execs of one agent.
    """
    return f"{EXEC_PREFIX}{agent}-{secrets.token_hex(4)}"


def is_endpoint_exec(exec_id: str) -> bool:
    """Whether an exec id is the node endpoint's (the health prober's have their own prefix)."""
    return exec_id.startswith(EXEC_PREFIX)


def exec_owner(exec_id: str) -> str:
    """The agent named in an endpoint exec id (empty for an id that names none)."""
    return exec_id[len(EXEC_PREFIX) :].rpartition("-")[0]


def endpoint_exec_alive(exec_id: str) -> bool:
    """Whether the agent process that started an endpoint exec still runs on this host."""
    return agent_alive(exec_owner(exec_id))
