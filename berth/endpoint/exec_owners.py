"""Which node endpoint execs are strays, and their removal.

An endpoint exec's id names the agent process that started it (:func:`endpoint_exec_id`), and
the agent keeps the ids its calls run now in :class:`AgentExecs`, from before containerd's exec
is made until after it is deleted and its FIFOs removed. An exec with the ``berth-exec-``
prefix is a stray when no call of this agent runs it and no other live agent started it: one a
crashed agent left (its process is gone), or one of this agent whose delete failed.
:func:`remove_stray_execs` deletes them and their FIFO directories; the agent runs it when its
endpoint starts, and the node's reconciler on each pass. Deleting is idempotent: an exec or
directory already gone is success.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from berth.config import NodePaths
from berth.endpoint.holders import (
    EXEC_PREFIX,
    agent_alive,
    agent_identity,
    endpoint_exec_alive,
    endpoint_exec_id,
    exec_owner,
    is_endpoint_exec,
)
from berth.errors import BerthError, NotFound, System
from berth.runtime.containerd import ContainerdClient
from berth.runtime.exec_io import remove_pipes
from berth.runtime.types import TaskStatus

log = logging.getLogger(__name__)

# (container id, exec id) -> whether it is a stray.
StrayTest = Callable[[str, str], bool]


class AgentExecs:
    """This agent's identity and the execs its calls run now."""

    def __init__(self, agent: str | None = None) -> None:
        agent = agent or agent_identity()
        if agent is None:
            raise System("the agent cannot name itself: its own /proc entry is missing")
        self.agent = agent
        self._running: set[tuple[str, str]] = set()

    def new_id(self) -> str:
        """A fresh exec id naming this agent."""
        return endpoint_exec_id(self.agent)

    def add(self, container_id: str, exec_id: str) -> None:
        """Mark an exec as run by a call, before containerd's exec is made."""
        self._running.add((container_id, exec_id))

    def discard(self, container_id: str, exec_id: str) -> None:
        """Forget an exec once it is deleted and its FIFOs removed."""
        self._running.discard((container_id, exec_id))

    def is_stray(self, container_id: str, exec_id: str) -> bool:
        """An endpoint exec that no call of this agent runs and no other live agent started."""
        if not is_endpoint_exec(exec_id) or (container_id, exec_id) in self._running:
            return False
        owner = exec_owner(exec_id)
        return owner == self.agent or not agent_alive(owner)


def of_ended_agent(container_id: str, exec_id: str) -> bool:
    """An endpoint exec whose agent is gone: the stray test of a process that runs no execs."""
    del container_id
    return is_endpoint_exec(exec_id) and not endpoint_exec_alive(exec_id)


async def running_execs(containerd: ContainerdClient, prefix: str) -> list[tuple[str, str]]:
    """(container id, exec id) of every exec whose id starts with ``prefix`` in this node's
    running tasks (the endpoint's, or the health prober's)."""
    found = []
    for task in await containerd.list_tasks():
        if task.status is not TaskStatus.RUNNING:
            continue
        try:
            exec_ids = await containerd.exec_ids(task.id)
        except NotFound:
            continue
        except BerthError:
            # A task that exited since it was listed has no pids to list: not an error.
            if await _still_running(containerd, task.id):
                raise
            continue
        found += [(task.id, exec_id) for exec_id in exec_ids if exec_id.startswith(prefix)]
    return found


async def _still_running(containerd: ContainerdClient, container_id: str) -> bool:
    try:
        return (await containerd.get_task(container_id)).status is TaskStatus.RUNNING
    except NotFound:
        return False


async def endpoint_execs(containerd: ContainerdClient) -> list[tuple[str, str]]:
    """(container id, exec id) of every endpoint exec in this node's running tasks."""
    return await running_execs(containerd, EXEC_PREFIX)


def exec_dirs(paths: NodePaths) -> list[Path]:
    """Every exec's FIFO directory on the node (``<workload root>/exec/<container>/<exec>``)."""
    root = paths.workload_root / "exec"
    if not root.is_dir():
        return []
    return [d for parent in root.iterdir() if parent.is_dir() for d in parent.iterdir()]


async def remove_stray_execs(
    containerd: ContainerdClient, paths: NodePaths, is_stray: StrayTest
) -> list[tuple[str, str]]:
    """Delete the strays among the node's endpoint execs, and the FIFO directories of strays.

    Returns:
        (container id, exec id) of each exec deleted from containerd.
    """
    deleted = []
    for container_id, exec_id in await endpoint_execs(containerd):
        if is_stray(container_id, exec_id):
            log.warning("deleting stray exec %s in container %s", exec_id, container_id)
            await containerd.delete_process(container_id, exec_id)
            deleted.append((container_id, exec_id))
    for directory in await asyncio.to_thread(exec_dirs, paths):
        if is_stray(directory.parent.name, directory.name):
            await asyncio.to_thread(remove_pipes, directory)
    return deleted
