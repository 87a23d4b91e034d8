"""Health checks on the real stack: probes run as exec processes inside the container's task.

Short intervals keep the file fast; the rules under test are docker's (``berth.health``).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from berth.cli.ps import health_label
from berth.contract import ContainerConfig, FleetProgress, FleetRestartInput
from berth.db.models import ContainerHealth
from berth.health_prober import EXEC_PREFIX
from berth.runtime.containerd import ContainerdClient
from berth.runtime.image import DEFAULT_REF
from tests.integration.conftest import Stack
from tests.integration.node_agent import (
    Node2,
)

T = TypeVar("T")
FAST = {"interval": 0.5, "timeout": 2.0, "retries": 3}


async def eventually(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], timeout: float = 30.0
) -> T:
    """Poll ``probe`` until ``accept`` holds; the last value in the failure message."""
    deadline = time.monotonic() + timeout
    value = await probe()
    while not accept(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met after {timeout}s; last value: {value!r}")
        await asyncio.sleep(0.1)
        value = await probe()
    return value


async def health_of(
    sessions: async_sessionmaker[AsyncSession], container_id: str
) -> ContainerHealth | None:
    async with sessions() as session:
        return await session.get(ContainerHealth, container_id)


async def health_execs(containerd: ContainerdClient, container_id: str) -> list[str]:
    return [e for e in await containerd.exec_ids(container_id) if e.startswith(EXEC_PREFIX)]


async def test_healthcheck_passing_check_becomes_healthy(stack: Stack) -> None:
    cid = await stack.create(
        healthcheck={"test": ["CMD-SHELL", "echo ok; test -d /proc/self"], **FAST}
    )
    started = await stack.berth.start(cid)

    health = await eventually(
        lambda: health_of(stack.sessions, cid), lambda h: h is not None and h.status == "healthy"
    )

    assert health is not None and health.pid == started.pid and health.failing_streak == 0
    assert health.log[-1]["ExitCode"] == 0 and health.log[-1]["Output"] == "ok\n"
    inspected = await stack.berth.inspect(cid)
    assert inspected["State"]["Health"]["Status"] == "healthy"
    events = [e.action for e in await stack.berth.events(cid)]
    assert "health_status: healthy" in events
    assert health_label(await stack.berth.health_statuses(), cid) == " (healthy)"
    assert await health_execs(stack.containerd, cid) == []


async def test_healthcheck_failing_check_becomes_unhealthy_after_three_failures(
    stack: Stack,
) -> None:
    cid = await stack.create(healthcheck={"test": ["CMD", "sh", "-c", "echo bad; exit 3"], **FAST})
    await stack.berth.start(cid)

    health = await eventually(
        lambda: health_of(stack.sessions, cid),
        lambda h: h is not None and h.status == "unhealthy",
    )

    assert health is not None and health.failing_streak == 3
    assert [entry["ExitCode"] for entry in health.log] == [3, 3, 3]
    assert health.log[-1]["Output"] == "bad\n"
    events = [e.action for e in await stack.berth.events(cid)]
    assert events.count("health_status: unhealthy") == 1
    assert health_label(await stack.berth.health_statuses(), cid) == " (unhealthy)"


async def test_healthcheck_hanging_check_is_cut_at_timeout_and_counts_as_failure(
    stack: Stack,
) -> None:
    cid = await stack.create(
        healthcheck={"test": ["CMD", "sleep", "600"], "interval": 0.5, "timeout": 0.5, "retries": 2}
    )
    await stack.berth.start(cid)

    health = await eventually(
        lambda: health_of(stack.sessions, cid),
        lambda h: h is not None and h.status == "unhealthy",
    )

    assert health is not None and health.failing_streak == 2
    assert all(entry["ExitCode"] == -1 for entry in health.log)
    assert "exceeded timeout" in health.log[-1]["Output"]
    await stack.berth.stop(cid, timeout=1)
    # Probing stops with the task: no probe is left running, nothing new is recorded.
    stopped = await health_of(stack.sessions, cid)
    await asyncio.sleep(1.5)
    later = await health_of(stack.sessions, cid)
    assert stopped is not None and later is not None and later.log == stopped.log
    assert later.exec_id is None


async def test_healthcheck_restart_starts_over_at_starting_for_the_new_task(stack: Stack) -> None:
    cid = await stack.create(healthcheck={"test": ["CMD", "true"], **FAST})
    first = await stack.berth.start(cid)
    await eventually(
        lambda: health_of(stack.sessions, cid), lambda h: h is not None and h.status == "healthy"
    )

    second = await stack.berth.restart(cid, timeout=1)

    health = await eventually(
        lambda: health_of(stack.sessions, cid),
        lambda h: h is not None and h.pid == second.pid and h.status == "healthy",
    )
    assert second.pid != first.pid and health is not None


async def test_healthcheck_node_agent_killed_mid_probe_resumes_streak_without_stray_execs(
    node2: Node2,
) -> None:
    # Each probe takes ~3 s and fails: the agent is killed while one is in flight (long enough
    # that the probe seen in PostgreSQL is still running when containerd is asked, under load).
    cid = await node2.create(
        healthcheck={"test": ["CMD-SHELL", "sleep 3; exit 1"], "interval": 0.3, "retries": 4}
    )
    started = await (await node2.start_workflow(cid)).result()
    in_flight = await eventually(
        lambda: health_of(node2.sessions, cid),
        lambda h: h is not None and h.failing_streak >= 1 and h.exec_id is not None,
    )
    assert in_flight is not None
    left_behind, streak = in_flight.exec_id, in_flight.failing_streak
    # The id is recorded before the exec is created, so containerd may show it a moment later.
    await eventually(
        lambda: health_execs(node2.runtime.containerd, cid),
        lambda execs: left_behind in execs,
        timeout=2.5,
    )

    node2.agent.kill()
    await node2.agent.start()

    # The new agent deletes the killed agent's exec and resumes the same task's streak.
    await eventually(
        lambda: health_execs(node2.runtime.containerd, cid), lambda execs: left_behind not in execs
    )
    resumed = await health_of(node2.sessions, cid)
    assert resumed is not None and resumed.pid == started.pid
    assert resumed.failing_streak >= streak
    health = await eventually(
        lambda: health_of(node2.sessions, cid),
        lambda h: h is not None and h.status == "unhealthy",
        timeout=60.0,
    )
    assert health is not None and health.failing_streak == 4


async def create_named(stack: Stack, name: str, **fields: object) -> str:
    created = await stack.berth.create(
        ContainerConfig.model_validate(
            {
                "name": name,
                "image": DEFAULT_REF,
                "cmd": ["sleep", "3600"],
                "node": stack.settings.node,  # one node, so the selection runs in name order
                **fields,
            }
        )
    )
    stack.created.append(created.id)
    return created.id


async def fleet_until(
    stack: Stack, name: str, done: Callable[[FleetProgress], bool]
) -> FleetProgress:
    return await eventually(lambda: stack.berth.fleet.progress(name), done, timeout=60)


async def test_healthcheck_fleet_restart_unhealthy_containers_trip_budget_and_pause(
    stack: Stack,
) -> None:
    tag = uuid.uuid4().hex[:6]
    good = {"test": ["CMD", "true"], **FAST}
    bad = {"test": ["CMD-SHELL", "echo not serving; exit 1"], **FAST}
    # The selection runs in name order on one node: two pass, the third fails, one is left.
    checks = {"a": good, "b": good, "c": bad, "d": good}
    ids = {k: await create_named(stack, f"hc-{tag}-{k}", healthcheck=c) for k, c in checks.items()}
    for cid in ids.values():
        await stack.berth.start(cid)
    request = FleetRestartInput.model_validate(
        {
            "name": f"hc-{tag}",
            "selector": {"ids": list(ids.values())},
            "max_parallel": 1,
            "max_failures": 0,
            "stop_timeout": 0,
        }
    )
    handle = await stack.berth.fleet.restart(request)

    paused = await fleet_until(
        stack, request.name, lambda p: p.status == "paused" and not p.counts.in_flight
    )

    counts = paused.counts
    assert (counts.restarted, counts.failed, counts.remaining) == (2, 1, 1), paused
    assert "failure budget" in paused.reason
    # The gate reports the streak it saw: at least the 3 retries, more if a probe ran first.
    streak = re.search(r"unhealthy after (\d+) failed health checks: not serving", paused.errors[0])
    assert streak is not None and int(streak.group(1)) >= 3, paused.errors
    await stack.berth.fleet.cancel(request.name)
    assert (await handle.result()).status == "cancelled"


async def test_healthcheck_fleet_restart_still_starting_at_deadline_fails_the_item(
    stack: Stack,
) -> None:
    cid = await stack.create(healthcheck={"test": ["CMD", "false"], "interval": 0.5, "retries": 99})
    await stack.berth.start(cid)
    request = FleetRestartInput.model_validate(
        {
            "name": f"hc-{uuid.uuid4().hex[:6]}",
            "selector": {"ids": [cid]},
            "healthy_deadline": 2,
            "on_failure": "abort",
            "stop_timeout": 0,
        }
    )

    result = await (await stack.berth.fleet.restart(request)).result()

    assert (result.status, result.counts.failed) == ("aborted", 1), result
    assert "not healthy within healthy_deadline 2s" in result.errors[0]


async def test_healthcheck_invalid_test_is_refused_at_the_edge(stack: Stack) -> None:
    for test in (["CMD"], ["CMD-SHELL", "a", "b"], ["NONE", "x"], ["SHELL", "true"]):
        with pytest.raises(ValidationError):
            ContainerConfig.model_validate(
                {"name": "hc-bad", "image": DEFAULT_REF, "healthcheck": {"test": test}}
            )


async def test_healthcheck_probe_printing_megabytes_keeps_4_kib_on_disk_and_stored(
    stack: Stack,
) -> None:
    # 20 MB of output, then the probe lingers so its output file can be looked at.
    check = "yes 0123456789abcdef | head -c 20000000; sleep 2"
    cid = await stack.create(
        healthcheck={"test": ["CMD-SHELL", check], "interval": 0.5, "timeout": 10.0, "retries": 3}
    )
    await stack.berth.start(cid)
    output_dir = stack.settings.node_paths().health_dir
    largest = seen = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for path in output_dir.glob(f"{cid}-*.out"):
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            seen += 1
            largest = max(largest, size)
        health = await health_of(stack.sessions, cid)
        if health is not None and health.log:
            break
        await asyncio.sleep(0.05)

    assert health is not None and health.log, "no probe result within 30s"
    assert seen > 0  # the probe's output file was there to look at
    assert largest <= 4097  # what the driver keeps: 4 KiB and a byte to tell it was cut
    output = health.log[-1]["Output"]
    assert health.log[-1]["ExitCode"] == 0
    assert len(output) == 4096 + len("...") and output.startswith("0123456789abcdef\n")
