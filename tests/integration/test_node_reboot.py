"""A node that reboots: when its agent boots, the restart policies decide what runs again.

The test simulates the reboot of node-2: its agent, its containerd, every shim and every
container process are killed by pid, and its rootfs mounts and network namespaces are cleared;
then containerd and the agent start again, as after a boot. ``always`` and ``unless-stopped``
containers run again (new task, new netns); ``on-failure`` and ``no`` ones are recorded as exited
with the reboot as the reason; the node has no leak and PostgreSQL nothing stale.
"""

from __future__ import annotations

import asyncio
import os
import signal

from sqlalchemy import select

from berth.contract import ContainerState
from berth.db.models import MountHolder, NetworkAttachment
from berth.leaks import node_shims
from berth.runtime.cgroups import container_cgroups, kill_cgroup_processes
from berth.runtime.containerd_daemon import pid_path, start_containerd
from berth.runtime.netns import netns_exists
from berth.runtime.shims import kill_shim
from berth.runtime.types import TaskStatus
from dev.stack import delete_netns_files, unmount_rootfs_dirs
from tests.integration.node_agent import Node2
from tests.integration.test_crash_safety import RESULT_TIMEOUT, wait_until

POLICIES = ("always", "unless-stopped", "on-failure", "no")


async def reboot(node2: Node2) -> None:
    """Everything of node-2 dies as in a power cycle; containerd comes back, the agent not yet."""
    paths = node2.settings.node_paths()
    node2.agent.kill()
    containerd_pid = int(pid_path(paths).read_text())
    shims = [shim for group in node_shims(node2.runtime.containerd).values() for shim in group]
    os.kill(containerd_pid, signal.SIGKILL)
    for shim in shims:
        assert kill_shim(shim)
    for dirs in container_cgroups().values():
        # Only node-2's containers: their ids are the ones the test made there.
        if dirs[0].name in node2.created:
            assert not kill_cgroup_processes(dirs)
    await asyncio.to_thread(unmount_rootfs_dirs, paths)
    await asyncio.to_thread(delete_netns_files, paths)
    await start_containerd(paths)


async def test_node_reboot_restarts_exactly_the_containers_whose_policy_says_so(
    node2: Node2,
) -> None:
    ids = {}
    for policy in POLICIES:
        ids[policy] = await node2.create(restart_policy={"name": policy})
        handle = await node2.start_workflow(ids[policy])
        await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)
    before = {policy: (await node2.record(cid)).pid for policy, cid in ids.items()}

    await reboot(node2)
    assert await node2.runtime.containerd.list_tasks() == []
    await node2.agent.start()

    async def settled() -> bool:
        records = {policy: await node2.record(cid) for policy, cid in ids.items()}
        return (
            all(r.operation is None for r in records.values())
            and all(
                records[p].state is ContainerState.RUNNING and records[p].pid != before[p]
                for p in ("always", "unless-stopped")
            )
            and all(records[p].state is ContainerState.EXITED for p in ("on-failure", "no"))
        )

    await wait_until(settled, RESULT_TIMEOUT)
    paths = node2.settings.node_paths()
    for policy in ("always", "unless-stopped"):
        record = await node2.record(ids[policy])
        task = await node2.runtime.containerd.get_task(ids[policy])
        assert task.status is TaskStatus.RUNNING and task.pid == record.pid != before[policy]
        assert netns_exists(paths.netns(ids[policy]))
    for policy in ("on-failure", "no"):
        record = await node2.record(ids[policy])
        assert (record.state, record.exit_code, record.pid) == (ContainerState.EXITED, 255, None)
        assert record.error is not None and "node reboot" in record.error
        assert (await node2.footprint(ids[policy])).empty
    async with node2.sessions() as session:
        holders = (
            await session.scalars(
                select(MountHolder.container_id).where(MountHolder.container_id.in_(ids.values()))
            )
        ).all()
        attached = (
            await session.scalars(
                select(NetworkAttachment.container_id).where(
                    NetworkAttachment.container_id.in_(ids.values())
                )
            )
        ).all()
    assert sorted(holders) == sorted([ids["always"], ids["unless-stopped"]])
    assert sorted(attached) == sorted([ids["always"], ids["unless-stopped"]])
    assert await node2.leaks() == []
