"""Named volumes on this agent's node: create and remove (``docker volume create|rm``).

``create_volume`` records the volume (``berth.db.volume_repository``) and makes its directory in
one transaction, row first: a crash between the two leaves a row without a directory, which a
retry (or the container's first start) completes. ``remove_volume`` locks the row, refuses with
``Conflict`` while any container of the node references the volume, then deletes the directory
and the row; run again it converges (a missing volume is ``NotFound``, or success with force).
A volume never goes with a container: nothing else removes one.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from berth.config import NodePaths
from berth.db.volume_repository import VolumeRepository
from berth.errors import Conflict, InvalidParameter, NotFound
from berth.steps import VolumeCreateInput, VolumeInfo, VolumeRemoveInput, VolumeRemoveOutput
from berth.volumes_host import data_dir, make_volume_dir, remove_volume_dir


class VolumeActivities:
    """The named volumes of one node."""

    def __init__(
        self, node: str, paths: NodePaths, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        self._node = node
        self._paths = paths
        self._sessions = sessions

    def _check_node(self, node: str) -> None:
        # Anything arriving on a node queue is checked: this agent answers for its node only.
        if node != self._node:
            raise InvalidParameter(f"node {node!r} asked of the agent of node {self._node!r}")

    @activity.defn(name="create_volume")
    async def create_volume(self, request: VolumeCreateInput) -> VolumeInfo:
        """Record the volume and make its directory; an existing volume is returned as is."""
        self._check_node(request.node)
        async with self._sessions.begin() as session:
            volumes = VolumeRepository(session)
            volume, _ = await volumes.ensure(request.node, request.name, request.labels)
            await asyncio.to_thread(make_volume_dir, self._paths, request.name)
            users = await volumes.users(request.node, request.name)
        return VolumeInfo(
            node=volume.node,
            name=volume.name,
            labels=volume.labels,
            created_at=volume.created_at,
            mountpoint=str(data_dir(self._paths, volume.name)),
            used_by=users,
        )

    @activity.defn(name="remove_volume")
    async def remove_volume(self, request: VolumeRemoveInput) -> VolumeRemoveOutput:
        """Delete the volume's data and row unless a container references it.

        Raises:
            NotFound: no such volume on the node (and not ``force``).
            Conflict: a container of the node (in any state) references it.
        """
        self._check_node(request.node)
        async with self._sessions.begin() as session:
            volumes = VolumeRepository(session)
            if await volumes.get(request.node, request.name, lock=True) is None:
                if request.force:
                    return VolumeRemoveOutput(node=request.node, name=request.name, removed=False)
                raise NotFound(f"get {request.name}: no such volume on node {request.node}")
            users = await volumes.users(request.node, request.name)
            if users:
                raise Conflict(
                    f"remove {request.name}: volume is in use - [{', '.join(users[:5])}]"
                )
            await asyncio.to_thread(remove_volume_dir, self._paths, request.name)
            await volumes.delete(request.node, request.name)
        return VolumeRemoveOutput(node=request.node, name=request.name, removed=True)
