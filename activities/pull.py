"""Step ``pull``: the container's image onto its node, before ``mount``.

Check (local, milliseconds): by the container's pull policy, whether the image must be pulled:
``always`` yes; ``missing`` when the node's containerd does not have it unpacked; ``never`` not,
and a missing image is ``NotFound`` naming it and the node.

Do (regular, heartbeating with its progress): pull the image (berth.runtime.pull) under the
containerd lease ``berth-pull-<owner>``, where the owner is the container id (or the pull run's
id), labelled with the id of the workflow the step runs for (a lease whose workflow no longer
runs is the reconciler's to delete); the lease is deleted when the pull ends. A pull that fails
for good (NotFound, Forbidden, a corrupt blob) drops its lease at once, so nothing it wrote is
kept; one that may succeed again (Unavailable, a crash of the agent) keeps it, so the retry
reuses what was written.

Undo: delete the lease (found from the owner alone; a missing one is success), so what a failed
or cancelled pull wrote becomes garbage for containerd's collector. An image a finished pull
recorded stays: it is the node's, not the container's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

from temporalio import activity

from berth.contract import ImageOnNode, PullPolicy
from berth.errors import BerthError, InvalidParameter, NotFound
from berth.faults import NO_FAULTS, FaultHook, fault_point
from berth.host_paths import open_confined
from berth.runtime.pull import ImagePuller, Progress, pull_lease_id
from berth.steps import (
    CheckImageInput,
    CheckImageOutput,
    ImageLoadOutput,
    LoadImageInput,
    PullImageInput,
    PullImageOutput,
    ReleasePullInput,
)

# How often a pull reports its progress (the table's heartbeat timeout is 30 s).
HEARTBEAT_SECONDS = 2.0

T = TypeVar("T")


class PullProgress:
    """Where a pull stands, as its heartbeat reports it."""

    def __init__(self) -> None:
        self.phase = "resolve"
        self.done = 0
        self.total = 0

    def update(self, phase: str, done: int, total: int) -> None:
        self.phase, self.done, self.total = phase, done, total

    def details(self) -> dict[str, object]:
        return {"phase": self.phase, "done": self.done, "total": self.total}


class PullActivities:
    """The node's image pulls; one :class:`ImagePuller` per agent (it keeps the per-image locks)."""

    def __init__(
        self,
        puller: ImagePuller,
        faults: FaultHook = NO_FAULTS,
        import_roots: Sequence[Path] = (),
    ) -> None:
        """``import_roots``: where ``load_image`` may read archives (the node's imports
        directory and its ``allowed_import_paths``)."""
        self._puller = puller
        self._faults = faults
        self._import_roots = list(import_roots)

    async def _under_lease(self, lease: str, run: Callable[[Progress], Awaitable[T]]) -> T:
        """``run(progress)``, heartbeating its progress; a failure for good drops ``lease`` (so
        nothing written is kept), a retryable one keeps it for the retry to reuse."""
        progress = PullProgress()
        work = asyncio.ensure_future(run(progress.update))
        try:
            while not (await asyncio.wait({work}, timeout=HEARTBEAT_SECONDS))[0]:
                if not activity.info().is_local:
                    activity.heartbeat(progress.details())
            return work.result()
        except asyncio.CancelledError:
            work.cancel()
            with contextlib.suppress(BaseException):
                await work
            raise
        except BerthError as err:
            if not err.retryable:
                await self._puller.delete_lease(lease)
            raise

    @activity.defn(name="check_image")
    async def check_image(self, request: CheckImageInput) -> CheckImageOutput:
        """Whether the start must pull its image first."""
        if request.policy is PullPolicy.ALWAYS:
            return CheckImageOutput(pull=True)
        if await self._puller.has_image(request.image):
            return CheckImageOutput(pull=False)
        if request.policy is PullPolicy.NEVER:
            raise NotFound(
                f"image {request.image!r} is not on node {request.node!r} and the container's "
                "pull policy is never"
            )
        return CheckImageOutput(pull=True)

    @activity.defn(name="pull_image")
    @fault_point("pull")
    async def pull_image(self, request: PullImageInput) -> PullImageOutput:
        """Pull the image under the owner's lease, heartbeating its progress."""
        lease = pull_lease_id(request.owner)
        pulled = await self._under_lease(
            lease,
            lambda progress: self._puller.pull(
                request.image,
                lease,
                only_if_missing=request.only_if_missing,
                progress=progress,
                workflow=activity.info().workflow_id,
            ),
        )
        if pulled is None:
            return PullImageOutput(pulled=False)
        return PullImageOutput(
            pulled=True, digest=pulled.digest, chain_id=pulled.chain_id, size=pulled.size
        )

    @activity.defn(name="load_image")
    async def load_image(self, request: LoadImageInput) -> ImageLoadOutput:
        """Load the archive at ``request.path`` (confined to the import roots), heartbeating."""
        lease = pull_lease_id(request.owner)
        fd = await asyncio.to_thread(
            open_confined, request.path, self._import_roots, "image archive"
        )
        try:
            readable = await asyncio.to_thread(os.open, f"/proc/self/fd/{fd}", os.O_RDONLY)
        finally:
            os.close(fd)
        with os.fdopen(readable, "rb") as archive:
            if not stat.S_ISREG(os.fstat(archive.fileno()).st_mode):
                raise InvalidParameter(f"image archive {request.path} is not a regular file")
            loaded = await self._under_lease(
                lease,
                lambda progress: self._puller.load(
                    archive, lease, progress, activity.info().workflow_id
                ),
            )
        return ImageLoadOutput(
            node=request.node,
            images=[
                ImageOnNode(node=request.node, reference=i.name, digest=i.digest, size=i.size)
                for i in loaded
            ],
        )

    @activity.defn(name="release_pull")
    @fault_point("undo-pull")
    async def release_pull(self, request: ReleasePullInput) -> None:
        """Delete the pull's lease; a missing one is success."""
        await self._puller.delete_lease(pull_lease_id(request.owner))
