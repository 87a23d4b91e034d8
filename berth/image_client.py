"""Berth's image verbs for the CLI and Python callers: pull onto nodes, list and remove.

A pull runs ``ImagePull`` on the control queue (one ``ImagePullOnNode`` per node); its progress
is read while it runs from each node pull's pending activity (the heartbeat details: phase,
bytes done and total). Listing and removal run ``ImageListOnNode`` / ``ImageRemoveOnNode`` on
the node's own queue, as the client does for a container's operations.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from temporalio.client import Client, WorkflowFailureError

from berth.contract import ImagePullInput, ImagePullOutput
from berth.errors import as_berth_error
from berth.steps import (
    ImageListInput,
    ImageListOutput,
    ImageLoadInput,
    ImageLoadOutput,
    ImageRemoveInput,
    ImageRemoveOutput,
    node_task_queue,
)

T = TypeVar("T")
# How often a pull's progress is read while it runs.
PROGRESS_SECONDS = 0.5


@dataclass(frozen=True)
class NodeProgress:
    """Where one node's pull stands: ``phase`` (resolve, download, unpack), bytes or layers."""

    node: str
    phase: str
    done: int
    total: int


def pull_workflow_id(reference: str) -> str:
    """``image-pull-<reference digest>-<random>``: an operator finds a reference's pulls."""
    digest = hashlib.sha256(reference.encode()).hexdigest()[:12]
    return f"image-pull-{digest}-{uuid.uuid4().hex[:8]}"


class ImageClient:
    """Image operations through Temporal (``client``) on the control queue ``task_queue``."""

    def __init__(self, client: Client, task_queue: str) -> None:
        self._client = client
        self._task_queue = task_queue

    async def pull(
        self,
        reference: str,
        nodes: list[str],
        progress: Callable[[list[NodeProgress]], None] | None = None,
    ) -> ImagePullOutput:
        """Pull ``reference`` onto ``nodes``; ``progress`` is called as the pulls advance."""
        request = ImagePullInput(reference=reference, nodes=nodes)
        workflow_id = pull_workflow_id(reference)
        handle = await self._client.start_workflow(
            "ImagePull",
            request,
            id=workflow_id,
            task_queue=self._task_queue,
            result_type=ImagePullOutput,
        )
        result = asyncio.ensure_future(handle.result())
        try:
            while progress is not None and not result.done():
                await asyncio.wait({result}, timeout=PROGRESS_SECONDS)
                if not result.done():
                    progress(await self._progress(workflow_id, sorted(set(request.nodes))))
            return await result
        except WorkflowFailureError as err:
            raise as_berth_error(err) from None
        finally:
            result.cancel()

    async def _progress(self, workflow_id: str, nodes: list[str]) -> list[NodeProgress]:
        found = []
        for node in nodes:
            try:
                described = await self._client.get_workflow_handle(
                    f"{workflow_id}-on-{node}"
                ).describe()
            except Exception:  # not started yet: nothing to show for it
                continue
            for pending in described.raw_description.pending_activities:
                details = pending.heartbeat_details.payloads
                if not details:
                    continue
                values = await self._client.data_converter.decode(list(details), [dict])
                value = values[0] if values else {}
                if isinstance(value, dict):
                    found.append(
                        NodeProgress(
                            node=node,
                            phase=str(value.get("phase", "")),
                            done=int(value.get("done", 0)),
                            total=int(value.get("total", 0)),
                        )
                    )
        return found

    async def list(self, node: str) -> ImageListOutput:
        """The images of ``node``."""
        return await self._on_node(
            "ImageListOnNode", node, ImageListInput(node=node), ImageListOutput, "list"
        )

    async def remove(self, node: str, reference: str, force: bool = False) -> ImageRemoveOutput:
        """Remove ``reference`` from ``node``; ``Conflict`` while a container uses it."""
        return await self._on_node(
            "ImageRemoveOnNode",
            node,
            ImageRemoveInput(node=node, reference=reference, force=force),
            ImageRemoveOutput,
            "remove",
        )

    async def load(self, node: str, path: str) -> ImageLoadOutput:
        """Load the image archive at ``path`` on ``node`` (a file on that node)."""
        return await self._on_node(
            "ImageLoadOnNode", node, ImageLoadInput(node=node, path=path), ImageLoadOutput, "load"
        )

    async def _on_node(
        self, workflow: str, node: str, request: object, result_type: type[T], op: str
    ) -> T:
        try:
            return await self._client.execute_workflow(
                workflow,
                request,
                id=f"image-{op}-{node}-{uuid.uuid4().hex[:8]}",
                task_queue=node_task_queue(node),
                result_type=result_type,
            )
        except WorkflowFailureError as err:
            raise as_berth_error(err) from None
