"""Volume workflows on each node's queue: ``VolumeCreateOnNode`` and ``VolumeRemoveOnNode``.

Each is one step on the node that owns the volume's directory; a node workflow only serves the
node whose queue it runs on. A failure is the step's typed error (``Conflict`` while a container
references the volume, ``NotFound``).
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from berth.errors import BerthError, as_berth_error
    from berth.steps import VolumeCreateInput, VolumeInfo, VolumeRemoveInput, VolumeRemoveOutput
    from berth.workflows import steps
    from berth.workflows.image_ops import check_own_node
    from berth.workflows.steps import run_step


@workflow.defn(name="VolumeCreateOnNode", failure_exception_types=[BerthError])
class VolumeCreateOnNode:
    """Create a named volume on this node (``docker volume create``)."""

    @workflow.run
    async def run(self, request: VolumeCreateInput) -> VolumeInfo:
        check_own_node(request.node)
        try:
            return await run_step(
                steps.CREATE_VOLUME, request, f"create volume {request.name} on {request.node}"
            )
        except Exception as err:
            raise as_berth_error(err) from None


@workflow.defn(name="VolumeRemoveOnNode", failure_exception_types=[BerthError])
class VolumeRemoveOnNode:
    """Remove a named volume and its data from this node, unless a container references it."""

    @workflow.run
    async def run(self, request: VolumeRemoveInput) -> VolumeRemoveOutput:
        check_own_node(request.node)
        try:
            return await run_step(
                steps.REMOVE_VOLUME, request, f"remove volume {request.name} on {request.node}"
            )
        except Exception as err:
            raise as_berth_error(err) from None
