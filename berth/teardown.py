"""Out-of-band teardown of everything a container holds on its node, in the seed's order.

The saga's own undo steps are the normal path; this is for callers that remove containers
outside any saga (test and benchmark cleanup, and repairs of what a terminated saga left).
Every part is idempotent, so it is safe on a container that holds nothing.
"""

from __future__ import annotations

import asyncio

from berth.config import NodePaths
from berth.runtime.cni import CniNetwork
from berth.runtime.containerd import ContainerdClient
from berth.runtime.mounts import unmount_rootfs
from berth.runtime.netns import delete_netns


async def tear_down_host(
    container_id: str, paths: NodePaths, containerd: ContainerdClient, cni: CniNetwork
) -> None:
    """Delete task and container, detach the network, unmount, remove the snapshot and spec."""
    await containerd.delete_task(container_id)
    await containerd.delete_container(container_id)
    await asyncio.to_thread(cni.detach, container_id, paths.netns(container_id))
    await asyncio.to_thread(delete_netns, paths.netns(container_id))
    await asyncio.to_thread(unmount_rootfs, paths.rootfs(container_id))
    await containerd.remove_snapshot(container_id)
    paths.spec(container_id).unlink(missing_ok=True)
