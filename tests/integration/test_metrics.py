"""The workers' Prometheus endpoint: Berth's action and compensation metrics beside the SDK's."""

from __future__ import annotations

import asyncio
import re
import urllib.request

import pytest

from berth.errors import System
from tests.integration.conftest import Stack


def scrape(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        return response.read().decode()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample, matching the given labels (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(key) == value for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_metrics_count_a_start_and_a_failed_start_with_its_compensations(
    stack: Stack,
) -> None:
    address = stack.settings.metrics_address
    assert address is not None
    before = await asyncio.to_thread(scrape, address)
    good = await stack.create()
    bad = await stack.create(cmd=["/no/such/binary"])

    await stack.berth.start(good)
    with pytest.raises(System):
        await stack.berth.start(bad)

    after = await asyncio.to_thread(scrape, address)
    for outcome in ("ok", "failed"):
        assert sample(after, "berth_container_actions", action="start", outcome=outcome) == (
            sample(before, "berth_container_actions", action="start", outcome=outcome) + 1
        )
    count = "berth_container_action_duration_count"
    assert sample(after, count, action="start", outcome="ok") >= 1
    for step in ("mount", "network", "spec", "shim"):
        assert sample(after, "berth_compensations", step=step, outcome="ok") == (
            sample(before, "berth_compensations", step=step, outcome="ok") + 1
        )
    assert "temporal_workflow_completed" in after


async def test_metrics_count_a_restart_as_one_action(stack: Stack) -> None:
    address = stack.settings.metrics_address
    assert address is not None
    container_id = await stack.create()
    await stack.berth.start(container_id)
    before = await asyncio.to_thread(scrape, address)

    await stack.berth.restart(container_id, timeout=0)

    after = await asyncio.to_thread(scrape, address)
    restarts = {"action": "restart", "outcome": "ok"}
    assert sample(after, "berth_container_actions", **restarts) == (
        sample(before, "berth_container_actions", **restarts) + 1
    )
    # Restarted in place: no start saga ran.
    starts = {"action": "start", "outcome": "ok"}
    assert sample(after, "berth_container_actions", **starts) == (
        sample(before, "berth_container_actions", **starts)
    )
