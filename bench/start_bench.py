"""Durable start latency: Berth's ContainerStart saga beside raw ``ctr run -d``, same containerd.

Needs the dev stack with its workers (``scripts/dev up``). Run:

    .venv/bin/python bench/start_bench.py --count 20

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
from berth.contract import ContainerConfig
from berth.db.repository import ContainerRepository
from berth.db.session import make_sessionmaker
from berth.runtime.image import DEFAULT_REF
from berth.teardown import tear_down_host
from berth.worker import node_runtime


def summary(label: str, samples_ms: list[float]) -> str:
    ordered = sorted(samples_ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"{label:<28} n={len(ordered):<4} median={statistics.median(ordered):7.1f} ms"
        f"   p95={p95:7.1f} ms   min={ordered[0]:7.1f} ms"
    )


async def bench_berth(berth: BerthClient, count: int, run: str) -> tuple[list[float], list[str]]:
    ids = []
    for index in range(count):
        created = await berth.create(
            ContainerConfig(name=f"bench-{run}-{index}", image=DEFAULT_REF, cmd=["sleep", "600"])
        )
        ids.append(created.id)
    await berth.start(ids[0])  # warm-up, not counted: first connections and caches
    samples = []
    for container_id in ids[1:]:
        began = time.perf_counter()
        await berth.start(container_id)
        samples.append((time.perf_counter() - began) * 1000)
    return samples, ids


def bench_ctr(settings: Settings, count: int, run: str) -> tuple[list[float], list[str]]:
    socket = str(settings.node_paths().containerd_socket)
    base = ["ctr", "-a", socket, "-n", settings.containerd_namespace]
    ids = [f"bench-ctr-{run}-{index}" for index in range(count + 1)]
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
    return samples, [*base]


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
    async with await BerthClient.connect(settings) as berth:
        berth_ids: list[str] = []
        try:
            berth_samples, berth_ids = await bench_berth(berth, args.count + 1, run)
            ctr_samples, base = bench_ctr(settings, args.count, run)
        finally:
            clean_ctr(
                [
                    "ctr",
                    "-a",
                    str(settings.node_paths().containerd_socket),
                    "-n",
                    settings.containerd_namespace,
                ],
                ctr_ids,
            )
            await clean_berth(berth, settings, berth_ids)
    print(f"start latency on node {settings.node}, sequential, warm-up excluded")
    print(summary("berth ContainerStart", berth_samples))
    print(summary("ctr run -d (baseline)", ctr_samples))
    ratio = statistics.median(berth_samples) / statistics.median(ctr_samples)
    print(f"median ratio berth / ctr: {ratio:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
