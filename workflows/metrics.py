"""Berth's own metrics, recorded from workflows through the SDK's replay-safe meter.

Exported with the Temporal SDK's metrics on each worker's Prometheus endpoint
(``BERTH_METRICS_ADDRESS``):

- ``berth_container_action_duration`` (histogram, ms; ``action`` = start, stop, restart, ...):
  how long each lifecycle action took, like dockerd's ``container_actions``.
- ``berth_container_actions`` (counter; ``action``, ``outcome`` = ok / failed / not-modified).
- ``berth_compensations`` (counter; ``step``, ``outcome`` = ok / failed): undo steps run.
- ``berth_fleet_items`` (counter; ``fleet``, ``node``, ``outcome`` = restarted / failed / busy):
  fleet restart progress, item by item.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from berth.steps import ACTION_DURATION

T = TypeVar("T")

ACTIONS = "berth_container_actions"
COMPENSATIONS = "berth_compensations"
FLEET_ITEMS = "berth_fleet_items"


def record_action(action: str, outcome: str, started: datetime) -> None:
    """Count the action and, when it did something, record how long it took."""
    meter = workflow.metric_meter()
    meter.create_counter(ACTIONS, "Container lifecycle actions").add(
        1, {"action": action, "outcome": outcome}
    )
    if outcome != "not-modified":
        meter.create_histogram_timedelta(
            ACTION_DURATION, "Duration of container lifecycle actions", "ms"
        ).record(workflow.now() - started, {"action": action, "outcome": outcome})


async def recorded(action: str, began: datetime, run: Callable[[], Awaitable[T]]) -> T:
    """Await ``run()`` and record the action as ``ok``, or ``failed`` when it raises."""
    try:
        result = await run()
    except BaseException:
        record_action(action, "failed", began)
        raise
    record_action(action, "ok", began)
    return result


def record_compensation(step: str, ok: bool) -> None:
    workflow.metric_meter().create_counter(COMPENSATIONS, "Saga compensations run").add(
        1, {"step": step, "outcome": "ok" if ok else "failed"}
    )


def record_fleet_item(fleet: str, node: str, outcome: str) -> None:
    workflow.metric_meter().create_counter(FLEET_ITEMS, "Fleet restart items finished").add(
        1, {"fleet": fleet, "node": node, "outcome": outcome}
    )
