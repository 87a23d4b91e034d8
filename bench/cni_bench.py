"""The network step's CNI cost: attach + detach of a namespace, with and without published ports.

Runs on a bridge and subnet of its own (``bbcni0``, ``10.213.170.0/24``), removed at the end; no
stack needed. Interleaved rounds, medians:

    .venv/bin/python -m bench.cni_bench --rounds 15

Rows: Berth's chain without ports (loopback, bridge; portmap skipped), with one published port
(portmap's DNAT chain made and removed), and the baseline of the same run: the loopback and
bridge plugins alone as a minimal conflist runs them (no default route, no portmap).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from berth.runtime.cni import CniNetwork, PortMap, delete_masquerade
from berth.runtime.netns import create_netns, delete_netns

BIN_DIR = Path("/usr/lib/cni")
BRIDGE = "bbcni0"
SUBNET = "10.213.170.0/24"


class MinimalNetwork(CniNetwork):
    """The baseline: loopback and bridge with host-local, nothing else."""

    def plugins(self) -> list[dict[str, Any]]:
        loopback, bridge, _portmap = super().plugins()
        bridge = {**bridge, "ipam": {**bridge["ipam"], "routes": []}}
        return [loopback, bridge]


def one(network: CniNetwork, directory: Path, name: str, ports: list[PortMap]) -> float:
    netns = create_netns(directory / name)
    try:
        began = time.perf_counter()
        network.attach(name, netns, ports=ports)
        network.detach(name, netns, published=bool(ports))
        return (time.perf_counter() - began) * 1000
    finally:
        delete_netns(netns)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="bbcni", dir="/tmp"))
    berth = CniNetwork(BIN_DIR, "berth-cni-bench", BRIDGE, SUBNET, directory / "cni")
    minimal = MinimalNetwork(BIN_DIR, "berth-cni-bench", BRIDGE, SUBNET, directory / "cni")
    berth.ensure_masquerade()
    rows: dict[str, list[float]] = {"baseline": [], "berth": [], "berth -p": []}
    try:
        for index in range(args.rounds):
            rows["baseline"].append(one(minimal, directory, f"b{index}", []))
            rows["berth"].append(one(berth, directory, f"n{index}", []))
            port = [PortMap(28000 + index, 80, "tcp")]
            rows["berth -p"].append(one(berth, directory, f"p{index}", port))
    finally:
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
        delete_masquerade(BRIDGE)
        subprocess.run(["rm", "-rf", str(directory)], check=False)
    base = statistics.median(rows["baseline"])
    print(f"CNI attach + detach, {args.rounds} interleaved rounds, medians")
    labels = {
        "baseline": "loopback + bridge only (baseline)",
        "berth": "berth, no ports",
        "berth -p": "berth, one published port",
    }
    for key, label in labels.items():
        median = statistics.median(rows[key])
        print(f"{label:<36} {median:7.1f} ms   {median / base:5.2f}x")


if __name__ == "__main__":
    main()
