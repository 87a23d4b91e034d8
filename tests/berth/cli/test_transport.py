"""The HTTP path runs what BerthClient runs: the same workflow, id, queue, search attributes and an
input the workflow's own model takes (the calls on the real stack: test_cli_transport.py).

A fake reader and a recording transport stand in for PostgreSQL and Temporal: this checks the
mapping only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from berth.cli.context import DaemonError
from berth.cli.transport import HttpOperations
from berth.contract import ContainerConfig, ContainerCreateInput
from berth.db.reads import ContainerRow
from berth.steps import (
    CONTAINER_ID,
    CONTAINER_NAME,
    NODE,
    NodePauseInput,
    NodeRemoveInput,
    NodeRestartInput,
    NodeStartInput,
    NodeStopInput,
    node_task_queue,
)

ROW = ContainerRow(
    id="c" * 64, name="web-1", image="local/busybox:latest", node="node-2", config={},
    state="created", pid=None, exit_code=None, error=None, ip=None, operation=None,
    restart_count=0, restart_backoff_ms=0, stop_signal=None, has_been_started_before=False,
    has_been_manually_stopped=False, created_at=datetime.now(UTC), started_at=None,
    finished_at=None,
)  # fmt: skip


class Reader:
    def __init__(self, live: bool = True) -> None:
        self.live = live

    async def find(self, ref: str) -> ContainerRow | None:
        return ROW if ref in (ROW.id, ROW.name) else None

    async def node_is_live(self, node: str) -> bool:
        return self.live


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.result: dict[str, Any] = {}

    def execute(self, *call: Any) -> dict[str, Any]:
        self.calls.append(call)
        return self.result


CASES = [
    ("start", (), "ContainerStartOnNode", "start", NodeStartInput, {}),
    ("stop", (7,), "ContainerStopOnNode", "stop", NodeStopInput, {"timeout": 7}),
    ("restart", (None,), "ContainerRestartOnNode", "restart", NodeRestartInput, {}),
    ("pause", (), "ContainerPauseOnNode", "pause", NodePauseInput, {"pause": True}),
    ("unpause", (), "ContainerPauseOnNode", "unpause", NodePauseInput, {"pause": False}),
    ("remove", (True,), "ContainerRemoveOnNode", "remove", NodeRemoveInput, {"force": True}),
]


@pytest.mark.parametrize(("method", "args", "workflow", "verb", "model", "expect"), CASES)
async def test_http_operation_runs_the_clients_workflow_with_an_input_its_model_takes(
    method: str,
    args: tuple[Any, ...],
    workflow: str,
    verb: str,
    model: Any,
    expect: dict[str, Any],
) -> None:
    recorder = Recorder()
    operations = HttpOperations(Reader(), recorder)  # type: ignore[arg-type]

    await getattr(operations, method)("web-1", *args)

    ((workflow_type, workflow_id, queue, argument, attributes, use_existing),) = recorder.calls
    assert use_existing  # a second call attaches to the running operation
    assert workflow_type == workflow
    assert workflow_id == f"container-{verb}-{ROW.id}"
    assert queue == node_task_queue(ROW.node)
    assert attributes == {
        CONTAINER_ID.name: ROW.id,
        CONTAINER_NAME.name: ROW.name,
        NODE.name: ROW.node,
    }
    parsed = model.model_validate(argument)
    assert parsed.request.container == ROW.id
    for field, value in expect.items():
        found = getattr(parsed, field) if hasattr(parsed, field) else getattr(parsed.request, field)
        assert found == value


async def test_http_create_runs_container_create_on_the_control_queue_with_the_config() -> None:
    recorder = Recorder()
    recorder.result = {"id": ROW.id, "name": "web-1", "node": "node-2"}
    operations = HttpOperations(Reader(), recorder, "berth-tenant")  # type: ignore[arg-type]
    config = ContainerConfig(
        name="web-1", image="local/busybox:latest", cmd=["sleep", "5"], env=["A=1"]
    )

    created = await operations.create(config)

    ((workflow_type, workflow_id, queue, argument, attributes, use_existing),) = recorder.calls
    assert (workflow_type, workflow_id, queue) == (
        "ContainerCreate",
        "container-create-web-1",
        "berth-tenant",
    )
    assert ContainerCreateInput.model_validate(argument).config == config
    assert (attributes, use_existing) == ({}, False)  # as the client: a second create is refused
    assert (created.id, created.node) == (ROW.id, "node-2")


async def test_http_operation_on_unknown_container_is_no_such_container() -> None:
    operations = HttpOperations(Reader(), Recorder())  # type: ignore[arg-type]

    with pytest.raises(DaemonError, match="No such container: nope"):
        await operations.start("nope")


async def test_http_operation_on_a_node_without_agent_does_nothing() -> None:
    recorder = Recorder()
    operations = HttpOperations(Reader(live=False), recorder)  # type: ignore[arg-type]

    with pytest.raises(DaemonError, match="node node-2 has no running agent"):
        await operations.stop("web-1")
    assert recorder.calls == []
