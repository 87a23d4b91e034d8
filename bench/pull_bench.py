"""Image pull time: Berth's pull (berth.runtime.pull) beside ``ctr images pull``, same run.

Both pull the same multi-layer image (busybox plus ``--layers`` layers of random bytes, gzip)
from the same local registry (distribution 2.8 on loopback, plain HTTP) into the same containerd
(a private one, started and stopped by this bench) and unpack it for overlayfs. Rounds are
interleaved and alternate which goes first; after every pull the image is deleted with a
synchronous garbage collection, and the bench checks the content store is empty again, so each
pull starts from nothing. Needs no dev stack. Run:

    .venv/bin/python -m bench.pull_bench --rounds 5 --layers 6 --layer-mib 4
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from berth._containerd_api.services.content.v1 import content_pb2, content_pb2_grpc
from berth.config import NodePaths
from berth.registry.client import RegistryClient
from berth.runtime.containerd import SNAPSHOTTER, ContainerdClient
from berth.runtime.containerd_daemon import start_containerd, stop_containerd
from berth.runtime.image import build_oci_layout, busybox_rootfs_tar, file_layer
from berth.runtime.pull import ImagePuller
from dev.registry import LocalRegistry, push_oci_layout
from dev.stack import reap, stop_pid
from tests.support.stack import free_port

NODE = "bench"
BERTH_NS = "bench-berth"
CTR_NS = "bench-ctr"


async def blob_count(client: ContainerdClient) -> int:
    stub = content_pb2_grpc.ContentStub(client.channel)
    count = 0
    async for response in stub.List(content_pb2.ListContentRequest(), metadata=client.metadata()):
        count += len(response.info)
    return count


async def pull_berth(client: ContainerdClient, address: str, ref: str) -> float:
    puller = ImagePuller(client, lambda: RegistryClient([address], node=NODE))
    began = time.perf_counter()
    await puller.pull(ref, "berth-pull-bench")
    return (time.perf_counter() - began) * 1000


async def pull_ctr(socket: Path, ref: str) -> float:
    argv = ["ctr", "-a", str(socket), "-n", CTR_NS, "images", "pull", "--plain-http"]
    began = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *argv,
        "--snapshotter",
        SNAPSHOTTER,
        ref,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    elapsed = (time.perf_counter() - began) * 1000
    if process.returncode != 0:
        raise RuntimeError(f"ctr images pull failed: {err.decode()}")
    return elapsed


async def clean(client: ContainerdClient, ref: str) -> None:
    """Delete the image (synchronous GC) and check nothing of it is left."""
    await client.delete_image(ref, sync=True)
    left = await blob_count(client)
    snapshots = await client.list_snapshots()
    if left or snapshots:
        raise RuntimeError(f"{client.namespace}: {left} blobs, {len(snapshots)} snapshots left")


def summary(label: str, samples: list[float]) -> str:
    return (
        f"{label:<28} n={len(samples):<3} median={statistics.median(samples):8.1f} ms"
        f"   min={min(samples):8.1f} ms   max={max(samples):8.1f} ms"
    )


async def run(rounds: int, layers: int, layer_mib: int, workdir: Path) -> None:
    paths = NodePaths(workdir, NODE, BERTH_NS)
    registry = LocalRegistry(workdir / "registry", free_port())
    registry.write_config()
    log = (workdir / "registry.log").open("wb")
    process = subprocess.Popen(registry.argv(), stdout=log, stderr=subprocess.STDOUT)
    try:
        registry.wait_ready()
        blobs = [busybox_rootfs_tar(workdir / "rootfs.tar").read_bytes()]
        for index in range(layers):
            # Incompressible, as real layers of binaries mostly are.
            data = os.urandom(layer_mib * 1024 * 1024)
            blobs.append(file_layer({f"data/layer-{index}.bin": data}))
        ref = f"{registry.address}/bench/multilayer:v1"
        tar = build_oci_layout(workdir / "image.tar", ref, blobs, "gzip")
        push_oci_layout(tar, registry.address, "bench/multilayer", "v1")
        size_mib = tar.stat().st_size / 1024 / 1024
        await start_containerd(paths)
        berth_ms: list[float] = []
        ctr_ms: list[float] = []
        async with (
            ContainerdClient(paths.containerd_socket, BERTH_NS, NODE) as berth_ns,
            ContainerdClient(paths.containerd_socket, CTR_NS, NODE) as ctr_ns,
        ):
            for round_index in range(rounds):
                order = ["berth", "ctr"] if round_index % 2 == 0 else ["ctr", "berth"]
                for tool in order:
                    if tool == "berth":
                        berth_ms.append(await pull_berth(berth_ns, registry.address, ref))
                        await clean(berth_ns, ref)
                    else:
                        ctr_ms.append(await pull_ctr(paths.containerd_socket, ref))
                        await clean(ctr_ns, ref)
        print(
            f"image: busybox + {layers} x {layer_mib} MiB random layers, gzip, {size_mib:.1f} MiB"
        )
        print(summary("ctr images pull", ctr_ms))
        print(summary("berth pull (ImagePuller)", berth_ms))
        ratio = statistics.median(berth_ms) / statistics.median(ctr_ms)
        print(f"{'berth / ctr (medians)':<28} {ratio:.2f}x")
    finally:
        stop_pid(process.pid, str(registry.config_file))
        reap(process.pid)
        log.close()
        await stop_containerd(paths)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--layer-mib", type=int, default=4)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="berth-pull-bench-", dir="/tmp"))
    try:
        asyncio.run(run(args.rounds, args.layers, args.layer_mib, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
