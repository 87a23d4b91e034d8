"""Start latency of two checkouts in one run, paired: what a change costs a start.

E.g. the pull step (the image present, policy ``missing``) against the same commit without it::

    .venv/bin/python -m bench.start_ab_bench --before HEAD --after HEAD \
        --before-patch bench/patches/without_pull_step.patch --rounds 4 --count 15

Each checkout is a worktree under /tmp (removed at the end; ``--before-patch`` is applied to the
before tree). One private stack of the suite's kind (tests/support/stack.py: its own Temporal,
containerds, database and registry) runs the control worker of the after tree and two node
agents, one per tree, on node-1 and node-2 (swapped every round, so neither node's containerd
favours a side). Starts alternate between the two nodes, one at a time, so both sides see the
same load at the same moment (this machine is shared); each start is Berth's client view of
``ContainerStartOnNode`` (the client's own path). Printed: each side's median and p95, the
median of the per-pair ratios, and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from pydantic import SecretStr

from berth.client import BerthClient
from berth.config import Settings
from berth.contract import ContainerConfig
from berth.runtime.image import DEFAULT_REF
from tests.support.stack import (
    NAMESPACE,
    NODES,
    SuiteStack,
    claim_suite,
    run_coroutine,
    start_stack,
)

ROOT = Path(__file__).resolve().parent.parent
READY = "worker running"


def worktree(rev: str, path: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(path), rev], check=True
    )
    return path


def environ(stack: SuiteStack, tree: Path, node: str) -> dict[str, str]:
    return {
        **os.environ,
        **stack.environ(),
        "BERTH_NODE": node,
        "BERTH_BRIDGE": stack.suite.bridge(node),
        "BERTH_SUBNET": stack.suite.subnet(node),
        "PYTHONPATH": str(tree),
    }


def start_worker(
    stack: SuiteStack, tree: Path, role: str, node: str, logs: Path
) -> subprocess.Popen[bytes]:
    env = environ(stack, tree, node)
    log = logs / f"{tree.name}-{role}-{node}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "berth.worker", role],
            cwd=tree,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    # Recorded like the suite's agents, so its teardown ends them if this bench dies.
    stack.suite.paths.pid_file(f"agent-bench-{role}-{node}").write_text(f"{process.pid}\n")
    deadline = time.monotonic() + 60
    while READY not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{role} worker of {tree.name} did not start:\n{tail}")
        time.sleep(0.2)
    return process


def stop_workers(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


async def paired_starts(
    stack: SuiteStack, nodes: dict[str, str], count: int
) -> dict[str, list[float]]:
    """``count`` starts per side, alternating sides; ``nodes`` maps a side to its node."""
    settings = Settings(
        state_dir=stack.suite.state_dir,
        database_url=SecretStr(stack.database_url),
        temporal_address=stack.temporal.address,
        temporal_namespace=NAMESPACE,
        containerd_namespace=NAMESPACE,
    )
    samples: dict[str, list[float]] = {side: [] for side in nodes}
    async with await BerthClient.connect(settings) as berth:
        ids: dict[str, list[str]] = {side: [] for side in nodes}
        run = uuid.uuid4().hex[:6]
        try:
            for side, node in nodes.items():
                for index in range(count + 1):
                    created = await berth.create(
                        ContainerConfig(
                            name=f"ab-{run}-{side}-{index}",
                            image=DEFAULT_REF,
                            cmd=["sleep", "600"],
                            node=node,
                        )
                    )
                    ids[side].append(created.id)
            for side in nodes:
                await berth.start(ids[side][0])  # warm-up, not counted
            order = list(nodes)
            for index in range(1, count + 1):
                for side in order if index % 2 else reversed(order):
                    began = time.perf_counter()
                    await berth.start(ids[side][index])
                    samples[side].append((time.perf_counter() - began) * 1000)
        finally:
            for side_ids in ids.values():
                for container_id in side_ids:
                    with contextlib.suppress(Exception):
                        await berth.remove(container_id, force=True)
    return samples


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", required=True)
    parser.add_argument("--before-patch", type=Path, help="a patch applied to --before's tree")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--count", type=int, default=15)
    args = parser.parse_args()
    parent = Path(tempfile.mkdtemp(prefix="berth-ab-", dir="/tmp"))
    trees = {
        "before": worktree(args.before, parent / "before"),
        "after": worktree(args.after, parent / "after"),
    }
    if args.before_patch is not None:
        subprocess.run(
            ["git", "-C", str(trees["before"]), "apply", str(args.before_patch.resolve())],
            check=True,
        )
    samples: dict[str, list[float]] = {"before": [], "after": []}
    try:
        with claim_suite() as suite:
            stack = run_coroutine(start_stack(suite))
            for round_index in range(args.rounds):
                first, second = NODES[0], NODES[1]
                nodes = (
                    {"before": first, "after": second}
                    if round_index % 2 == 0
                    else {"before": second, "after": first}
                )
                workers = [start_worker(stack, trees["after"], "control", NODES[0], parent)]
                try:
                    for side, node in nodes.items():
                        workers.append(start_worker(stack, trees[side], "node", node, parent))
                    got = run_coroutine(paired_starts(stack, nodes, args.count))
                finally:
                    stop_workers(workers)
                for side, values in got.items():
                    samples[side].extend(values)
                print(
                    f"round {round_index + 1}: before on {nodes['before']} "
                    f"{statistics.median(got['before']):7.1f} ms, after on {nodes['after']} "
                    f"{statistics.median(got['after']):7.1f} ms",
                    flush=True,
                )
    finally:
        for tree in trees.values():
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False
            )
        shutil.rmtree(parent, ignore_errors=True)
    before, after = samples["before"], samples["after"]
    pairs = [a / b for a, b in zip(after, before, strict=True)]
    for side, values in samples.items():
        label = f"{side} ({args.before if side == 'before' else args.after})"
        print(
            f"{label:<16} n={len(values)} median={statistics.median(values):7.1f} ms "
            f"p95={p95(values):7.1f} ms"
        )
    ratio = statistics.median(after) / statistics.median(before)
    print(f"ratio of medians after/before: {ratio:.3f} ({(ratio - 1) * 100:+.1f} %)")
    paired = statistics.median(pairs)
    print(f"median of paired ratios:       {paired:.3f} ({(paired - 1) * 100:+.1f} %)")


if __name__ == "__main__":
    main()
