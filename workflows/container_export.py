"""``ContainerExport``: a tar of a container's filesystem (docker export), holding its rootfs.

``ContainerExportOnNode`` runs on the container's node: find the container, hold the rootfs as
holder ``export:<operation>`` (mounting it if no other holder has), write the tar, release the
holder (unmounting when it was the last). The release is registered before the mount and runs to
completion whatever happens, including a cancel. Export is not a lifecycle operation: it runs
beside a start or stop of the same container, and the holder set keeps one mount between them.
Writing the tar takes as long as the container's filesystem makes it, so it is a regular
activity (on the node's own queue) that heartbeats, not a local one under a workflow task.

``ContainerExport`` on the control queue routes it to the node, like ``ContainerStart``.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from berth.contract import ContainerExportInput, ContainerExportOutput
    from berth.errors import BerthError, System, as_berth_error
    from berth.steps import (
        BeginExportInput,
        ExportRootfsInput,
        MountRootfsInput,
        NodeExportInput,
        ReleaseRootfsInput,
        export_holder,
    )
    from berth.workflows import steps
    from berth.workflows.routing import (
        locate,
        operation_id,
        route_to_node,
        set_outcome,
        with_outcome,
    )
    from berth.workflows.saga import Saga
    from berth.workflows.steps import run_step

EXPORTED = "exported"


@workflow.defn(name="ContainerExport", failure_exception_types=[BerthError])
class ContainerExport:
    """Export a container by id or name; the public entry point on queue ``berth``."""

    @workflow.run
    async def run(self, request: ContainerExportInput) -> ContainerExportOutput:
        where = await locate(request.container)
        result = await route_to_node(
            "export",
            ContainerExportOnNode.run,
            NodeExportInput(request=request),
            where,
        )
        set_outcome(EXPORTED)
        return result


@workflow.defn(name="ContainerExportOnNode", failure_exception_types=[BerthError])
class ContainerExportOnNode:
    """The export's host-bound steps, run by the agent of the container's node."""

    @workflow.run
    async def run(self, start: NodeExportInput) -> ContainerExportOutput:
        return await with_outcome(lambda: self._export(start), lambda _: EXPORTED)

    async def _export(self, start: NodeExportInput) -> ContainerExportOutput:
        request = start.request
        holder = export_holder(operation_id())
        try:
            target = await run_step(
                steps.BEGIN_EXPORT,
                BeginExportInput(container=request.container),
                f"find container {request.container}",
            )
        except Exception as err:
            raise as_berth_error(err) from None
        cid, node, name = target.container_id, target.node, target.name
        saga = Saga()
        saga.register(
            "mount",
            lambda: run_step(
                steps.RELEASE_ROOTFS,
                ReleaseRootfsInput(container_id=cid, node=node, holder=holder),
                f"release rootfs of {name} held by {holder}",
            ),
        )
        try:
            await run_step(
                steps.MOUNT_ROOTFS,
                MountRootfsInput(container_id=cid, node=node, image=target.image, holder=holder),
                f"hold rootfs of {name} as {holder}",
            )
            written = await run_step(
                steps.EXPORT_ROOTFS,
                ExportRootfsInput(container_id=cid, node=node, output=request.output),
                f"write tar of {name} to {request.output}",
            )
        except (Exception, asyncio.CancelledError) as err:
            await saga.compensate()
            if isinstance(err, asyncio.CancelledError):
                raise
            raise as_berth_error(err) from None
        undone = await saga.compensate()
        if not all(u.ok for u in undone):
            raise System(f"export written, but releasing {holder} failed: {undone[0].error}")
        return ContainerExportOutput(
            id=cid, name=name, node=node, output=request.output, size_bytes=written.size_bytes
        )
