"""Random JSON at every public workflow: it fails at once with InvalidParameter, never wedges.

Hypothesis draws the inputs; each is sent as plain JSON, as any Temporal client would send it.
Inputs that happen to be valid are left out here (their behaviour is specified elsewhere), so
no draw can restart or remove a real container.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError

from berth.config import node_task_queue
from berth.contract import WORKFLOW_CONTRACTS
from berth.steps import ExitInput, NodeStartInput, NodeStopInput
from tests.integration.conftest import Stack

SETTLE_SECONDS = 15

# What issue 12 found accepted: NUL characters, integers past int64, very long lists and strings.
nul_texts = st.builds(lambda a, b: f"{a}\x00{b}", st.text(max_size=5), st.text(max_size=5))
huge_ints = st.integers(min_value=2**63, max_value=2**80) | st.integers(max_value=-(2**63) - 1)
long_lists = st.integers(min_value=4097, max_value=4200).map(lambda n: ["x"] * n)
long_texts = st.integers(min_value=4097, max_value=9000).map(lambda n: "k" * n)
tiny_floats = st.floats(min_value=1e-12, max_value=0.0009)
poison = nul_texts | huge_ints | long_lists | long_texts | tiny_floats

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | poison,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def near_misses(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the model's own field names and random values: the likeliest mistakes."""
    names = list(model.model_fields)
    return st.dictionaries(st.sampled_from(names), json_values, max_size=len(names))


# Valid inputs of the public workflows, each with one field to poison at a time.
VALID_CREATE = {
    "config": {
        "name": "fuzz-valid",
        "image": "local/busybox:latest",
        "cmd": ["sleep", "1"],
        "labels": {"app": "web"},
        "user": "1000",
        "working_dir": "/",
        "resources": {"pids_limit": 64, "memory_bytes": 67108864},
        "healthcheck": {"test": ["CMD", "true"], "interval": 1, "timeout": 1},
    }
}
VALID_FLEET = {"name": "fuzz-valid", "selector": {"labels": {"app": "web"}, "ids": ["web-1"]}}
POISONABLE: list[tuple[str, dict[str, Any], list[tuple[str, ...]]]] = [
    (
        "ContainerCreate",
        VALID_CREATE,
        [
            ("config", "cmd"),
            ("config", "labels", "app"),
            ("config", "user"),
            ("config", "working_dir"),
            ("config", "resources", "pids_limit"),
            ("config", "resources", "memory_bytes"),
            ("config", "healthcheck", "interval"),
            ("config", "healthcheck", "timeout"),
        ],
    ),
    (
        "FleetRestart",
        VALID_FLEET,
        [
            ("selector", "labels", "app"),
            ("selector", "ids"),
            ("canary",),
            ("max_failures",),
            ("carry",),
        ],
    ),
]


def poisoned(base: dict[str, Any], path: tuple[str, ...], value: object) -> dict[str, Any]:
    """``base`` with the field at ``path`` replaced by ``value``."""
    copy = json.loads(json.dumps(base))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return copy


def is_valid(model: type[BaseModel], value: object) -> bool:
    try:
        model.model_validate(value)
    except ValidationError:
        return False
    return True


# (workflow type, task queue, input model): the public workflows and the node-level start.
TARGETS = [(name, "berth", models[0]) for name, models in sorted(WORKFLOW_CONTRACTS.items())]
TARGETS_BY_NAME = [(name, model) for name, _, model in TARGETS]


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
    node_queue = node_task_queue(stack.settings.node)
    targets = [
        *TARGETS,
        ("ContainerStartOnNode", node_queue, NodeStartInput),
        ("ContainerStopOnNode", node_queue, NodeStopInput),
        ("ContainerExitedOnNode", node_queue, ExitInput),
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


async def test_one_poisoned_field_in_a_valid_input_fails_at_once_with_invalid_parameter(
    stack: Stack,
) -> None:
    """A valid create or fleet restart with one field made NUL-bearing, huge or long."""
    raw = await Client.connect(
        stack.settings.temporal_address, namespace=stack.settings.temporal_namespace
    )
    models = dict(TARGETS_BY_NAME)
    loop = asyncio.get_running_loop()
    seen: list[str | None] = []

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def property_holds(data: st.DataObject) -> None:
        workflow, base, paths = data.draw(st.sampled_from(POISONABLE))
        value = poisoned(base, data.draw(st.sampled_from(paths)), data.draw(poison))
        if is_valid(models[workflow], value):
            return
        future = asyncio.run_coroutine_threadsafe(outcome(raw, workflow, "berth", value), loop)
        failure = future.result(timeout=SETTLE_SECONDS + 5)
        seen.append(failure)
        assert failure == "InvalidParameter", (workflow, value, failure)

    await asyncio.to_thread(property_holds)
    assert len(seen) >= 10
