"""A node's image store as Berth's image verbs see it: list and remove (pulls: activities/pull.py).

``list_images`` reads containerd's image store (names, digests, sizes). ``remove_image`` deletes
an image record, refused with ``Conflict`` while a container of this node was created from it
(``force`` removes it anyway, as ``docker rmi -f`` untags: the containers keep their prepared
snapshots); containerd's garbage collector then frees whatever only the image kept. Removing
an image the node does not have is success (``removed`` False), so it converges when run again.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from berth.db.repository import ContainerRepository
from berth.errors import Conflict, InvalidParameter, NotFound
from berth.runtime.containerd import ContainerdClient
from berth.steps import (
    ImageListInput,
    ImageListOutput,
    ImageRemoveInput,
    ImageRemoveOutput,
    ImageSummary,
)


class ImageActivities:
    """The image store of this agent's node."""

    def __init__(
        self, containerd: ContainerdClient, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        self._containerd = containerd
        self._sessions = sessions

    def _check_node(self, node: str) -> None:
        # Anything arriving on a node queue is checked: this agent answers for its node only.
        if node != self._containerd.node:
            raise InvalidParameter(
                f"node {node!r} asked of the agent of node {self._containerd.node!r}"
            )

    @activity.defn(name="list_images")
    async def list_images(self, request: ImageListInput) -> ImageListOutput:
        """Every image of the node's containerd namespace, by name."""
        self._check_node(request.node)
        images = []
        for record in sorted(await self._containerd.list_images(), key=lambda r: r.name):
            try:
                size = await self._containerd.image_size(record)
            except NotFound:
                size = 0  # a blob of it is gone (a pull that never finished unpacking)
            images.append(
                ImageSummary(
                    name=record.name,
                    digest=record.digest,
                    size=size,
                    created_at=record.created_at,
                )
            )
        return ImageListOutput(node=request.node, images=images)

    @activity.defn(name="remove_image")
    async def remove_image(self, request: ImageRemoveInput) -> ImageRemoveOutput:
        """Delete the image record unless a container uses it (or ``force``)."""
        self._check_node(request.node)
        if not request.force:
            async with self._sessions() as session:
                containers = await ContainerRepository(session).on_node(request.node)
            users = sorted(c.name for c in containers if c.config.get("image") == request.reference)
            if users:
                raise Conflict(
                    f"unable to remove image {request.reference!r} on node {request.node!r}: "
                    f"container(s) {', '.join(users[:5])} use it (remove them, or force)"
                )
        names = {record.name for record in await self._containerd.list_images()}
        if request.reference not in names:
            return ImageRemoveOutput(node=request.node, reference=request.reference, removed=False)
        await self._containerd.delete_image(request.reference, sync=True)
        return ImageRemoveOutput(node=request.node, reference=request.reference, removed=True)
