"""Start latency of two commits side by side: ``bench.start_bench`` run against workers of each.

Measures what a change costs a start, e.g. the pull step (the image present, policy
``missing``): the same commit with and without it (``--before-patch`` is applied to the
``--before`` checkout)::

    .venv/bin/python -m bench.start_ab_bench --before HEAD --after HEAD \
        --before-patch bench/patches/without_pull_step.patch --rounds 4

Each commit is checked out into a worktree under /tmp (removed at the end). One private stack
of the test suite's kind (tests/support/stack.py: its own Temporal, containerds, database and
registry) serves both; the rounds alternate which commit goes first, and each runs that commit's
control worker and node-1 agent (started and stopped by pid) and its ``bench.start_bench``.
Printed: each round's medians and, per commit, the median of the round medians, and their ratio.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.stack import (
    NODES,
    SuiteStack,
    claim_suite,
    run_coroutine,
    start_stack,
)

ROOT = Path(__file__).resolve().parent.parent
READY = "worker running"
LABEL = "berth start (client, node queue)"


def worktree(rev: str, path: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(path), rev], check=True
    )
    return path


def environ(stack: SuiteStack, tree: Path) -> dict[str, str]:
    node = NODES[0]
    return {
        **os.environ,
        **stack.environ(),
        "BERTH_NODE": node,
        "BERTH_BRIDGE": stack.suite.bridge(node),
        "BERTH_SUBNET": stack.suite.subnet(node),
        "PYTHONPATH": str(tree),
    }


def start_workers(stack: SuiteStack, tree: Path, logs: Path) -> list[subprocess.Popen[bytes]]:
    env = environ(stack, tree)
    processes = []
    for role in ("control", "node"):
        log = logs / f"{tree.name}-{role}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "berth.worker", role],
                cwd=tree,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        # Recorded like the suite's agents, so its teardown ends them if this bench dies.
        stack.suite.paths.pid_file(f"agent-bench-{role}").write_text(f"{process.pid}\n")
        processes.append(process)
        deadline = time.monotonic() + 60
        while READY not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{role} worker of {tree.name} did not start:\n{tail}")
            time.sleep(0.2)
    return processes


def stop_workers(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def start_median(stack: SuiteStack, tree: Path, count: int) -> float:
    result = subprocess.run(
        [sys.executable, "-m", "bench.start_bench", "--count", str(count)],
        cwd=tree,
        env=environ(stack, tree),
        capture_output=True,
        text=True,
        check=True,
    )
    for line in result.stdout.splitlines():
        if line.startswith(LABEL):
            match = re.search(r"median=\s*([0-9.]+)", line)
            if match:
                return float(match.group(1))
    raise RuntimeError(f"no '{LABEL}' line in:\n{result.stdout}\n{result.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", required=True)
    parser.add_argument("--before-patch", type=Path, help="a patch applied to --before's tree")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=10)
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
    medians: dict[str, list[float]] = {"before": [], "after": []}
    try:
        with claim_suite() as suite:
            stack = run_coroutine(start_stack(suite))
            for round_index in range(args.rounds):
                order = ["before", "after"] if round_index % 2 == 0 else ["after", "before"]
                for label in order:
                    workers = start_workers(stack, trees[label], parent)
                    try:
                        median = start_median(stack, trees[label], args.count)
                    finally:
                        stop_workers(workers)
                    medians[label].append(median)
                    print(f"round {round_index + 1} {label:<6} median {median:7.1f} ms", flush=True)
    finally:
        for tree in trees.values():
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False
            )
        shutil.rmtree(parent, ignore_errors=True)
    before, after = (statistics.median(medians[key]) for key in ("before", "after"))
    print(f"{LABEL}: before ({args.before}) {before:.1f} ms, after ({args.after}) {after:.1f} ms")
    print(f"after / before: {after / before:.3f} ({(after / before - 1) * 100:+.1f} %)")


if __name__ == "__main__":
    main()
