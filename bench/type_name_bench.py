"""Start latency by each way a user asks for a start, beside ``docker start`` and ``ctr run -d``.

One run, interleaved rounds (the order rotates each round), one container at a time, on node-1's
containerd. Each round times:

- ``ContainerStart`` by type name: a plain ``temporalio`` client (default data converter), plain
  JSON input ``{"container": "<id>"}`` on the control queue, as any Temporal SDK user does;
- ``temporal workflow execute --type ContainerStart`` with the same JSON (the Go CLI process);
- the public start's earlier shape, the saga as a child on the node (``bench.route_shapes``),
  from the same plain client, to compare the shapes in one run;
- ``BerthClient.start`` in this process (it runs ``ContainerStartOnNode`` on the node's queue);
- ``docker start`` of a created container on the default bridge network of a private dockerd on
  the same containerd (:mod:`bench.docker_baseline`, no iptables rules);
- ``ctr run -d`` of the same image (snapshot, container, task; no network).

Berth's containers use the bridge network (CNI bridge + host-local). The bench runs on a stack of
its own, the test suite's (:mod:`tests.support.stack`: a Temporal dev server on free ports, a
containerd per node and a database of its own, all cleared at the end), with a control worker and
a node agent (``python -m berth.worker``) started for it: it times the workflow code of this
working tree, and a chaos soak or a restart of the dev stack cannot disturb it. Needs
PostgreSQL on 127.0.0.1:5432 and docker.io (``scripts/dev bench`` installs it). Run::

    .venv/bin/python -m bench.type_name_bench --rounds 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from temporalio.client import Client

from bench.docker_baseline import IMAGE, Docker, import_busybox, private_dockerd
from bench.route_shapes import CHILD_SHAPE_QUEUE, READY_LINE
from bench.start_bench import clean_ctr, ctr_command
from berth.client import BerthClient
from berth.config import Settings
from berth.contract import ContainerConfig
from berth.runtime.image import DEFAULT_REF
from dev.stack import BackgroundProcess, StackPaths, start_background, stop_background
from tests.support.stack import AGENT_MARKER, ROOT, claim_suite, environment, start_stack

# dockerd's default bridge for the docker side (no iptables rules, no NAT, no forwarding).
DOCKER_BRIDGE_CIDR = "10.215.0.1/24"
TEMPORAL_CLI = ROOT / ".venv" / "bin" / "temporal"

SDK = "ContainerStart by type name (SDK, JSON)"
CLI = "temporal workflow execute --type"
CHILD = "earlier shape: child on the node (SDK)"
CLIENT = "BerthClient.start"
DOCKER = "docker start (bridge)"
CTR = "ctr run -d (no network)"
SIDES = [SDK, CLI, CHILD, CLIENT, DOCKER, CTR]
# The workflow type each of these sides starts, to read its runs' span from Temporal.
SERVER_SPANS = [
    ("ContainerStart", SDK),
    ("ContainerStartAsChild", CHILD),
    ("ContainerStartOnNode", CLIENT),
]
CHILD_SHAPE_PROCESS = "child-shape"
CHILD_SHAPE_MARKER = "bench.route_shapes"


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples)


def table(samples: dict[str, list[float]]) -> str:
    """Medians, p90 and min per side, and each median's ratio to ``docker start``'s."""
    docker = median_ms(samples[DOCKER])
    lines = [
        f"{'how the start is asked':<42} {'n':>3} {'median':>8} {'p90':>8} {'min':>8}  vs docker"
    ]
    for side in SIDES:
        ordered = sorted(samples[side])
        p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
        median = median_ms(ordered)
        lines.append(
            f"{side:<42} {len(ordered):>3} {median:>6.0f}ms {p90:>6.0f}ms {ordered[0]:>6.0f}ms"
            f"  {median / docker:8.2f}"
        )
    return "\n".join(lines)


def timed(call: Callable[[], object]) -> float:
    began = time.perf_counter()
    call()
    return (time.perf_counter() - began) * 1000


async def timed_async(call: Callable[[], object]) -> float:
    began = time.perf_counter()
    await call()  # type: ignore[misc]
    return (time.perf_counter() - began) * 1000


async def start_worker(
    paths: StackPaths, name: str, argv: list[str], marker: str, ready: str
) -> None:
    """``argv`` on the suite's stack, recorded by pid under its state dir as ``name``; wait
    until its log says ``ready``."""
    pid = start_background(paths, BackgroundProcess(name, argv, marker, dict(os.environ)))
    log = paths.log_file(name)
    deadline = time.monotonic() + 180
    while ready not in log.read_text(errors="replace"):
        if not Path(f"/proc/{pid}").exists() or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"{name} did not start:\n{tail}")
        await asyncio.sleep(0.1)


async def start_berth_worker(paths: StackPaths, role: str) -> None:
    """``python -m berth.worker <role>``, as ``agent-<role>``: the suite's teardown ends it."""
    argv = [sys.executable, "-m", AGENT_MARKER, role]
    await start_worker(paths, f"agent-{role}", argv, AGENT_MARKER, f"berth {role} worker running")


class Sides:
    """One way of asking for a start each; every call starts one fresh container."""

    def __init__(
        self, own: Settings, berth: BerthClient, plain: Client, docker: Docker, run: str
    ) -> None:
        self.own, self.berth, self.plain, self.docker, self.run = own, berth, plain, docker, run
        self.berth_ids: list[str] = []
        self.ctr_ids: list[str] = []
        self.docker_names: list[str] = []
        # Workflow type -> (workflow id, first run id) of each start by type name.
        self.runs: dict[str, list[tuple[str, str | None]]] = {}
        self._count = 0

    def _next(self, kind: str) -> str:
        self._count += 1
        return f"bench-tn-{self.run}-{kind}-{self._count}"

    async def created(self) -> str:
        config = ContainerConfig(
            name=self._next("berth"), image=DEFAULT_REF, cmd=["sleep", "600"], node=self.own.node
        )
        created = await self.berth.create(config)
        self.berth_ids.append(created.id)
        return created.id

    async def sdk(self, cid: str, workflow_type: str, task_queue: str) -> None:
        handle = await self.plain.start_workflow(
            workflow_type, {"container": cid}, id=f"container-start-{cid}", task_queue=task_queue
        )
        result = await handle.result()
        if not result.get("pid"):
            raise SystemExit(f"{workflow_type} returned no pid: {result}")
        self.runs.setdefault(workflow_type, []).append((handle.id, handle.first_execution_run_id))

    async def server_ms(self, workflow_type: str) -> list[float]:
        """Per start of ``workflow_type``: first run's start to the id's last run's close."""
        spans = []
        for workflow_id, first_run in self.runs.get(workflow_type, [])[1:]:  # not the warm-up
            first = await self.plain.get_workflow_handle(workflow_id, run_id=first_run).describe()
            last = await self.plain.get_workflow_handle(workflow_id).describe()
            assert last.close_time is not None
            spans.append((last.close_time - first.start_time).total_seconds() * 1000)
        return spans

    def cli(self, cid: str) -> None:
        argv = [
            str(TEMPORAL_CLI), "workflow", "execute",
            "--address", self.own.temporal_address,
            "--namespace", self.own.temporal_namespace,
            "--type", "ContainerStart",
            "--task-queue", self.own.task_queue,
            "--workflow-id", f"container-start-{cid}",
            "--input", json.dumps({"container": cid}),
            "--output", "json",
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0 or '"pid"' not in done.stdout:
            raise SystemExit(f"temporal workflow execute failed: {done.stdout}{done.stderr}")

    async def client(self, cid: str) -> None:
        result = await self.berth.start(cid)
        if not result.pid:
            raise SystemExit(f"BerthClient.start returned no pid: {result}")
        # One run, ``container-start-<id>`` (berth.steps.start_workflow_id).
        self.runs.setdefault("ContainerStartOnNode", []).append((f"container-start-{cid}", None))

    def docker_created(self) -> str:
        name = self._next("docker")
        self.docker.run("create", "--network", "bridge", "--name", name, IMAGE, "sleep", "600")
        self.docker_names.append(name)
        return name

    def docker_start(self, name: str) -> None:
        self.docker.run("start", name)

    def ctr_run(self) -> None:
        cid = self._next("ctr")
        self.ctr_ids.append(cid)
        subprocess.run(
            [*ctr_command(self.own), "run", "-d", DEFAULT_REF, cid, "sleep", "600"],
            check=True,
            capture_output=True,
        )

    async def one(self, side: str) -> float:
        """Prepare a container for ``side`` (not timed), then time its start."""
        if side == SDK:
            cid = await self.created()
            return await timed_async(lambda: self.sdk(cid, "ContainerStart", self.own.task_queue))
        if side == CHILD:
            cid = await self.created()
            return await timed_async(
                lambda: self.sdk(cid, "ContainerStartAsChild", CHILD_SHAPE_QUEUE)
            )
        if side == CLI:
            cid = await self.created()
            return timed(lambda: self.cli(cid))
        if side == CLIENT:
            cid = await self.created()
            return await timed_async(lambda: self.client(cid))
        if side == DOCKER:
            name = self.docker_created()
            return timed(lambda: self.docker_start(name))
        return timed(self.ctr_run)

    def clean_docker(self) -> None:
        for name in self.docker_names:
            subprocess.run([*self.docker.base, "rm", "-f", name], capture_output=True)


async def bench(own: Settings, paths: StackPaths, rounds: int, run: str) -> dict[str, list[float]]:
    """``rounds`` interleaved rounds; Berth's containers are left to the suite's teardown."""
    await start_berth_worker(paths, "control")
    await start_berth_worker(paths, "node")
    child_shape = [sys.executable, "-m", CHILD_SHAPE_MARKER]
    await start_worker(paths, CHILD_SHAPE_PROCESS, child_shape, CHILD_SHAPE_MARKER, READY_LINE)
    try:
        return await timed_rounds(own, paths, rounds, run)
    finally:
        stop_background(paths, CHILD_SHAPE_PROCESS, CHILD_SHAPE_MARKER)


async def timed_rounds(
    own: Settings, paths: StackPaths, rounds: int, run: str
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {side: [] for side in SIDES}
    dockerd_log = paths.logs_dir / "dockerd.log"
    socket = own.node_paths().containerd_socket
    with private_dockerd(own.state_dir, socket, dockerd_log, DOCKER_BRIDGE_CIDR) as docker:
        import_busybox(docker)
        async with await BerthClient.connect(own) as berth:
            plain = await Client.connect(own.temporal_address, namespace=own.temporal_namespace)
            sides = Sides(own, berth, plain, docker, run)
            try:
                for side in SIDES:  # warm-up, not counted: first connections and caches
                    await sides.one(side)
                for index in range(rounds):
                    order = SIDES[index % len(SIDES) :] + SIDES[: index % len(SIDES)]
                    for side in order:
                        samples[side].append(await sides.one(side))
                    print(f"round {index + 1}/{rounds}", file=sys.stderr, flush=True)
                for workflow_type, side in SERVER_SPANS:
                    server = await sides.server_ms(workflow_type)
                    samples[f"{side}: server"] = server
            finally:
                sides.clean_docker()
                clean_ctr(ctr_command(own), sides.ctr_ids)
    return samples


def server_lines(samples: dict[str, list[float]]) -> str:
    """Where a start by type name spends its time: in Temporal (first run's start to the last
    run's close, from the histories) and around it (start call, result poll, this client)."""
    lines = []
    for _, side in SERVER_SPANS:
        server = median_ms(samples[f"{side}: server"])
        lines.append(
            f"{side:<42} in Temporal {server:6.0f}ms, around it "
            f"{median_ms(samples[side]) - server:5.0f}ms (medians)"
        )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with claim_suite() as suite:
        stack = await start_stack(suite)
        with environment(stack.environ()):
            own = Settings()
            samples = await bench(own, suite.paths, args.rounds, uuid.uuid4().hex[:6])
    print(f"start latency on {own.node}, {args.rounds} interleaved rounds, warm-up excluded")
    print(table(samples))
    print(server_lines(samples))


if __name__ == "__main__":
    asyncio.run(main())
