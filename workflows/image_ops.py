"""Image workflows: ``ImagePull`` (queue ``berth``, fans out to nodes) and, on each node's queue,
``ImagePullOnNode``, ``ImageLoadOnNode``, ``ImageListOnNode`` and ``ImageRemoveOnNode``.

``ImagePull`` runs one ``ImagePullOnNode`` child per node at once; its current details (the Web
UI's) say how many nodes are done and which failed, and its ``progress`` query gives each node's
status. A node's pull is one regular activity that heartbeats its progress (phase, bytes done
and total: the pending activity's heartbeat details in the UI and ``berth image pull``); it runs
under the lease of its own workflow, which it drops when it ends, also when it fails or is
cancelled. A node workflow only serves the node whose queue it runs on.
"""

from __future__ import annotations

import asyncio
import hashlib

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from berth.contract import ImageOnNode, ImagePullInput, ImagePullOutput
    from berth.errors import BerthError, InvalidParameter, as_berth_error, error_from_type
    from berth.steps import (
        ImageListInput,
        ImageListOutput,
        ImageLoadInput,
        ImageLoadOutput,
        ImageRemoveInput,
        ImageRemoveOutput,
        LoadImageInput,
        NodeImagePullInput,
        PullImageInput,
        ReleasePullInput,
        node_task_queue,
    )
    from berth.workflows import steps
    from berth.workflows.saga import failure_message, run_to_completion
    from berth.workflows.steps import run_step


# The SDK's offline Replayer runs every history on a queue of its own, ``replay-<build id>``.
REPLAYER_QUEUE_PREFIX = "replay-"


def check_own_node(node: str) -> None:
    """Refuse a node workflow started on another node's queue.

    A history replayed by the offline Replayer (the replay tests) passed this check when it
    ran; it is not asked again there, where the queue is the Replayer's own.
    """
    queue = workflow.info().task_queue
    if queue.startswith(REPLAYER_QUEUE_PREFIX) and workflow.unsafe.is_replaying():
        return
    if queue != node_task_queue(node):
        raise InvalidParameter(
            f"node {node!r} asked on queue {workflow.info().task_queue!r}; start it on "
            f"{node_task_queue(node)!r}"
        )


def pull_owner(workflow_id: str) -> str:
    """The owner a node pull's lease is named after (containerd ids are 76 bytes at most)."""
    return "image-" + hashlib.sha256(workflow_id.encode()).hexdigest()[:24]


@workflow.defn(name="ImagePullOnNode", failure_exception_types=[BerthError])
class ImagePullOnNode:
    """Pull one image onto this node (``docker pull`` on one host)."""

    @workflow.run
    async def run(self, request: NodeImagePullInput) -> ImageOnNode:
        check_own_node(request.node)
        node, ref = request.node, request.reference
        owner = pull_owner(workflow.info().workflow_id)
        workflow.set_current_details(f"pulling {ref} on {node}")
        try:
            pulled = await run_step(
                steps.PULL_IMAGE,
                PullImageInput(node=node, image=ref, owner=owner),
                f"pull {ref} on {node}",
            )
        except (Exception, asyncio.CancelledError) as err:
            await run_to_completion(
                lambda: run_step(
                    steps.RELEASE_PULL,
                    ReleasePullInput(node=node, owner=owner),
                    f"drop the pull lease of {ref} on {node}",
                )
            )
            workflow.set_current_details(f"pull of {ref} on {node} failed: {failure_message(err)}")
            if isinstance(err, asyncio.CancelledError):
                raise
            raise as_berth_error(err) from None
        workflow.set_current_details(f"pulled {ref} on {node}: {pulled.digest}")
        return ImageOnNode(
            node=node, reference=ref, digest=pulled.digest, pulled=pulled.pulled, size=pulled.size
        )


@workflow.defn(name="ImagePull", failure_exception_types=[BerthError])
class ImagePull:
    """Pull an image onto several nodes at once, one ``ImagePullOnNode`` child per node."""

    def __init__(self) -> None:
        self._status: dict[str, str] = {}

    @workflow.query
    def progress(self) -> dict[str, str]:
        """Each node's status: ``pulling``, ``done`` or ``failed: <why>``."""
        return dict(self._status)

    @workflow.run
    async def run(self, request: ImagePullInput) -> ImagePullOutput:
        nodes = sorted(set(request.nodes))
        self._status = dict.fromkeys(nodes, "pulling")
        self._show(request.reference)
        results = await asyncio.gather(
            *(self._one(request.reference, node) for node in nodes), return_exceptions=True
        )
        failed = [
            (node, result)
            for node, result in zip(nodes, results, strict=True)
            if isinstance(result, BaseException)
        ]
        if failed:
            first = failed[0][1]
            cause = as_berth_error(first)
            where = ", ".join(n for n, _ in failed)
            raise error_from_type(
                cause.type, f"pull of {request.reference} failed on {where}: {cause.message}"
            )
        return ImagePullOutput(
            reference=request.reference,
            nodes=[result for result in results if isinstance(result, ImageOnNode)],
        )

    async def _one(self, reference: str, node: str) -> ImageOnNode:
        try:
            result = await workflow.execute_child_workflow(
                "ImagePullOnNode",
                NodeImagePullInput(node=node, reference=reference),
                id=f"{workflow.info().workflow_id}-on-{node}",
                task_queue=node_task_queue(node),
                result_type=ImageOnNode,
            )
        except Exception as err:
            self._status[node] = f"failed: {failure_message(err)}"
            self._show(reference)
            raise
        self._status[node] = "done"
        self._show(reference)
        return result

    def _show(self, reference: str) -> None:
        done = sum(status == "done" for status in self._status.values())
        failed = [node for node, status in self._status.items() if status.startswith("failed")]
        details = f"pull {reference}: {done}/{len(self._status)} nodes done"
        if failed:
            details += f", failed on {', '.join(failed)}"
        workflow.set_current_details(details)


@workflow.defn(name="ImageLoadOnNode", failure_exception_types=[BerthError])
class ImageLoadOnNode:
    """Load an image archive on this node (``docker load``), for nodes without a registry."""

    @workflow.run
    async def run(self, request: ImageLoadInput) -> ImageLoadOutput:
        check_own_node(request.node)
        node = request.node
        owner = pull_owner(workflow.info().workflow_id)
        workflow.set_current_details(f"loading {request.path} on {node}")
        try:
            loaded = await run_step(
                steps.LOAD_IMAGE,
                LoadImageInput(node=node, path=request.path, owner=owner),
                f"load {request.path} on {node}",
            )
        except (Exception, asyncio.CancelledError) as err:
            await run_to_completion(
                lambda: run_step(
                    steps.RELEASE_PULL,
                    ReleasePullInput(node=node, owner=owner),
                    f"drop the load lease of {request.path} on {node}",
                )
            )
            if isinstance(err, asyncio.CancelledError):
                raise
            raise as_berth_error(err) from None
        names = ", ".join(image.reference for image in loaded.images)
        workflow.set_current_details(f"loaded {names} on {node}")
        return loaded


@workflow.defn(name="ImageListOnNode", failure_exception_types=[BerthError])
class ImageListOnNode:
    """The images of this node's containerd."""

    @workflow.run
    async def run(self, request: ImageListInput) -> ImageListOutput:
        check_own_node(request.node)
        return await run_step(steps.LIST_IMAGES, request, f"list images on {request.node}")


@workflow.defn(name="ImageRemoveOnNode", failure_exception_types=[BerthError])
class ImageRemoveOnNode:
    """Remove an image from this node, unless a container uses it (``docker rmi``)."""

    @workflow.run
    async def run(self, request: ImageRemoveInput) -> ImageRemoveOutput:
        check_own_node(request.node)
        try:
            return await run_step(
                steps.REMOVE_IMAGE,
                request,
                f"remove image {request.reference} on {request.node}",
            )
        except Exception as err:
            raise as_berth_error(err) from None
