"""``berth logs --tail 100 C`` beside ``docker logs --tail 100 C``, same machine, same run.

The stack, the agents and the private dockerd are bench/cli_bench.py's (a stack of the test
suite's kind, a node agent serving the node endpoint with mTLS, a dockerd on node-1's
containerd). Each side runs one busybox container that wrote 2000 lines to stdout and 100 to
stderr and then waits; every round runs ``logs --tail 100`` once per side, interleaved, and
``logs --tail 100 -t`` likewise. Each call is timed from the shell as a whole process (the CLI
reaches the node endpoint as from another host); the first round is a warm-up. Run:

    .venv/bin/python -m bench.logs_bench --rounds 15
"""

from __future__ import annotations

import asyncio
import os
import shlex
import statistics
import subprocess
import time
import uuid

from bench.cli_bench import bench_arguments, bench_node, prepare_process, timed
from bench.docker_baseline import IMAGE, Docker

COMMAND = ["sh", "-c", "trap 'exit 0' TERM; seq 1 2000; seq 1 100 >&2; sleep 600 & wait"]
LAST_STDOUT = b"\n2000\n"
LAST_STDERR = b"\n100\n"
VERBS = ("logs --tail 100", "logs --tail 100 -t")


def argv(base: list[str], verb: str, name: str) -> list[str]:
    return [*base, *shlex.split(verb), name]


def wait_for_output(base: list[str], name: str) -> None:
    """Until the container's last lines of both streams are in its log."""
    deadline = time.monotonic() + 60
    while True:
        done = subprocess.run([*base, "logs", name], capture_output=True)
        if done.stdout.endswith(LAST_STDOUT) and done.stderr.endswith(LAST_STDERR):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{name} did not write its lines: {done.stderr[-200:].decode()}")
        time.sleep(0.2)


def bench(berth: list[str], docker: Docker, rounds: int) -> dict[str, dict[str, list[float]]]:
    run = uuid.uuid4().hex[:6]
    names = {"berth": f"bench-logs-{run}", "docker": f"bench-logs-docker-{run}"}
    bases = {"berth": berth, "docker": docker.base}
    subprocess.run(
        [*berth, "create", "--name", names["berth"], "--node", "node-1", IMAGE, *COMMAND],
        check=True,
        capture_output=True,
    )
    subprocess.run([*docker.base, "create", "--name", names["docker"], IMAGE, *COMMAND], check=True)
    samples: dict[str, dict[str, list[float]]] = {
        verb: {side: [] for side in ("berth", "docker", "berth cpu", "docker cpu")}
        for verb in VERBS
    }
    try:
        for side in ("berth", "docker"):
            subprocess.run([*bases[side], "start", names[side]], check=True, capture_output=True)
            wait_for_output(bases[side], names[side])
        for index in range(rounds + 1):
            for verb in VERBS:
                for side in ("berth", "docker"):
                    figure = timed(argv(bases[side], verb, names[side]))
                    if figure is not None and index:
                        samples[verb][side].append(figure[0])
                        samples[verb][f"{side} cpu"].append(figure[1])
    finally:
        for side in ("berth", "docker"):
            subprocess.run([*bases[side], "rm", "-f", names[side]], capture_output=True)
    return samples


def table(samples: dict[str, dict[str, list[float]]]) -> str:
    """Medians by verb and side, and berth's ratio to docker."""
    header = f"{'verb':<20}{'berth ms':>10}{'docker ms':>11}{'ratio':>7}"
    lines = [f"{header}{'berth cpu':>11}{'docker cpu':>12}"]
    for verb, sides in samples.items():
        medians = {side: statistics.median(values) for side, values in sides.items() if values}
        if "berth" not in medians or "docker" not in medians:
            lines.append(f"{verb:<20}  no samples")
            continue
        lines.append(
            f"{verb:<20}{medians['berth']:>10.0f}{medians['docker']:>11.0f}"
            f"{medians['berth'] / medians['docker']:>7.2f}"
            f"{medians['berth cpu']:>11.0f}{medians['docker cpu']:>12.0f}"
        )
    return "\n".join(lines)


async def run_bench(berth: list[str], rounds: int) -> dict[str, dict[str, list[float]]]:
    async with bench_node() as (_, docker):
        return await asyncio.to_thread(bench, berth, docker, rounds)


def main() -> None:
    args = bench_arguments(__doc__.splitlines()[0]).parse_args()
    prepare_process()
    load_before = os.getloadavg()[0]
    samples = asyncio.run(run_bench(shlex.split(args.berth), args.rounds))
    print(f"berth: {args.berth}")
    print(f"{args.rounds} interleaved rounds after a warm-up, medians, node-1's containerd;")
    print(
        f"cpu: the command's own user + system time; load average {load_before:.1f} before,"
        f" {os.getloadavg()[0]:.1f} after"
    )
    print(table(samples))


if __name__ == "__main__":
    main()
