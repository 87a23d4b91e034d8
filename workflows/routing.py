"""Shared shapes of Berth's workflows: routing an operation to its container's node.

Every per-container operation runs as ``<Op>OnNode`` on the agent of the container's node, where
its steps run (:mod:`berth.workflows.steps`). The public ``<Op>`` workflows on the control queue
``berth`` find the node and hand the operation over to it; :func:`route_to_node` is that
routing, once. It continues the public run as new, as ``<Op>OnNode`` on the node's queue: the
same workflow id, so a caller's handle follows the runs to the node's result (or its typed
failure) with no parent waiting on a child in between, which saves a workflow task and a child
start on every call, and an operator finds both runs under the id the caller chose. (The
Temporal cluster must not hold a new run back after a short one: its dynamic config
``history.workflowIdReuseMinimalInterval`` is 0, see deploy/temporal-dynamic-config.yaml.) Runs
recorded before the patch :data:`CONTINUE_ON_NODE_PATCH` ran the node workflow as a child
(:func:`run_on_node`), and replay as they ran.

The ``Outcome`` search attribute (the Web UI filters on it) is set by the node run itself
(:func:`with_outcome`), in the workflow task it closes in, so a run continued from a public one,
a ``BerthClient`` call and a CLI call all carry it at no extra workflow task; the public run
sets it only in the child shape, where it outlives the child.

The operation a node workflow holds a container as is :func:`operation_id`: its own workflow id
and run id, both set by Temporal. No input carries it, so no client can name another
operation's hold to get past the busy check: a run id is never reused, and a workflow id alone
(which a client picks) matches nothing. A child may take over a hold of its parent run
(:func:`parent_operation`), which only the parent's own code can start it under.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

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
# Public runs from this patch on continue as new on the node instead of starting a child there.
CONTINUE_ON_NODE_PATCH = "continue-on-node"
# Node runs from this patch on set their own Outcome (a continued run's public half never does).
OUTCOME_ON_NODE_PATCH = "outcome-on-node"
# The Outcome of a node run that failed or was cancelled.
FAILED = "failed"


def operation_of(workflow_id: str, run_id: str) -> str:
    """The operation a run holds a container as: ``<workflow id>@<run id>``."""
    return f"{workflow_id}@{run_id}"


def check_operation_workflow_id(workflow_id: str) -> None:
    """A workflow id too long to record as an operation is an ``InvalidParameter``."""
    if len(workflow_id) > MAX_OPERATION_WORKFLOW_ID:
        raise InvalidParameter(
            f"workflow id: at most {MAX_OPERATION_WORKFLOW_ID} characters for a container "
            f"operation, got {len(workflow_id)}"
        )


def operation_id() -> str:
    """This run's operation; a workflow id too long to record is an ``InvalidParameter``."""
    info = workflow.info()
    check_operation_workflow_id(info.workflow_id)
    return operation_of(info.workflow_id, info.run_id)


def parent_operation() -> str | None:
    """The operation of the parent run (None at the top level): Temporal sets it, no client."""
    parent = workflow.info().parent
    return None if parent is None else operation_of(parent.workflow_id, parent.run_id)


def set_outcome(outcome: str) -> None:
    workflow.upsert_search_attributes([OUTCOME.value_set(outcome)])


async def with_outcome(operation: Callable[[], Awaitable[T]], outcome: Callable[[T], str]) -> T:
    """Run a node workflow's ``operation``, then set its ``Outcome``: ``outcome(result)``, or
    ``failed`` when it raised or was cancelled (runs recorded before
    :data:`OUTCOME_ON_NODE_PATCH` set none). The upsert rides on the closing workflow task."""
    try:
        result = await operation()
    except (Exception, asyncio.CancelledError):
        if workflow.patched(OUTCOME_ON_NODE_PATCH):
            set_outcome(FAILED)
        raise
    if workflow.patched(OUTCOME_ON_NODE_PATCH):
        set_outcome(outcome(result))
    return result


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


async def route_to_node(
    verb: str,
    node_workflow: Callable[[Any, In], Awaitable[T]],
    request: In,
    where: ContainerLocation,
) -> T:
    """Hand the operation to ``node_workflow`` (an ``<Op>OnNode`` run method) on the container's
    node with ``request``: continue as new there (:func:`continue_on_node`, never returns), or,
    in a run recorded before :data:`CONTINUE_ON_NODE_PATCH`, run it as a child and return its
    result (:func:`run_on_node`)."""
    if workflow.patched(CONTINUE_ON_NODE_PATCH):
        continue_on_node(verb, node_workflow, request, where)
    return await run_on_node(verb, node_workflow, request, where)


def continue_on_node(
    verb: str,
    node_workflow: Callable[[Any, In], Awaitable[Any]],
    request: In,
    where: ContainerLocation,
) -> NoReturn:
    """Continue as new as ``node_workflow`` with ``request`` on the queue of the container's
    node, the container's search attributes on both runs.

    The new run holds the container as its own operation (:func:`operation_id`): this workflow
    id, checked here so that a too long one fails before the hand-over, and its own run id.
    """
    check_operation_workflow_id(workflow.info().workflow_id)
    _tag_container(where)
    workflow.set_current_details(f"{verb} {where.name}: continued as new on {where.node}")
    workflow.continue_as_new(
        request,
        workflow=node_workflow,
        task_queue=node_task_queue(where.node),
        search_attributes=container_attributes(where.container_id, where.name, where.node),
    )


async def run_on_node(
    verb: str,
    child: Callable[[Any, In], Awaitable[T]],
    request: In,
    where: ContainerLocation,
) -> T:
    """Run ``child`` (an ``<Op>OnNode`` run method) on the container's node with ``request``.

    The shape of runs recorded before :data:`CONTINUE_ON_NODE_PATCH`, kept so they replay.
    The child holds the container as its own operation (:func:`operation_id`). When it fails
    without ending that operation itself (terminated, node lost), the container is released here.
    """
    child_id = f"{workflow.info().workflow_id}-on-{where.node}"
    if len(child_id) > MAX_OPERATION_WORKFLOW_ID:
        raise InvalidParameter(
            f"workflow id: at most {MAX_OPERATION_WORKFLOW_ID - len(where.node) - 4} characters "
            f"to run on node {where.node}, got {len(workflow.info().workflow_id)}"
        )
    _tag_container(where)
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
        set_outcome(FAILED)
        if operation is not None:
            await _release(where, operation, err)
        if isinstance(err, asyncio.CancelledError):
            raise
        raise as_berth_error(err) from None
    return result


def _tag_container(where: ContainerLocation) -> None:
    """This run's search attributes: the container's id, name and node."""
    workflow.upsert_search_attributes(
        [
            CONTAINER_ID.value_set(where.container_id),
            CONTAINER_NAME.value_set(where.name),
            NODE.value_set(where.node),
        ]
    )


async def _release(where: ContainerLocation, operation: str, err: BaseException) -> None:
    """Release the container from a child that ended without ending its operation."""
    abort = AbortInput(
        container_id=where.container_id, operation=operation, error=failure_message(err)
    )
    await run_to_completion(
        lambda: run_step(steps.ABORT_OPERATION, abort, f"release container {where.name}")
    )
