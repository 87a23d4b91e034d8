"""``FleetRestart`` on the real stack across three nodes: node-1 in this process, node-2 and
node-3 as agent subprocesses (node-2's is the crash tests' agent, with its fault file).

One fleet of 60 running containers (20 per node) is created once for the module; each test
restarts all of it or a slice. Every test ends with the leak checker on every node.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from berth.client import BerthClient
from berth.config import Settings
from berth.contract import ContainerConfig, FleetProgress, FleetRestartInput
from berth.db.models import Container, FleetItem
from berth.errors import BerthError, Conflict
from berth.fleet_cli import progress_line
from berth.leaks import check_node
from berth.runtime.image import DEFAULT_REF
from berth.worker import NodeRuntime, node_runtime
from dev.teardown import tear_down_host
from tests.integration.conftest import TEST_CODEC_KEYS
from tests.integration.node_agent import NodeAgent, serving
from tests.support.stack import SuiteStack

PER_NODE = 20
NODES = ("node-1", "node-2", "node-3")
DONE_TIMEOUT = 120


class Node3Agent(NodeAgent):
    """The node-2 helper's agent, run as node-3 (its own bridge, subnet and fault file)."""


@pytest.fixture(scope="module")
def node3_settings(settings: Settings, suite_stack: SuiteStack) -> Settings:
    return suite_stack.node_settings(settings, "node-3")


@pytest.fixture(scope="module")
async def node3_agent(
    node3_settings: Settings, workers: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Node3Agent]:
    agent = Node3Agent(node3_settings, tmp_path_factory.mktemp("node3"))
    async with serving(agent):
        yield agent


@dataclass
class Fleet:
    """The module's 60 containers and what the tests need around them."""

    berth: BerthClient
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    temporal: Client
    runtimes: dict[str, NodeRuntime]
    node2: NodeAgent
    node3: Node3Agent
    by_node: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return [cid for ids in self.by_node.values() for cid in ids]

    def request(self, ids: Sequence[str], **knobs: Any) -> FleetRestartInput:
        knobs.setdefault("stop_timeout", 0)
        return FleetRestartInput.model_validate(
            {"name": f"t-{uuid.uuid4().hex[:8]}", "selector": {"ids": list(ids)}, **knobs}
        )

    async def records(self, ids: Sequence[str]) -> dict[str, Container]:
        async with self.sessions() as session:
            found = {cid: await session.get(Container, cid) for cid in ids}
        return {cid: c for cid, c in found.items() if c is not None}

    async def pids(self, ids: Sequence[str]) -> dict[str, int | None]:
        return {cid: c.pid for cid, c in (await self.records(ids)).items()}

    async def items(self, name: str) -> Sequence[FleetItem]:
        return (await self.berth.fleet.show(name))[1]

    async def until(
        self, name: str, done: Callable[[FleetProgress], bool], timeout: float = DONE_TIMEOUT
    ) -> FleetProgress:
        deadline = time.monotonic() + timeout
        while True:
            progress = await self.berth.fleet.progress(name)
            if done(progress):
                return progress
            assert time.monotonic() < deadline, progress_line(progress)
            await asyncio.sleep(0.1)

    async def assert_running_with_new_task(self, before: dict[str, int | None]) -> None:
        for cid, record in (await self.records(list(before))).items():
            assert (record.state, record.operation) == ("running", None), record.name
            assert record.pid is not None and record.pid != before[cid], record.name
            task = await self.runtimes[record.node].containerd.get_task(cid)
            assert (task.status, task.pid) == ("RUNNING", record.pid)

    async def assert_no_leaks(self) -> None:
        for node in NODES:
            runtime = self.runtimes[node]
            paths = self.settings.node_paths(node)
            found = await check_node(node, paths, runtime.containerd, runtime.cni, self.sessions)
            assert found == [], (node, found)


async def start_all(berth: BerthClient, ids: Sequence[str], parallel: int = 8) -> None:
    gate = asyncio.Semaphore(parallel)

    async def one(cid: str) -> None:
        async with gate:
            await berth.start(cid)

    await asyncio.gather(*(one(cid) for cid in ids))


async def remove(fleet: Fleet, cid: str, node: str) -> None:
    for _ in range(100):
        try:
            await fleet.berth.remove(cid, force=True)
        except Conflict:
            await asyncio.sleep(0.2)
            continue
        except BerthError:
            pass
        break
    runtime = fleet.runtimes[node]
    await tear_down_host(cid, fleet.settings.node_paths(node), runtime.containerd, runtime.cni)


@pytest.fixture(scope="module")
async def fleet(
    berth: BerthClient,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    temporal: Client,
    runtime: NodeRuntime,
    node2_agent: NodeAgent,
    node2_runtime: NodeRuntime,
    node3_agent: Node3Agent,
    node3_settings: Settings,
) -> AsyncIterator[Fleet]:
    node3_runtime = node_runtime(node3_settings)
    runtimes = {"node-1": runtime, "node-2": node2_runtime, "node-3": node3_runtime}
    fleet = Fleet(berth, settings, sessions, temporal, runtimes, node2_agent, node3_agent)
    tag = uuid.uuid4().hex[:6]
    try:
        for node in NODES:
            fleet.by_node[node] = []
            for index in range(PER_NODE):
                created = await berth.create(
                    ContainerConfig(
                        name=f"fl-{tag}-{node}-{index}",
                        image=DEFAULT_REF,
                        cmd=["sleep", "3600"],
                        labels={"fleet": tag, "node": node},
                        node=node,
                    )
                )
                fleet.by_node[node].append(created.id)
        await start_all(berth, fleet.ids)
        yield fleet
    finally:
        node2_agent.clear_faults()
        if not node3_agent.alive:
            await node3_agent.start()
        await asyncio.gather(
            *(remove(fleet, cid, node) for node, ids in fleet.by_node.items() for cid in ids)
        )
        await node3_runtime.containerd.close()


def peak_overlap(spans: list[tuple[datetime, datetime]]) -> int:
    """The most spans open at one instant (an end before a start at the same instant)."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    peak = open_now = 0
    for _, delta in events:
        open_now += delta
        peak = max(peak, open_now)
    return peak


async def test_fleet_restart_sixty_containers_keeps_limits_and_restarts_every_task(
    fleet: Fleet,
) -> None:
    before = await fleet.pids(fleet.ids)
    request = fleet.request(fleet.ids, max_parallel=8, max_parallel_per_node=3)
    handle = await fleet.berth.fleet.restart(request)
    result = await handle.result()

    assert (result.status, result.counts.total) == ("completed", 60), result
    assert (result.counts.restarted, result.counts.failed, result.counts.busy) == (60, 0, 0)
    assert {node: c.restarted for node, c in result.nodes.items()} == dict.fromkeys(NODES, 20)
    await fleet.assert_running_with_new_task(before)
    items = await fleet.items(request.name)
    assert all(i.outcome == "restarted" and i.started_at and i.finished_at for i in items)
    spans = {
        node: [(i.started_at, i.finished_at) for i in items if i.node == node] for node in NODES
    }
    assert all(peak_overlap(s) <= 3 for s in spans.values()), spans  # type: ignore[arg-type]
    assert peak_overlap([span for s in spans.values() for span in s]) <= 8  # type: ignore[misc]
    await fleet.assert_no_leaks()


def fail_start_of(*ids: str) -> list[dict[str, Any]]:
    return [{"point": "task:before", "action": "fail", "container": cid} for cid in ids]


async def test_fleet_restart_failures_over_budget_pause_and_resume_finishes(fleet: Fleet) -> None:
    ids = fleet.by_node["node-2"][:6]
    failing = ids[1:4]
    fleet.node2.set_faults(*fail_start_of(*failing))
    request = fleet.request(ids, max_parallel=1, max_failures=1)
    handle = await fleet.berth.fleet.restart(request)

    paused = await fleet.until(
        request.name, lambda p: p.status == "paused" and not p.counts.in_flight
    )
    assert paused.counts.failed == 2 and paused.counts.remaining == 3, paused
    assert "failure budget" in paused.reason and len(paused.errors) == 2
    await asyncio.sleep(0.5)
    assert (await fleet.berth.fleet.progress(request.name)).counts == paused.counts
    fleet.node2.clear_faults()
    await fleet.berth.fleet.resume(request.name)
    result = await handle.result()

    assert (result.status, result.counts.restarted, result.counts.failed) == ("completed", 4, 2)
    outcomes = {i.container_id: (i.outcome, i.error) for i in await fleet.items(request.name)}
    assert [outcomes[cid][0] for cid in ids] == ["restarted", "failed", "failed"] + [
        "restarted"
    ] * 3
    assert "injected" in (outcomes[failing[0]][1] or "")
    await fleet.assert_no_leaks()


async def test_fleet_restart_with_abort_stops_at_breach_and_reports(fleet: Fleet) -> None:
    ids = fleet.by_node["node-2"][6:10]
    fleet.node2.set_faults(*fail_start_of(ids[1]))
    request = fleet.request(ids, max_parallel=1, on_failure="abort")
    result = await (await fleet.berth.fleet.restart(request)).result()
    fleet.node2.clear_faults()

    assert (result.status, result.counts.restarted, result.counts.failed) == ("aborted", 1, 1)
    assert result.counts.remaining == 2 and "failure budget" in result.reason
    run, items = await fleet.berth.fleet.show(request.name)
    assert (run.status, run.finished_at is not None) == ("aborted", True)
    assert [i.outcome for i in items] == ["restarted", "failed", "pending", "pending"]
    await fleet.assert_no_leaks()


async def test_fleet_restart_busy_container_is_reported_not_restarted(fleet: Fleet) -> None:
    ids = fleet.by_node["node-1"][:3]
    async with fleet.sessions.begin() as session:
        await session.execute(
            update(Container).where(Container.id == ids[0]).values(operation="someone-else")
        )
    before = await fleet.pids(ids)
    try:
        request = fleet.request(ids, max_parallel=3)
        result = await (await fleet.berth.fleet.restart(request)).result()
    finally:
        async with fleet.sessions.begin() as session:
            await session.execute(
                update(Container).where(Container.id == ids[0]).values(operation=None)
            )
    assert (result.status, result.counts.busy, result.counts.restarted) == ("completed", 1, 2)
    assert (await fleet.pids(ids[:1])) == {ids[0]: before[ids[0]]}
    busy = [i for i in await fleet.items(request.name) if i.outcome == "busy"]
    assert [i.container_id for i in busy] == ids[:1] and "busy" in (busy[0].error or "")


async def test_fleet_restart_pause_and_resume_mid_run(fleet: Fleet) -> None:
    ids = fleet.by_node["node-1"][3:9] + fleet.by_node["node-3"][:6]
    before = await fleet.pids(ids)
    request = fleet.request(ids, max_parallel=2, min_healthy=0.3)
    handle = await fleet.berth.fleet.restart(request)
    await fleet.until(request.name, lambda p: p.counts.restarted >= 2)
    await fleet.berth.fleet.pause(request.name)
    paused = await fleet.until(request.name, lambda p: not p.counts.in_flight)
    assert paused.status == "paused" and paused.counts.remaining > 0
    await asyncio.sleep(0.8)
    assert (await fleet.berth.fleet.progress(request.name)).counts == paused.counts
    await fleet.berth.fleet.resume(request.name)
    result = await handle.result()

    assert (result.status, result.counts.restarted) == ("completed", 12)
    await fleet.assert_running_with_new_task(before)
    await fleet.assert_no_leaks()


async def test_fleet_restart_cancel_mid_run_finishes_in_flight_and_starts_nothing(
    fleet: Fleet,
) -> None:
    ids = fleet.by_node["node-1"][9:15] + fleet.by_node["node-3"][6:12]
    request = fleet.request(ids, max_parallel=2, min_healthy=0.3)
    handle = await fleet.berth.fleet.restart(request)
    await fleet.until(request.name, lambda p: p.counts.restarted >= 2)
    await fleet.berth.fleet.cancel(request.name)
    result = await handle.result()

    assert result.status == "cancelled" and result.counts.in_flight == 0
    assert 2 <= result.counts.restarted < 12 and result.counts.remaining > 0
    items = await fleet.items(request.name)
    restarted = [i.container_id for i in items if i.outcome == "restarted"]
    assert {i.outcome for i in items} == {"restarted", "pending"}
    assert len(restarted) == result.counts.restarted
    for record in (await fleet.records(ids)).values():
        assert (record.state, record.operation) == ("running", None)
    await fleet.assert_no_leaks()


async def test_fleet_restart_continues_as_new_with_progress_intact(fleet: Fleet) -> None:
    ids = fleet.by_node["node-1"][15:20] + fleet.by_node["node-3"][12:17]
    before = await fleet.pids(ids)
    request = fleet.request(ids, max_parallel=2, continue_as_new_after=3)
    handle = await fleet.berth.fleet.restart(request)
    result = await handle.result()

    assert (result.status, result.counts.total, result.counts.restarted) == ("completed", 10, 10)
    assert result.run_id == handle.first_execution_run_id
    described = await fleet.berth.fleet.handle(request.name).describe()
    assert described.run_id != handle.first_execution_run_id  # it did continue as new
    await fleet.assert_running_with_new_task(before)
    assert len(await fleet.items(request.name)) == 10


async def test_fleet_restart_agent_killed_and_restarted_completes(fleet: Fleet) -> None:
    ids = fleet.by_node["node-3"][17:20] + fleet.by_node["node-1"][:3]
    before = await fleet.pids(ids)
    # A slow start on node-3 keeps a restart there in flight when its agent dies.
    request = fleet.request(ids, max_parallel=6, node_wait=60)
    fleet.node3.kill()
    handle = await fleet.berth.fleet.restart(request)
    # Progress has no per-node counts until the job has planned its items.
    await fleet.until(
        request.name, lambda p: "node-1" in p.nodes and p.nodes["node-1"].restarted == 3
    )
    await asyncio.sleep(1)
    await fleet.node3.start()
    result = await handle.result()

    assert (result.status, result.counts.restarted) == ("completed", 6), result
    await fleet.assert_running_with_new_task(before)
    await fleet.assert_no_leaks()


async def test_fleet_restart_agent_that_stays_down_fails_its_items_after_node_wait(
    fleet: Fleet,
) -> None:
    down = fleet.by_node["node-3"][:2]
    ids = down + fleet.by_node["node-1"][3:5]
    request = fleet.request(ids, max_parallel=4, node_wait=2, max_failure_ratio=1.0)
    fleet.node3.kill()
    try:
        began = time.monotonic()
        result = await (await fleet.berth.fleet.restart(request)).result()
        waited = time.monotonic() - began
    finally:
        await fleet.node3.start()

    assert (result.status, result.counts.restarted, result.counts.failed) == ("completed", 2, 2)
    assert waited < 15, waited
    items = {i.container_id: i for i in await fleet.items(request.name)}
    for cid in down:
        assert items[cid].outcome == "failed"
        assert "no agent picked up" in (items[cid].error or ""), items[cid].error
    # Back up, the agent sees the cancel request first: the abandoned restarts change nothing.
    await wait_closed(fleet.temporal, [f"container-restart-{cid}" for cid in down])
    for record in (await fleet.records(down)).values():
        assert (record.state, record.operation) == ("running", None)
    await fleet.assert_no_leaks()


async def wait_closed(temporal: Client, workflow_ids: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    for workflow_id in workflow_ids:
        handle = temporal.get_workflow_handle(workflow_id)
        while (await handle.describe()).close_time is None:
            assert time.monotonic() < deadline, workflow_id
            await asyncio.sleep(0.2)


async def test_fleet_cli_restart_watch_prints_progress_and_show_lists_items(
    fleet: Fleet, settings: Settings
) -> None:
    ids = fleet.by_node["node-2"][10:13]
    name = f"cli-{uuid.uuid4().hex[:6]}"
    env = cli_env(settings)
    args = ["fleet", "restart", "--name", name, "--ids", ",".join(ids), "--per-node", "2"]
    code, out = await run_cli(env, *args, "--stop-timeout", "0", "--watch")
    assert code == 0, out
    assert "[##############################] 3/3" in out and "completed" in out
    code, out = await run_cli(env, "fleet", "show", name)
    assert code == 0 and out.count("restarted") == 3, out


def cli_env(settings: Settings) -> dict[str, str]:
    import os

    return {
        **os.environ,
        "BERTH_DATABASE_URL": settings.database_url.get_secret_value(),
        "BERTH_TEMPORAL_NAMESPACE": settings.temporal_namespace,
        "BERTH_CONTAINERD_NAMESPACE": settings.containerd_namespace,
        "BERTH_CODEC_KEYS": TEST_CODEC_KEYS,
    }


async def run_cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    berth = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "berth"
    process = await asyncio.create_subprocess_exec(
        str(berth),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, out.decode()
