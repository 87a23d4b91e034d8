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
from datetime import timedelta

from temporalio import workflow
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from pydantic import ConfigDict

    from activities.export import (
        BeginExportInput,
        ExportActivities,
        ExportRootfsInput,
    )
    from activities.mount import MountActivities, MountRootfsInput, ReleaseRootfsInput
    from activities.types import StepModel
    from berth.contract import ContainerExportInput, ContainerExportOutput
    from berth.errors import BerthError, System, as_berth_error
    from workflows.policies import STATE_RETRY, STEP_RETRY, UNDO_RETRY
    from workflows.routing import local_step, locate, operation_id, run_on_node, set_outcome
    from workflows.saga import Saga


# The tar step heartbeats every couple of seconds; a dead agent is noticed after this long.
EXPORT_HEARTBEAT_TIMEOUT = timedelta(seconds=30)
EXPORT_TIMEOUT = timedelta(hours=6)


class NodeExportInput(StepModel):
    """Input of ``ContainerExportOnNode``: the request (the rootfs holder is this run's own)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request: ContainerExportInput


def export_holder(operation: str) -> str:
    """The mount holder of an export: the reconciler asks Temporal whether it still runs."""
    return f"export:{operation}"


@workflow.defn(name="ContainerExport", failure_exception_types=[BerthError])
class ContainerExport:
    """Export a container by id or name; the public entry point on queue ``berth``."""

    @workflow.run
    async def run(self, request: ContainerExportInput) -> ContainerExportOutput:
        where = await locate(request.container)
        result = await run_on_node(
            "export",
            ContainerExportOnNode.run,
            NodeExportInput(request=request),
            where,
        )
        set_outcome("exported")
        return result


@workflow.defn(name="ContainerExportOnNode", failure_exception_types=[BerthError])
class ContainerExportOnNode:
    """The export's host-bound steps, run by the agent of the container's node."""

    @workflow.run
    async def run(self, start: NodeExportInput) -> ContainerExportOutput:
        request = start.request
        holder = export_holder(operation_id())
        try:
            target = await local_step(
                ExportActivities.begin_export,
                BeginExportInput(container=request.container),
                f"find container {request.container}",
                retry=STATE_RETRY,
            )
        except Exception as err:
            raise as_berth_error(err) from None
        cid, node, name = target.container_id, target.node, target.name
        saga = Saga()
        saga.register(
            "mount",
            lambda: local_step(
                MountActivities.release_rootfs,
                ReleaseRootfsInput(container_id=cid, node=node, holder=holder),
                f"release rootfs of {name} held by {holder}",
                retry=UNDO_RETRY,
            ),
        )
        try:
            await local_step(
                MountActivities.mount_rootfs,
                MountRootfsInput(container_id=cid, node=node, image=target.image, holder=holder),
                f"hold rootfs of {name} as {holder}",
            )
            written = await workflow.execute_activity_method(
                ExportActivities.export_rootfs,
                ExportRootfsInput(container_id=cid, node=node, output=request.output),
                start_to_close_timeout=EXPORT_TIMEOUT,
                heartbeat_timeout=EXPORT_HEARTBEAT_TIMEOUT,
                retry_policy=STEP_RETRY,
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                summary=f"write tar of {name} to {request.output}",
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
