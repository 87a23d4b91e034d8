"""Durable start latency: Berth's ContainerStart saga beside raw ``ctr run -d``, same containerd.

Needs the dev stack with its workers (``scripts/dev up``). Run:

    .venv/bin/python -m bench.start_bench --count 20

Berth's figure is the client's view of a whole ``ContainerStart`` workflow (pre-checks under a
row lock, mount, network with CNI bridge, spec, shim create, task start, commit to PostgreSQL).
The baseline is ``ctr run -d`` of the same image on the same node's containerd (snapshot, container,
task create and start; no CNI). Both run sequentially, one container at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import time
import uuid

from berth.client import BerthClient
from berth.config import Settings
from berth.contract import ContainerConfig, ContainerStartInput, ContainerStartOutput
from berth.db.repository import ContainerRepository
from berth.db.session import make_sessionmaker
from berth.runtime.image import DEFAULT_REF
from berth.steps import start_workflow_id
from berth.worker import node_runtime
from dev.teardown import tear_down_host


def summary(label: str, samples_ms: list[float]) -> str:
    ordered = sorted(samples_ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"{label:<34} n={len(ordered):<4} median={statistics.median(ordered):7.1f} ms"
        f"   p95={p95:7.1f} ms   min={ordered[0]:7.1f} ms"
    )


async def bench_berth(
    berth: BerthClient, count: int, run: str, ids: list[str]
) -> tuple[list[float], list[float]]:
    """Create ``count`` containers (recording their ids in ``ids``) and time their starts."""
    for index in range(count):
        created = await berth.create(
            ContainerConfig(name=f"bench-{run}-{index}", image=DEFAULT_REF, cmd=["sleep", "600"])
        )
        ids.append(created.id)
    await berth.start(ids[0])  # warm-up, not counted: first connections and caches
    direct, routed = [], []
    for index, container_id in enumerate(ids[1:]):
        began = time.perf_counter()
        if index % 2:
            await start_through_control_queue(berth, container_id)
            routed.append((time.perf_counter() - began) * 1000)
        else:
            await berth.start(container_id)
            direct.append((time.perf_counter() - began) * 1000)
    return direct, routed


async def start_through_control_queue(berth: BerthClient, container_id: str) -> None:
    """What any Temporal client does: ``ContainerStart`` on queue ``berth``."""
    await berth.temporal.execute_workflow(
        "ContainerStart",
        ContainerStartInput(container=container_id),
        id=start_workflow_id(container_id),
        task_queue=berth.settings.task_queue,
        result_type=ContainerStartOutput,
    )


def ctr_command(settings: Settings) -> list[str]:
    socket = str(settings.node_paths().containerd_socket)
    return ["ctr", "-a", socket, "-n", settings.containerd_namespace]


def bench_ctr(settings: Settings, ids: list[str]) -> list[float]:
    base = ctr_command(settings)
    samples = []
    for index, container_id in enumerate(ids):
        began = time.perf_counter()
        subprocess.run(
            [*base, "run", "-d", DEFAULT_REF, container_id, "sleep", "600"],
            check=True,
            capture_output=True,
        )
        if index:  # the first run is the warm-up
            samples.append((time.perf_counter() - began) * 1000)
    return samples


def clean_ctr(base: list[str], ids: list[str]) -> None:
    for container_id in ids:
        subprocess.run([*base, "task", "kill", "-s", "SIGKILL", container_id], capture_output=True)
        subprocess.run([*base, "task", "delete", "-f", container_id], capture_output=True)
        subprocess.run([*base, "container", "delete", container_id], capture_output=True)


async def clean_berth(berth: BerthClient, settings: Settings, ids: list[str]) -> None:
    runtime = node_runtime(settings)
    sessions = make_sessionmaker(berth._engine)
    for container_id in ids:
        await tear_down_host(container_id, settings.node_paths(), runtime.containerd, runtime.cni)
        async with sessions.begin() as session:
            repository = ContainerRepository(session)
            await repository.remove(await repository.get(container_id))
    await runtime.containerd.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args()
    settings = Settings()
    run = uuid.uuid4().hex[:6]
    ctr_ids = [f"bench-ctr-{run}-{index}" for index in range(args.count + 1)]
    berth_ids: list[str] = []
    async with await BerthClient.connect(settings) as berth:
        try:
            direct, routed = await bench_berth(berth, 2 * args.count + 1, run, berth_ids)
            ctr_samples = bench_ctr(settings, ctr_ids)
        finally:
            clean_ctr(ctr_command(settings), ctr_ids)
            await clean_berth(berth, settings, berth_ids)
    print(f"start latency on node {settings.node}, sequential, warm-up excluded")
    print(summary("berth start (client, node queue)", direct))
    print(summary("ContainerStart (queue berth)", routed))
    print(summary("ctr run -d (baseline)", ctr_samples))
    for label, samples in (("client", direct), ("ContainerStart", routed)):
        ratio = statistics.median(samples) / statistics.median(ctr_samples)
        print(f"median ratio {label} / ctr run -d: {ratio:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
