"""Room on one node: N running containers, each with its own IP, then ``berth node ls``'s figures.

Needs PostgreSQL on 127.0.0.1:5432; runs its own Temporal dev server (free loopback ports) and
containerd for its node under ``/tmp/berth-capacity`` (a dev stack's, which other benches
restart, are left alone), in the fleet bench's world (database ``berth_bench``, namespaces
``berth-bench``) with its own control queue, bridge ``bbcap0`` and subnet ``10.213.160.0/22``
(1,021 addresses); its node agent is a subprocess stopped at the end, its containerd stopped and
its Temporal stopped and its directory removed.

    .venv/bin/python -m bench.node_capacity               # 300 containers
    .venv/bin/python -m bench.node_capacity --count 50

Berth: ``berth create`` + ``start`` of N containers (bridge network, an IP each), 8 at a time,
timed; then the node's use as ``berth node ls`` reads it, and a check that the N addresses are
distinct and all in the subnet. Baseline, same run and containerd: ``ctr run -d`` of N containers
(no network), 8 at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import shutil
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from pathlib import Path

from bench.fleet_bench import (
    BENCH_DATABASE_URL,
    BENCH_NAMESPACE,
    BENCH_TEMPORAL_NAMESPACE,
    PARALLEL,
    clean_berth,
    clean_ctr,
    ctr,
    prepare_database,
    prepare_namespace,
    serve_agent,
    wait_ready,
)
from berth.client import BerthClient
from berth.config import Settings
from berth.contract import ContainerConfig
from berth.db.node_reads import NodeReads, NodeUsageRow
from berth.runtime.cni import delete_masquerade
from berth.runtime.containerd_daemon import start_containerd
from berth.runtime.image import DEFAULT_REF, build_busybox_image, import_image
from berth.runtime.mounts import unmount_rootfs
from berth.worker import running
from dev.stack import (
    StackPaths,
    TemporalServer,
    bring_up_temporal,
    stop_background,
    stop_node_containerd,
    temporal_process,
)

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


STATE_DIR = Path("/tmp/berth-capacity")
BRIDGE = "bbcap0"
SUBNET = "10.213.160.0/22"


def capacity_settings(temporal_address: str) -> Settings:
    return Settings(
        temporal_address=temporal_address,
        temporal_namespace=BENCH_TEMPORAL_NAMESPACE,
        database_url=BENCH_DATABASE_URL,
        containerd_namespace=BENCH_NAMESPACE,
        task_queue="berth-capacity-bench",
        state_dir=STATE_DIR,
        node="node-1",
        bridge=BRIDGE,
        subnet=SUBNET,
    )


def start_agent(log: Path, temporal_address: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bench.node_capacity", "--agent", temporal_address],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def start_all(berth: BerthClient, count: int, run: str, ids: list[tuple[str, str]]) -> float:
    gate = asyncio.Semaphore(PARALLEL)

    async def one(index: int) -> None:
        async with gate:
            created = await berth.create(
                ContainerConfig(
                    name=f"bench-cap-{run}-{index}",
                    image=DEFAULT_REF,
                    cmd=["sleep", "3600"],
                    node="node-1",
                )
            )
            ids.append((created.id, "node-1"))
            await berth.start(created.id)

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return time.perf_counter() - began


def run_ctr(own: Settings, count: int, run: str, work: list[tuple[list[str], str]]) -> float:
    work += [(ctr(own), f"bench-cap-ctr-{run}-{i}") for i in range(count)]
    began = time.perf_counter()
    with ThreadPoolExecutor(PARALLEL) as pool:
        list(
            pool.map(
                lambda w: subprocess.run(
                    [*w[0], "run", "-d", DEFAULT_REF, w[1], "sleep", "3600"],
                    check=True,
                    capture_output=True,
                ),
                work,
            )
        )
    return time.perf_counter() - began


def report_berth(count: int, seconds: float, usage: NodeUsageRow, ips: list[str | None]) -> None:
    subnet = ipaddress.ip_network(SUBNET)
    distinct = {ip for ip in ips if ip and ipaddress.ip_address(ip) in subnet}
    print(f"{count} containers started on one node ({SUBNET}), {PARALLEL} at a time")
    print(f"berth create + start (bridge, IP each) {seconds:7.2f} s  {count / seconds:5.1f}/s")
    print(
        f"node ls: containers {usage.containers}, running {usage.running}, "
        f"IPs used {usage.ips_used}, free {usage.ips_free} of {usage.ips_total}"
    )
    print(f"distinct IPs in the subnet among the {count}: {len(distinct)}", flush=True)
    if len(distinct) != count or usage.running < count:
        raise SystemExit("not every container ran with an IP of its own")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--agent", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.agent:
        await serve_agent(capacity_settings(args.agent))
        return
    stack_paths = StackPaths(STATE_DIR)
    temporal = TemporalServer(
        port=free_port(),
        ui_port=free_port(),
        http_port=free_port(),
        namespaces=("default", BENCH_TEMPORAL_NAMESPACE),
    )
    own = capacity_settings(temporal.address)
    await asyncio.to_thread(prepare_database)
    stack_paths.logs_dir.mkdir(parents=True, exist_ok=True)
    stack_paths.run_dir.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(bring_up_temporal, stack_paths, temporal)
    await prepare_namespace(own)
    paths = own.node_paths()
    await start_containerd(paths)
    tar = build_busybox_image(STATE_DIR / "busybox.tar")
    await import_image(paths, own.containerd_namespace, tar, DEFAULT_REF)
    run = uuid.uuid4().hex[:6]
    log = STATE_DIR / "logs" / "node-capacity-bench-node-1.log"
    ids: list[tuple[str, str]] = []
    work: list[tuple[list[str], str]] = []
    agent: subprocess.Popen[bytes] | None = None
    async with AsyncExitStack() as stack:
        berth = await stack.enter_async_context(await BerthClient.connect(own))
        try:
            agent = start_agent(log, temporal.address)
            await wait_ready(agent, log)
            await stack.enter_async_context(running("control", own, berth.temporal))
            berth_seconds = await start_all(berth, args.count, run, ids)
            reads = await NodeReads.connect(own.database_url.get_secret_value(), 10.0, 0.0)
            assert isinstance(reads, NodeReads)
            try:
                usage = next(u for u in await reads.node_usage() if u.name == own.node)
                ips = [c.ip for c in await reads.containers() if c.id in {i for i, _ in ids}]
            finally:
                await reads.close()
            report_berth(args.count, berth_seconds, usage, ips)
            ctr_seconds = await asyncio.to_thread(run_ctr, own, args.count, run, work)
            print(
                f"ctr run -d (no network, baseline)      {ctr_seconds:7.2f} s  "
                f"{args.count / ctr_seconds:5.1f}/s"
            )
            print(f"throughput ratio berth / ctr: {ctr_seconds / berth_seconds:.2f}")
        finally:
            await clean_berth(berth, [own], ids)
            await asyncio.to_thread(clean_ctr, work)
            if agent is not None:
                agent.terminate()
                agent.wait(30)
            subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
            delete_masquerade(BRIDGE)
            await stop_node_containerd(stack_paths, own.node)
            marker = temporal_process(stack_paths, temporal).marker
            await asyncio.to_thread(stop_background, stack_paths, "temporal", marker)
            unmount_rootfs(STATE_DIR)
            shutil.rmtree(STATE_DIR, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
