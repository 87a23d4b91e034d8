"""A start logs each saga phase as a structured line naming workflow, container, node, step."""

from __future__ import annotations

import json
import logging

import pytest

from berth.logs import JsonFormatter
from tests.integration.conftest import Stack
from workflows.visibility import start_workflow_id


async def test_start_logs_every_phase_with_workflow_container_node_and_step(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    container_id = await stack.create()

    with caplog.at_level(logging.INFO, logger="temporalio.workflow"):
        await stack.berth.start(container_id)

    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records]
    mine = [line for line in lines if line.get("container_id") == container_id]
    assert [line["step"] for line in mine] == [
        "mount",
        "network",
        "spec",
        "shim",
        "task",
        "commit",
        "running",
    ]
    assert {line["workflow_id"] for line in mine} == {start_workflow_id(container_id)}
    assert {line["node"] for line in mine} == {stack.settings.node}
    assert all(line["run_id"] for line in mine)
