"""Shared shapes of Berth's workflows: routing an operation to its container's node.

Every per-container operation runs as ``<Op>OnNode`` on the agent of the container's node, where
its steps run (:mod:`berth.workflows.steps`). The public ``<Op>`` workflows on the control queue
``berth``
find the node and run that workflow there as a child; :func:`run_on_node` is that routing, once.

The operation a node workflow holds a container as is :func:`operation_id`: its own workflow id
and run id, both set by Temporal. No input carries it, so no client can name another
operation's hold to get past the busy check: a run id is never reused, and a workflow id alone
(which a client picks) matches nothing. A child may take over a hold of its parent run
(:func:`parent_operation`), which only the parent's own code can start it under.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError
from temporalio.workflow import ChildWorkflowCancellationType

with workflow.unsafe.imports_passed_through():
    from berth.errors import InvalidParameter, as_berth_error
    from berth.steps import (
        CONTAINER_ID,
        CONTAINER_NAME,
        NODE,
        OUTCOME,
        AbortInput,
        ContainerLocation,
        LocateInput,
        container_attributes,
        node_task_queue,
    )
    from berth.workflows import steps
    from berth.workflows.saga import failure_message, run_to_completion
    from berth.workflows.steps import run_step

T = TypeVar("T")
In = TypeVar("In")

# Room in ``containers.operation`` (255) for ``@<run id>`` and an ``export:`` holder prefix.
MAX_OPERATION_WORKFLOW_ID = 180


def operation_of(workflow_id: str, run_id: str) -> str:
    """The operation a run holds a container as: ``<workflow id>@<run id>``."""
    return f"{workflow_id}@{run_id}"


def operation_id() -> str:
    """This run's operation; a workflow id too long to record is an ``InvalidParameter``."""
    info = workflow.info()
    if len(info.workflow_id) > MAX_OPERATION_WORKFLOW_ID:
        raise InvalidParameter(
            f"workflow id: at most {MAX_OPERATION_WORKFLOW_ID} characters for a container "
            f"operation, got {len(info.workflow_id)}"
        )
    return operation_of(info.workflow_id, info.run_id)


def parent_operation() -> str | None:
    """The operation of the parent run (None at the top level): Temporal sets it, no client."""
    parent = workflow.info().parent
    return None if parent is None else operation_of(parent.workflow_id, parent.run_id)


def set_outcome(outcome: str) -> None:
    workflow.upsert_search_attributes([OUTCOME.value_set(outcome)])


async def locate(container: str) -> ContainerLocation:
    """The container's id, name and node; a typed error (``NotFound``) if there is none."""
    try:
        return await run_step(
            steps.LOCATE_CONTAINER,
            LocateInput(container=container),
            f"find the node of container {container}",
        )
    except Exception as err:
        raise as_berth_error(err) from None


async def run_on_node(
    verb: str,
    child: Callable[[Any, In], Awaitable[T]],
    request: In,
    where: ContainerLocation,
) -> T:
    """Run ``child`` (an ``<Op>OnNode`` run method) on the container's node with ``request``.

    The child holds the container as its own operation (:func:`operation_id`). When it fails
    without ending that operation itself (terminated, node lost), the container is released here.
    """
    child_id = f"{workflow.info().workflow_id}-on-{where.node}"
    if len(child_id) > MAX_OPERATION_WORKFLOW_ID:
        raise InvalidParameter(
            f"workflow id: at most {MAX_OPERATION_WORKFLOW_ID - len(where.node) - 4} characters "
            f"to run on node {where.node}, got {len(workflow.info().workflow_id)}"
        )
    workflow.upsert_search_attributes(
        [
            CONTAINER_ID.value_set(where.container_id),
            CONTAINER_NAME.value_set(where.name),
            NODE.value_set(where.node),
        ]
    )
    workflow.set_current_details(f"{verb} {where.name} on {where.node}")
    operation: str | None = None
    try:
        handle = await workflow.start_child_workflow(
            child,
            request,
            id=child_id,
            task_queue=node_task_queue(where.node),
            cancellation_type=ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED,
            search_attributes=container_attributes(where.container_id, where.name, where.node),
            static_summary=f"{verb} {where.name} on {where.node}",
        )
        operation = operation_of(child_id, handle.first_execution_run_id or "")
        result = await handle
    except (ChildWorkflowError, asyncio.CancelledError) as err:
        set_outcome("failed")
        if operation is not None:
            await _release(where, operation, err)
        if isinstance(err, asyncio.CancelledError):
            raise
        raise as_berth_error(err) from None
    return result


async def _release(where: ContainerLocation, operation: str, err: BaseException) -> None:
    """Release the container from a child that ended without ending its operation."""
    abort = AbortInput(
        container_id=where.container_id, operation=operation, error=failure_message(err)
    )
    await run_to_completion(
        lambda: run_step(steps.ABORT_OPERATION, abort, f"release container {where.name}")
    )
