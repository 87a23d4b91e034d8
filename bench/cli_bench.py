"""The ``berth`` command line beside ``docker`` and ``ctr``, same machine, same run.

The bench runs on a stack of its own, the test suite's (:mod:`tests.support.stack`: a Temporal
dev server on free ports, a containerd per node, a database of its own, all cleared at the end),
with a control worker and a node agent (``python -m berth.worker``) started for it, so a chaos
soak or a restart of the dev stack cannot disturb it. Needs PostgreSQL on 127.0.0.1:5432 and
docker.io (``scripts/dev bench`` installs it; its service stays off: the bench runs a private
dockerd on node-1's containerd with its bridge ``docker0``, see bench/docker_baseline.py). Run:

    .venv/bin/python -m bench.cli_bench --rounds 15

Each side gets one container of the same busybox image and command (a shell that exits on
SIGTERM, so ``stop`` measures a graceful stop, not the 10 s kill timeout). Every round runs each
verb once per side, interleaved (berth, docker, ctr, then the next verb), in the order a container
goes through (start, ps, inspect, events, logs, exec, restart, stop), each timed from the shell as a
whole process. The first round is a warm-up and not counted; the table shows medians and the
ratio of berth to docker. ``--berth`` chooses the berth command (e.g. an older checkout's
``python -c 'from berth.cli import main; main()'``) to compare before and after; ``--before``
adds a second berth command, on a container of its own, timed just before this one in every
round, so that a before/after shares the run's load (the machine is rarely quiet).
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import os
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench.docker_baseline import IMAGE, Docker, import_busybox, private_dockerd
from berth.config import Settings
from dev.stack import BackgroundProcess, StackPaths, start_background
from tests.support.stack import AGENT_MARKER, claim_suite, environment, start_stack

# A shell that exits at once on SIGTERM (a shell as pid 1 would ignore it while in a foreground
# child, and every stop would last the whole timeout).
COMMAND = ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]
# ctr's own namespace: the node agent's reconciler owns Berth's and removes what it did not make.
CTR_NAMESPACE = "bench-cli-ctr"
VERBS = ("start", "ps", "inspect", "events", "logs", "exec", "restart", "stop")
# dockerd's default bridge for the docker side (no iptables rules, no NAT, no forwarding); its
# own address range, so this bench and bench/type_name_bench.py can run at once.
DOCKER_BRIDGE_CIDR = "10.216.0.1/24"


# A command that has not finished by then hangs: it is killed, counted, and not sampled.
HANG_SECONDS = 60.0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str]) -> tuple[float, float] | None:
    """Run ``argv`` to completion; its wall time and the CPU time (user + system) it used, in ms
    (None: it hung and was killed). A failing command stops the bench.

    The CPU time is the command's own work, which a busy machine does not inflate as it does the
    wall time; for berth's writing verbs the saga's work is the workers' and not in it.
    """
    began, cpu = time.perf_counter(), _children_cpu()
    try:
        done = subprocess.run(argv, capture_output=True, timeout=HANG_SECONDS)
    except subprocess.TimeoutExpired:
        return None
    took = (time.perf_counter() - began) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} exited {done.returncode}: {done.stderr.decode()}")
    return took, (_children_cpu() - cpu) * 1000


class Sides:
    """The command each side runs for a verb on its container (None: the side has no such verb)."""

    def __init__(
        self,
        berth: list[str],
        events: list[str],
        docker: Docker,
        ctr: list[str],
        run: str,
        before: list[str] | None = None,
    ) -> None:
        self.berth, self.events, self.docker, self.ctr = berth, events, docker.base, ctr
        self.before = before
        self.berth_name = f"bench-cli-{run}"
        self.before_name = f"bench-cli-before-{run}"
        self.docker_name = f"bench-cli-docker-{run}"
        self.ctr_id = f"bench-cli-ctr-{run}"
        self.since = datetime.now(UTC).isoformat()

    def berth_argv(self, verb: str, before: bool = False) -> list[str]:
        """This berth's command, or with ``before`` the ``--before`` one's on its container."""
        berth, name = (self.before, self.before_name) if before else (self.berth, self.berth_name)
        assert berth is not None
        return {
            "start": [*berth, "start", name],
            "ps": [*berth, "ps"],
            "inspect": [*berth, "inspect", name],
            "events": [*berth, "events", *self.events, name],
            "logs": [*berth, "logs", "--tail", "10", name],
            "exec": [*berth, "exec", name, "true"],
            "restart": [*berth, "restart", name],
            "stop": [*berth, "stop", name],
        }[verb]

    def docker_argv(self, verb: str) -> list[str]:
        name = self.docker_name
        until = datetime.now(UTC).isoformat()
        return {
            "start": [*self.docker, "start", name],
            "ps": [*self.docker, "ps"],
            "inspect": [*self.docker, "inspect", name],
            "events": [
                *self.docker, "events", "--since", self.since, "--until", until,
                "--filter", f"container={name}",
            ],
            "logs": [*self.docker, "logs", "--tail", "10", name],
            "exec": [*self.docker, "exec", name, "true"],
            "restart": [*self.docker, "restart", name],
            "stop": [*self.docker, "stop", name],
        }[verb]  # fmt: skip

    def ctr_argv(self, verb: str) -> list[list[str]] | None:
        """ctr's nearest commands: a task started detached, removed by force to stop."""
        task = [*self.ctr, "task"]
        return {
            "start": [[*task, "start", "-d", self.ctr_id]],
            "ps": [[*task, "ls"]],
            "inspect": [[*self.ctr, "container", "info", self.ctr_id]],
            "exec": [[*task, "exec", "--exec-id", uuid.uuid4().hex[:12], self.ctr_id, "true"]],
            "restart": [[*task, "rm", "-f", self.ctr_id], [*task, "start", "-d", self.ctr_id]],
            "stop": [[*task, "rm", "-f", self.ctr_id]],
        }.get(verb)

    def create(self) -> None:
        for name in (self.berth_name, *([self.before_name] if self.before else [])):
            timed([*self.berth, "create", "--name", name, "--node", "node-1", IMAGE, *COMMAND])
        timed([*self.docker, "create", "--name", self.docker_name, IMAGE, *COMMAND])
        timed([*self.ctr, "container", "create", IMAGE, self.ctr_id, "--", *COMMAND])

    def remove(self) -> None:
        for argv in (
            [*self.berth, "rm", "-f", self.berth_name],
            [*self.berth, "rm", "-f", self.before_name],
            [*self.docker, "rm", "-f", self.docker_name],
            [*self.ctr, "task", "rm", "-f", self.ctr_id],
            [*self.ctr, "container", "rm", self.ctr_id],
        ):
            subprocess.run(argv, capture_output=True)


SIDES = ("before", "berth", "docker", "ctr", "before cpu", "berth cpu", "docker cpu")


def bench(
    sides: Sides, rounds: int, verbs: Sequence[str] = VERBS
) -> tuple[dict[str, dict[str, list[float]]], list[float]]:
    """Samples in ms by verb and side (wall time; ``<side> cpu``: CPU time), and the 1-minute
    load average at each round's start; round 0 is a warm-up, not kept."""
    samples: dict[str, dict[str, list[float]]] = {
        verb: {side: [] for side in SIDES} for verb in verbs
    }
    loads: list[float] = []
    for index in range(rounds + 1):
        if index:
            loads.append(os.getloadavg()[0])
        for verb in verbs:
            figures = {}
            if sides.before is not None:
                figures["before"] = timed(sides.berth_argv(verb, before=True))
            figures["berth"] = timed(sides.berth_argv(verb))
            figures["docker"] = timed(sides.docker_argv(verb))
            ctr = sides.ctr_argv(verb)
            if ctr is not None:
                parts = [timed(argv) for argv in ctr]
                figures["ctr"] = (
                    None
                    if None in parts
                    else (sum(p[0] for p in parts if p), sum(p[1] for p in parts if p))
                )
            for side, figure in figures.items():
                if figure is None:
                    print(f"{side} {verb} hung (> {HANG_SECONDS:g} s), killed", file=sys.stderr)
                elif index:
                    samples[verb][side].append(figure[0])
                    if side != "ctr":
                        samples[verb][f"{side} cpu"].append(figure[1])
    return samples, loads


def table(samples: dict[str, dict[str, list[float]]]) -> str:
    def median(values: list[float]) -> str:
        return f"{statistics.median(values):.0f}" if values else "-"

    def ratio(values: list[float], docker: list[float]) -> str:
        return f"{statistics.median(values) / statistics.median(docker):.2f}" if values else "-"

    before = any(sides["before"] for sides in samples.values())
    head = f"{'verb':<9}{'berth ms':>10}{'docker ms':>11}{'ctr ms':>9}{'berth/docker':>14}"
    head += f"{'berth cpu':>11}{'docker cpu':>12}"
    if before:
        head += f"{'before ms':>11}{'before/docker':>15}{'before cpu':>12}"
    lines = [head]
    for verb, sides in samples.items():
        berth, docker = sides["berth"], sides["docker"]
        line = (
            f"{verb:<9}{median(berth):>10}{median(docker):>11}{median(sides['ctr']):>9}"
            f"{ratio(berth, docker) if docker else '-':>14}"
            f"{median(sides['berth cpu']):>11}{median(sides['docker cpu']):>12}"
        )
        if before:
            line += (
                f"{median(sides['before']):>11}"
                f"{ratio(sides['before'], docker) if docker else '-':>15}"
                f"{median(sides['before cpu']):>12}"
            )
        lines.append(line)
    return "\n".join(lines)


async def start_agent(paths: StackPaths, role: str) -> None:
    """``python -m berth.worker <role>`` on the suite's stack, recorded by pid under its state
    dir (the suite's teardown ends it); wait until it polls."""
    name = f"agent-{role}"
    argv = [sys.executable, "-m", AGENT_MARKER, role]
    pid = start_background(paths, BackgroundProcess(name, argv, AGENT_MARKER, dict(os.environ)))
    log = paths.log_file(name)
    deadline = time.monotonic() + 180
    while f"berth {role} worker running" not in log.read_text(errors="replace"):
        if not Path(f"/proc/{pid}").exists() or time.monotonic() > deadline:
            raise SystemExit(f"the {role} worker did not start; see {log}")
        await asyncio.sleep(0.1)


def copy_image(ctr: list[str], namespace: str, paths: StackPaths) -> None:
    """The test image from Berth's namespace into ctr's (export, import, unpacked)."""
    archive = paths.state / "bench-cli-image.tar"
    subprocess.run([*ctr, "-n", namespace, "image", "export", str(archive), IMAGE], check=True)
    subprocess.run([*ctr, "-n", CTR_NAMESPACE, "image", "import", str(archive)], check=True)
    archive.unlink()


@contextlib.contextmanager
def docker_on(settings: Settings, paths: StackPaths) -> Iterator[Docker]:
    """A private dockerd on ``settings``' node's containerd, with the busybox image."""
    socket = settings.node_paths().containerd_socket
    log = paths.logs_dir / "dockerd.log"
    with private_dockerd(settings.state_dir, socket, log, DOCKER_BRIDGE_CIDR) as docker:
        import_busybox(docker)
        yield docker


@contextlib.asynccontextmanager
async def bench_node() -> AsyncIterator[tuple[Settings, Docker]]:
    """A fresh stack of the test suite's kind with its control and node agents, the bench image
    in the node's containerd, and a private dockerd on that containerd (each bench's setting)."""
    with claim_suite() as suite:
        stack = await start_stack(suite)
        with environment(stack.environ()):
            settings = Settings()
            await start_agent(suite.paths, "control")
            await start_agent(suite.paths, "node")
            socket = str(settings.node_paths().containerd_socket)
            copy_image(["ctr", "-a", socket], settings.containerd_namespace, suite.paths)
            with docker_on(settings, suite.paths) as docker:
                yield settings, docker


def bench_arguments(description: str) -> argparse.ArgumentParser:
    """The options every bench takes: how many rounds, and which berth command."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--berth",
        default=str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "berth"),
        help="the berth command, split as a shell would (default: this checkout's)",
    )
    return parser


def prepare_process() -> None:
    """Set the bench's process up as a user's install runs and a stopped bench unwinds."""
    # A user's install has its bytecode written; a shell with PYTHONDONTWRITEBYTECODE=1 (as
    # this environment's) would have every berth call compile the modules changed since the
    # last write, which no user pays.
    compileall.compile_dir(Path(__file__).resolve().parents[1] / "berth", quiet=1)
    # Stopped with SIGTERM (timeout, kill): unwind, so the stack and dockerd are cleared.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


async def run_bench(
    berth: list[str],
    events: list[str],
    rounds: int,
    before: list[str] | None = None,
    verbs: Sequence[str] = VERBS,
) -> tuple[dict[str, dict[str, list[float]]], list[float]]:
    async with bench_node() as (settings, docker):
        socket = str(settings.node_paths().containerd_socket)
        ctr = ["ctr", "-a", socket, "-n", CTR_NAMESPACE]
        sides = Sides(berth, events, docker, ctr, uuid.uuid4().hex[:6], before)
        try:
            sides.create()
            return bench(sides, rounds, verbs)
        finally:
            sides.remove()


def main() -> None:
    parser = bench_arguments(__doc__.splitlines()[0])
    parser.add_argument(
        "--before",
        help="another berth command (e.g. an older checkout's), timed just before --berth's "
        "in every round on a container of its own",
    )
    parser.add_argument(
        "--events-flags",
        default="--no-follow",
        help="berth events' flags to print the recorded events and exit ('' before 713d6e5)",
    )
    parser.add_argument(
        "--verbs",
        default=",".join(VERBS),
        help="the verbs to time, comma-separated (an older --before may lack some)",
    )
    args = parser.parse_args()
    verbs = args.verbs.split(",")
    if unknown := sorted(set(verbs) - set(VERBS)):
        parser.error(f"unknown verbs {unknown}; known: {', '.join(VERBS)}")
    prepare_process()
    berth, events = shlex.split(args.berth), shlex.split(args.events_flags)
    before = shlex.split(args.before) if args.before else None
    samples, loads = asyncio.run(run_bench(berth, events, args.rounds, before, verbs))
    print(f"berth: {args.berth}")
    if before is not None:
        print(f"before: {args.before}")
    print(f"{args.rounds} interleaved rounds after a warm-up, medians, node-1's containerd;")
    print(
        "cpu: the command's own user + system time; 1-minute load average over the rounds "
        f"{min(loads):.1f} / {statistics.median(loads):.1f} / {max(loads):.1f} (min/median/max)"
    )
    print(table(samples))


if __name__ == "__main__":
    main()
