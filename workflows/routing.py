"""Shared shapes of Berth's workflows: host-bound local steps, and routing to a node.

Every per-container operation runs as ``<Op>OnNode`` on the agent of the container's node, where
its steps are local activities. The public ``<Op>`` workflows on the control queue ``berth``
find the node and run that workflow there as a child; :func:`run_on_node` is that routing, once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ChildWorkflowError
from temporalio.workflow import ActivityCancellationType, ChildWorkflowCancellationType

with workflow.unsafe.imports_passed_through():
    from activities.state import AbortInput, ContainerLocation, LocateInput, StateActivities
    from berth.config import node_task_queue
    from berth.errors import as_berth_error
    from workflows import visibility
    from workflows.policies import STATE_RETRY, STEP_RETRY, STEP_TIMEOUT
    from workflows.saga import failure_message, run_to_completion

T = TypeVar("T")
In = TypeVar("In")


async def local_step(
    activity: Callable[[Any, In], Awaitable[T]],
    request: In,
    summary: str,
    retry: RetryPolicy = STEP_RETRY,
    timeout: timedelta = STEP_TIMEOUT,
) -> T:
    """Run one step as a local activity that is waited for when cancelled (it may be host-bound)."""
    return await workflow.execute_local_activity_method(
        activity,
        request,
        start_to_close_timeout=timeout,
        retry_policy=retry,
        cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        summary=summary,
    )


def set_outcome(outcome: str) -> None:
    workflow.upsert_search_attributes([visibility.OUTCOME.value_set(outcome)])


async def locate(container: str) -> ContainerLocation:
    """The container's id, name and node; a typed error (``NotFound``) if there is none."""
    try:
        return await local_step(
            StateActivities.locate_container,
            LocateInput(container=container),
            f"find the node of container {container}",
            retry=STATE_RETRY,
        )
    except Exception as err:
        raise as_berth_error(err) from None


async def run_on_node(
    verb: str,
    child: Callable[[Any, In], Awaitable[T]],
    make_input: Callable[[str], In],
    where: ContainerLocation,
) -> T:
    """Run ``child`` (an ``<Op>OnNode`` run method) on the container's node as this operation.

    ``make_input`` gets the operation id (this workflow's id). When the child fails without
    ending the operation itself (terminated, node lost), the container is released here.
    """
    operation = workflow.info().workflow_id
    workflow.upsert_search_attributes(
        [
            visibility.CONTAINER_ID.value_set(where.container_id),
            visibility.CONTAINER_NAME.value_set(where.name),
            visibility.NODE.value_set(where.node),
        ]
    )
    workflow.set_current_details(f"{verb} {where.name} on {where.node}")
    try:
        result = await workflow.execute_child_workflow(
            child,
            make_input(operation),
            id=f"{operation}-on-{where.node}",
            task_queue=node_task_queue(where.node),
            cancellation_type=ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED,
            search_attributes=visibility.container_attributes(
                where.container_id, where.name, where.node
            ),
            static_summary=f"{verb} {where.name} on {where.node}",
        )
    except (ChildWorkflowError, asyncio.CancelledError) as err:
        set_outcome("failed")
        abort = AbortInput(
            container_id=where.container_id, operation=operation, error=failure_message(err)
        )
        await run_to_completion(
            lambda: local_step(
                StateActivities.abort_operation,
                abort,
                f"release container {where.name}",
                retry=STATE_RETRY,
            )
        )
        if isinstance(err, asyncio.CancelledError):
            raise
        raise as_berth_error(err) from None
    return result
