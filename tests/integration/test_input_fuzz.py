"""Random JSON at every public workflow: it fails at once with InvalidParameter, never wedges.

Hypothesis draws the inputs; each is sent as plain JSON, as any Temporal client would send it.
Inputs that happen to be valid are left out here (their behaviour is specified elsewhere), so
no draw can restart or remove a real container.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError

from berth.config import node_task_queue
from berth.contract import WORKFLOW_CONTRACTS
from tests.integration.conftest import Stack
from workflows.container_start import NodeStartInput

SETTLE_SECONDS = 15

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def near_misses(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the model's own field names and random values: the likeliest mistakes."""
    names = list(model.model_fields)
    return st.dictionaries(st.sampled_from(names), json_values, max_size=len(names))


def is_valid(model: type[BaseModel], value: object) -> bool:
    try:
        model.model_validate(value)
    except ValidationError:
        return False
    return True


# (workflow type, task queue, input model): the public workflows and the node-level start.
TARGETS = [(name, "berth", models[0]) for name, models in sorted(WORKFLOW_CONTRACTS.items())]


async def outcome(raw: Client, workflow: str, queue: str, value: object) -> str | None:
    """The failure type the workflow ended with (None if it succeeded)."""
    handle = await raw.start_workflow(
        workflow, value, id=f"fuzz-{uuid.uuid4().hex[:12]}", task_queue=queue
    )
    try:
        await asyncio.wait_for(handle.result(), SETTLE_SECONDS)
    except WorkflowFailureError as err:
        return str(getattr(err.cause, "type", type(err.cause).__name__))
    return None


async def test_random_json_to_every_workflow_fails_at_once_with_invalid_parameter(
    stack: Stack,
) -> None:
    raw = await Client.connect(
        stack.settings.temporal_address, namespace=stack.settings.temporal_namespace
    )
    targets = [
        *TARGETS,
        ("ContainerStartOnNode", node_task_queue(stack.settings.node), NodeStartInput),
    ]
    loop = asyncio.get_running_loop()
    seen: list[tuple[str, str | None]] = []

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def property_holds(data: st.DataObject) -> None:
        workflow, queue, model = data.draw(st.sampled_from(targets))
        value = data.draw(json_values | near_misses(model))
        if is_valid(model, value):
            return
        future = asyncio.run_coroutine_threadsafe(outcome(raw, workflow, queue, value), loop)
        failure = future.result(timeout=SETTLE_SECONDS + 5)
        seen.append((workflow, failure))
        assert failure == "InvalidParameter", (workflow, value, failure)

    # Hypothesis drives from a thread, so this loop stays free to run the workers.
    for _ in range(3):
        await asyncio.to_thread(property_holds)
    assert len(seen) >= 10
    # Visibility lags a little behind; describe() is the authoritative status of each one.
    listed = raw.list_workflows('WorkflowId STARTS_WITH "fuzz-" AND ExecutionStatus="Running"')
    still_running = [
        w.id
        async for w in listed
        if (await raw.get_workflow_handle(w.id, run_id=w.run_id).describe()).status
        == WorkflowExecutionStatus.RUNNING
    ]
    assert still_running == []
