"""Fleet restart throughput: Berth's ``FleetRestart`` beside raw ``ctr``, same containerds.

Needs PostgreSQL, Temporal and one containerd per node from the dev stack
(``scripts/dev up --nodes 4 --infra-only``). The bench runs in a world of its own (database
``berth_bench``, containerd namespace ``berth-bench``, the Temporal namespace ``berth-bench``): its
control worker in this process and one node agent subprocess per node, stopped by their pids at
the end. Run:

    .venv/bin/python -m bench.fleet_bench                       # 200 containers over 4 nodes
    .venv/bin/python -m bench.fleet_bench --count 60 --nodes 3

Berth: ``FleetRestart`` of N running containers, ``max_parallel`` 8, no per-node limit, stop
timeout 0 (SIGKILL), each item a durable ``ContainerRestartOnNode`` child (lock and journal in
PostgreSQL, stop, the task replaced in place, commit), every item recorded. Baseline: the same
number of containerd containers created with ``ctr run -d`` on the same containerds, restarted
8 at a time with ``ctr task delete -f`` then ``ctr task start -d`` (no CNI, no bookkeeping).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from google.protobuf.duration_pb2 import Duration
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from bench.docker_baseline import bench_docker, import_busybox, private_dockerd
from berth.client import BerthClient, connect
from berth.config import Settings
from berth.contract import ContainerConfig, FleetRestartInput, FleetSelector
from berth.db.session import make_engine, make_sessionmaker
from berth.errors import BerthError, Conflict
from berth.runtime.image import DEFAULT_REF, import_image
from berth.worker import heartbeat, node_runtime, node_worker, register_node, running
from dev.stack import register_search_attributes
from dev.teardown import tear_down_host

ROOT = Path(__file__).resolve().parents[1]
PARALLEL = 8
# The bench's own world: no dev-stack worker of older code takes its work, no test session's
# fresh migration drops its tables, no test agent polls its queues.
BENCH_TEMPORAL_NAMESPACE = "berth-bench"
BENCH_NAMESPACE = "berth-bench"
BENCH_DATABASE = "berth_bench"
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_DATABASE_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{BENCH_DATABASE}"


async def prepare_namespace(settings: Settings) -> None:
    """Register the bench's Temporal namespace and Berth's search attributes in it, once."""
    client = await Client.connect(settings.temporal_address)
    try:
        await client.workflow_service.register_namespace(
            RegisterNamespaceRequest(
                namespace=BENCH_TEMPORAL_NAMESPACE,
                workflow_execution_retention_period=Duration(seconds=86_400),
            )
        )
        await asyncio.sleep(12)  # the server's namespace cache picks it up
    except RPCError as err:
        if err.status != RPCStatusCode.ALREADY_EXISTS:
            raise
    await register_search_attributes(settings.temporal_address, [BENCH_TEMPORAL_NAMESPACE])


def prepare_database() -> None:
    """Create the bench's database if needed and migrate it to head."""
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        exists = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DATABASE,)
        ).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{BENCH_DATABASE}"')
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = BENCH_DATABASE_URL
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


def node_settings(settings: Settings, index: int) -> Settings:
    """Node ``node-<index+1>``, with the bench's own bridge and subnet (bbench<i>, 10.213.150+i)."""
    return settings.model_copy(
        update={
            "node": f"node-{index + 1}",
            "bridge": f"bbench{index}",
            "subnet": f"10.213.{150 + index}.0/24",
        }
    )


def start_agent(own: Settings, log: Path) -> subprocess.Popen[bytes]:
    """This script in ``--agent`` mode for one node, as its own process."""
    with log.open("wb") as out:
        return subprocess.Popen(
            # As a module from the repository root: the bench imports its sibling modules.
            [sys.executable, "-m", "bench.fleet_bench", "--agent", own.node],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def serve_agent(own: Settings) -> None:
    """A node agent (with its heartbeat) without the reconciler and exit monitor: they know
    only this bench's database, and would take other worlds' rootfs mounts for orphans."""
    engine = make_engine(own.database_url)
    runtime = node_runtime(own)
    try:
        sessions = make_sessionmaker(engine)
        await register_node(own, sessions)
        client = await connect(own)
        beating = asyncio.create_task(heartbeat(own, sessions))
        try:
            async with node_worker(client, own, sessions, runtime):
                print("worker running", flush=True)
                await asyncio.Event().wait()
        finally:
            beating.cancel()
    finally:
        await runtime.containerd.close()
        await engine.dispose()


async def wait_ready(process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while "worker running" not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"node agent did not start; see {log}")
        await asyncio.sleep(0.1)


def ctr(own: Settings) -> list[str]:
    return ["ctr", "-a", str(own.node_paths().containerd_socket), "-n", own.containerd_namespace]


def run_quiet(command: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(command, capture_output=True)


def ctr_restart(base: list[str], container_id: str) -> None:
    """What the issue names as the baseline: ``task delete -f`` (SIGKILL, wait, delete), then
    ``task start -d`` (a new task in the same container, detached)."""
    subprocess.run([*base, "task", "delete", "-f", container_id], check=True, capture_output=True)
    subprocess.run([*base, "task", "start", "-d", container_id], check=True, capture_output=True)


def bench_ctr(nodes: list[Settings], count: int, run: str, work: list[tuple[list, str]]) -> float:
    """Create the containers (listed in ``work`` for the clean-up), then time their restarts."""
    work += [(ctr(nodes[i % len(nodes)]), f"bench-ctr-{run}-{i}") for i in range(count)]
    with ThreadPoolExecutor(PARALLEL) as pool:
        list(
            pool.map(
                lambda w: subprocess.run(
                    [*w[0], "run", "-d", DEFAULT_REF, w[1], "sleep", "600"],
                    check=True,
                    capture_output=True,
                ),
                work,
            )
        )
        began = time.perf_counter()
        list(pool.map(lambda w: ctr_restart(*w), work))
        return time.perf_counter() - began


def clean_ctr(work: list[tuple[list, str]]) -> None:
    with ThreadPoolExecutor(PARALLEL) as pool:

        def one(w: tuple[list, str]) -> None:
            base, container_id = w
            run_quiet([*base, "task", "delete", "-f", container_id])
            run_quiet([*base, "container", "delete", container_id])

        list(pool.map(one, work))


async def bench_berth(
    berth: BerthClient, nodes: list[Settings], count: int, run: str, ids: list[tuple[str, str]]
) -> float:
    gate = asyncio.Semaphore(PARALLEL)

    async def create_and_start(index: int) -> None:
        node = nodes[index % len(nodes)].node
        async with gate:
            created = await berth.create(
                ContainerConfig(
                    name=f"bench-fleet-{run}-{index}",
                    image=DEFAULT_REF,
                    cmd=["sleep", "600"],
                    labels={"bench": run},
                    node=node,
                )
            )
            ids.append((created.id, node))
            await berth.start(created.id)

    await asyncio.gather(*(create_and_start(i) for i in range(count)))
    request = FleetRestartInput(
        name=f"bench-{run}",
        selector=FleetSelector(labels={"bench": run}),
        max_parallel=PARALLEL,
        stop_timeout=0,
    )
    began = time.perf_counter()
    handle = await berth.fleet.restart(request)
    result = await handle.result()
    took = time.perf_counter() - began
    if result.counts.restarted != count:
        raise SystemExit(f"fleet restart did not restart everything: {result}")
    return took


async def clean_berth(berth: BerthClient, nodes: list[Settings], ids: list[tuple[str, str]]):
    by_node = {own.node: own for own in nodes}
    gate = asyncio.Semaphore(PARALLEL)

    async def one(container_id: str, node: str) -> None:
        async with gate:
            for _ in range(50):
                try:
                    await berth.remove(container_id, force=True)
                except Conflict:
                    await asyncio.sleep(0.2)
                    continue
                except BerthError:
                    pass
                break
            own = by_node[node]
            runtime = node_runtime(own)
            await tear_down_host(container_id, own.node_paths(), runtime.containerd, runtime.cni)
            await runtime.containerd.close()

    await asyncio.gather(*(one(cid, node) for cid, node in ids))


def run_docker(own: Settings, count: int, run: str) -> float:
    """``docker restart`` of ``count`` containers, 8 at a time, on node-1's containerd."""
    log = own.state_dir / "logs" / "fleet-bench-dockerd.log"
    with private_dockerd(own.state_dir, own.node_paths().containerd_socket, log) as docker:
        import_busybox(docker)
        return bench_docker(docker, count, PARALLEL, run)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--only", choices=["berth", "ctr"], help="run one side (for profiling)")
    parser.add_argument(
        "--docker", action="store_true", help="also docker restart (scripts/dev bench installs it)"
    )
    parser.add_argument("--agent", help=argparse.SUPPRESS)
    args = parser.parse_args()
    settings = Settings(
        temporal_namespace=BENCH_TEMPORAL_NAMESPACE,
        database_url=BENCH_DATABASE_URL,
        containerd_namespace=BENCH_NAMESPACE,
        # Its own control queue: a test session's control worker may poll ``berth`` there.
        task_queue="berth-fleet-bench",
    )
    if args.agent:
        await serve_agent(node_settings(settings, int(args.agent.removeprefix("node-")) - 1))
        return
    await asyncio.to_thread(prepare_database)
    await prepare_namespace(settings)
    nodes = [node_settings(settings, i) for i in range(args.nodes)]
    tar = settings.state_dir / "images" / "busybox.tar"
    for own in nodes:
        if not own.node_paths().containerd_socket.exists():
            raise SystemExit(f"no containerd for {own.node}: scripts/dev up --nodes {args.nodes}")
        await import_image(own.node_paths(), own.containerd_namespace, tar, DEFAULT_REF)
    run = uuid.uuid4().hex[:6]
    logs = settings.state_dir / "logs"
    agents: list[subprocess.Popen[bytes]] = []
    ids: list[tuple[str, str]] = []
    work: list[tuple[list, str]] = []
    async with AsyncExitStack() as stack:
        berth = await stack.enter_async_context(await BerthClient.connect(settings))
        try:
            for own in nodes:
                log = logs / f"fleet-bench-{own.node}.log"
                agents.append(start_agent(own, log))
                await wait_ready(agents[-1], log)
            await stack.enter_async_context(running("control", settings, berth.temporal))
            berth_seconds = ctr_seconds = docker_seconds = float("nan")
            if args.only != "ctr":
                berth_seconds = await bench_berth(berth, nodes, args.count, run, ids)
            if args.only != "berth":
                ctr_seconds = await asyncio.to_thread(bench_ctr, nodes, args.count, run, work)
        finally:
            await clean_berth(berth, nodes, ids)
            await asyncio.to_thread(clean_ctr, work)
            for agent in agents:
                agent.terminate()
                agent.wait(30)
    if args.docker:
        docker_seconds = await asyncio.to_thread(run_docker, nodes[0], args.count, run)
    count = args.count
    print(f"restart of {count} running containers over {args.nodes} nodes, {PARALLEL} in parallel")
    print(
        f"berth FleetRestart (durable)      {berth_seconds:7.2f} s   {count / berth_seconds:6.1f}/s"
    )
    print(f"ctr delete -f + start (baseline)  {ctr_seconds:7.2f} s   {count / ctr_seconds:6.1f}/s")
    if args.docker:
        print(
            f"docker restart -t 0 (one dockerd)  {docker_seconds:7.2f} s   "
            f"{count / docker_seconds:6.1f}/s"
        )
    print(f"throughput ratio berth / ctr: {ctr_seconds / berth_seconds:.2f}")
    if args.docker:
        print(f"throughput ratio berth / docker: {docker_seconds / berth_seconds:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
