"""Structured logs: JSON lines carrying workflow, container, node and step."""

from __future__ import annotations

import json
import logging

from berth.logs import JsonFormatter


def record(**extra: object) -> logging.LogRecord:
    line = logging.LogRecord(
        "temporalio.workflow", logging.INFO, __file__, 1, "mount rootfs", (), None
    )
    for key, value in extra.items():
        setattr(line, key, value)
    return line


def test_json_formatter_lifts_workflow_ids_and_berth_context() -> None:
    line = record(
        temporal_workflow={"workflow_id": "container-start-abc", "run_id": "r1"},
        container_id="abc",
        node="node-1",
        step="mount",
    )

    parsed = json.loads(JsonFormatter().format(line))

    assert parsed["message"] == "mount rootfs"
    assert (parsed["workflow_id"], parsed["run_id"]) == ("container-start-abc", "r1")
    assert (parsed["container_id"], parsed["node"], parsed["step"]) == ("abc", "node-1", "mount")


def test_json_formatter_takes_activity_context_and_omits_what_is_unknown() -> None:
    line = record(
        temporal_activity={
            "workflow_id": "w",
            "workflow_run_id": "r",
            "activity_type": "attach_network",
        }
    )

    parsed = json.loads(JsonFormatter().format(line))

    assert (parsed["workflow_id"], parsed["run_id"], parsed["activity"]) == (
        "w",
        "r",
        "attach_network",
    )
    assert "container_id" not in parsed
