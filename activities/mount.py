"""Step ``mount``: the container's rootfs, mounted at ``<node>/rootfs/<id>`` once per holder set.

Do: resolve the image to its snapshot parent, prepare the container's snapshot (key = container
id), add this holder to the target's holder set, and mount the snapshot if the kernel does not
show it mounted. Undo: remove the holder; unmount only when no holder remains. Both run under a
per-target transaction lock, so acquire and release never interleave. Undo finds everything from
the container id and holder name, so it is safe when do never ran or half ran, and idempotent.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from berth.config import NodePaths
from berth.db.repository import MountHolderRepository
from berth.faults import NO_FAULTS, FaultHook, fault_point
from berth.runtime.containerd import ContainerdClient
from berth.runtime.mounts import mount_rootfs as kernel_mount
from berth.runtime.mounts import unmount_rootfs as kernel_unmount
from berth.steps import ContainerRef, MountRootfsInput, MountRootfsOutput, ReleaseRootfsInput


class MountActivities:
    """Rootfs mounts of one node, reference-counted by holder sets in PostgreSQL."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        containerd: ContainerdClient,
        paths: NodePaths,
        faults: FaultHook = NO_FAULTS,
    ) -> None:
        self._sessions = sessions
        self._containerd = containerd
        self._paths = paths
        self._faults = faults

    @activity.defn(name="mount_rootfs")
    @fault_point("mount")
    async def mount_rootfs(self, request: MountRootfsInput) -> MountRootfsOutput:
        """Prepare the snapshot, add the holder, mount if not mounted."""
        image = await self._containerd.resolve_image(request.image)
        mounts = await self._containerd.prepare_snapshot(request.container_id, image.chain_id)
        target = self._paths.rootfs(request.container_id)
        async with self._sessions.begin() as session:
            holders = MountHolderRepository(session)
            await holders.lock_target(request.node, str(target))
            await holders.acquire(request.node, str(target), request.holder, request.container_id)
            await asyncio.to_thread(kernel_mount, mounts, target)
        return MountRootfsOutput(
            target=str(target), chain_id=image.chain_id, image_config=image.config
        )

    @activity.defn(name="release_rootfs")
    @fault_point("undo-mount")
    async def release_rootfs(self, request: ReleaseRootfsInput) -> None:
        """Remove the holder; unmount when it was the last one."""
        target = self._paths.rootfs(request.container_id)
        async with self._sessions.begin() as session:
            holders = MountHolderRepository(session)
            await holders.lock_target(request.node, str(target))
            remaining = await holders.release(request.node, str(target), request.holder)
            if remaining == 0:
                await asyncio.to_thread(kernel_unmount, target)

    @activity.defn(name="remove_rootfs_snapshot")
    async def remove_rootfs_snapshot(self, request: ContainerRef) -> None:
        """Remove the container's writable snapshot (on removal); a missing one is success."""
        await self._containerd.remove_snapshot(request.container_id)
