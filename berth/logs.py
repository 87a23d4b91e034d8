"""Structured logs: one JSON object per line, with the workflow, container, node and step.

Temporal's workflow and activity loggers attach ``temporal_workflow`` / ``temporal_activity``
to each record; Berth's own log calls add ``container_id``, ``node`` and ``step`` as extras.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

# Extras that Berth's log calls pass, copied to the top level of the line.
CONTEXT_FIELDS = ("container_id", "container_name", "node", "step", "operation")


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        workflow = getattr(record, "temporal_workflow", None) or {}
        activity = getattr(record, "temporal_activity", None) or {}
        line["workflow_id"] = workflow.get("workflow_id") or activity.get("workflow_id")
        line["run_id"] = workflow.get("run_id") or activity.get("workflow_run_id")
        if activity:
            line["activity"] = activity.get("activity_type")
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                line[field] = value
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps({k: v for k, v in line.items() if v is not None}, default=str)


def configure(level: int = logging.INFO) -> None:
    """Send every log record to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
