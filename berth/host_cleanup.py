"""A container's host resources released below the database, in the one host cleanup order.

The saga's undo activities are the normal path (they also forget what PostgreSQL recorded);
this is for callers outside any saga that hold only the node's runtime (test and benchmark
teardown). It follows :data:`berth.steps.HOST_CLEANUP` step for step, then removes the writable
snapshot. Every part is idempotent ("not found" is success), so it is safe on a container that
holds nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from berth.config import NodePaths
from berth.runtime.cni import CniNetwork
from berth.runtime.containerd import ContainerdClient
from berth.runtime.etc_files import EtcFiles, remove_etc_files
from berth.runtime.mounts import unmount_rootfs
from berth.runtime.netns import delete_netns
from berth.steps import HOST_CLEANUP


async def release_host_resources(
    container_id: str, paths: NodePaths, containerd: ContainerdClient, cni: CniNetwork
) -> None:
    """Task, containerd container, spec, network, rootfs mount; then the snapshot."""
    netns = paths.netns(container_id)

    async def detach_network() -> None:
        await asyncio.to_thread(cni.detach, container_id, netns)
        await asyncio.to_thread(delete_netns, netns)
        await asyncio.to_thread(remove_etc_files, EtcFiles(paths.container_dir(container_id)))

    by_step: dict[str, Callable[[], Awaitable[object]]] = {
        "task": lambda: containerd.delete_task(container_id),
        "shim": lambda: containerd.delete_container(container_id),
        "spec": lambda: asyncio.to_thread(paths.spec(container_id).unlink, missing_ok=True),
        "network": detach_network,
        "mount": lambda: asyncio.to_thread(unmount_rootfs, paths.rootfs(container_id)),
    }
    for step in HOST_CLEANUP:
        await by_step[step.step]()
    await containerd.remove_snapshot(container_id)
