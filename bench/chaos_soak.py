"""Chaos soak: lifecycle operations from concurrent clients while the stack's processes die.

Needs the dev stack with its workers, best on a PostgreSQL cluster of its own. Run:

    pg_createcluster 15 soak -p 5433 --start -- --auth=trust
    export BERTH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5433/berth
    scripts/dev down && scripts/dev up --nodes 2
    .venv/bin/python -m bench.chaos_soak --operations 1750 --nodes 2 --clients 6 --kill-every 5

Each client owns its own containers (so no conflict is the caller's doing) and runs start, stop
and restart on them one at a time; half the clients use the Python client, half start the
public workflows by type name (``ContainerStart``, ``ContainerStop``, ``ContainerRestart`` on
queue ``berth``), as any Temporal client does. Meanwhile a killer SIGKILLs, by the stack's pid
files, node agents, node containerds, the control worker and the Temporal dev server, and
crashes PostgreSQL (``pg_ctlcluster ... restart -m immediate`` of the cluster on the port of
``BERTH_DATABASE_URL``: give the stack a cluster of its own, as below, or leave ``postgres`` out of
``--kill``, since a crash hits everything else using that server), and brings everything back with
``scripts/dev up`` after 1-4 s.

At the end (everything up again, every operation settled) it prints the acknowledged
operations, the failures by type, the slowest operation and the leak checker's verdict on every
node, and exits non-zero on a leak or a lost acknowledgement: a container whose last operation
was acknowledged but whose recorded state (or task) says otherwise. The soak's containers are
removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RetryConfig

from berth.client import BerthClient
from berth.config import Settings
from berth.contract import (
    ContainerConfig,
    ContainerRestartInput,
    ContainerStartInput,
    ContainerStartOutput,
    ContainerState,
    ContainerStopInput,
    ContainerStopOutput,
)
from berth.db.repository import ContainerRepository
from berth.db.session import make_sessionmaker
from berth.errors import BerthError
from berth.leaks import Finding, LeakKind, check_node
from berth.runtime.containerd_daemon import pid_path as containerd_pid_path
from berth.runtime.image import DEFAULT_REF
from berth.runtime.types import TaskStatus
from berth.worker import node_runtime
from dev.stack import (
    PROJECT_ROOT,
    WORKER_MARKER,
    StackPaths,
    node_names,
    pid_alive,
    read_pid,
    temporal_process,
    worker_env,
)

KINDS = ("agent", "containerd", "control", "temporal", "postgres")
# Relative kill rates, as in issue 15's soak (24 agents, 9 containerds, 4 Temporal, 3 control
# workers, 5 PostgreSQL crashes).
WEIGHTS = {"agent": 24, "containerd": 9, "temporal": 4, "control": 3, "postgres": 5}
OPERATIONS = ("start", "stop", "restart")


@dataclass
class Tally:
    """What the clients saw."""

    acknowledged: int = 0
    task_starts: int = 0
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    examples: dict[str, str] = field(default_factory=dict)
    slowest: tuple[float, str] = (0.0, "")
    # Container id -> the state its last operation left, if that operation was acknowledged.
    expected: dict[str, ContainerState | None] = field(default_factory=dict)
    kills: collections.Counter[str] = field(default_factory=collections.Counter)


def failure_message(error: BaseException) -> str:
    """The error's own words: a failed workflow's cause rather than "Workflow execution failed"."""
    if isinstance(error, WorkflowFailureError) and error.cause is not None:
        return str(error.cause)
    return str(error)


def failure_type(error: BaseException) -> str:
    """The error's Berth type (or its class), for the failure table."""
    if isinstance(error, WorkflowFailureError) and isinstance(error.cause, ApplicationError):
        return error.cause.type or "ApplicationError"
    if isinstance(error, BerthError):
        return type(error).__name__
    return f"{type(error).__module__}.{type(error).__name__}"


async def by_type_name(temporal: Client, op: str, container_id: str) -> None:
    """The operation as any Temporal client asks it: the public workflow by type name."""
    workflow_id = f"soak-{op}-{container_id[:12]}-{uuid.uuid4().hex[:8]}"
    if op == "start":
        await temporal.execute_workflow(
            "ContainerStart",
            ContainerStartInput(container=container_id),
            id=workflow_id,
            task_queue="berth",
            result_type=ContainerStartOutput,
        )
    elif op == "stop":
        await temporal.execute_workflow(
            "ContainerStop",
            ContainerStopInput(container=container_id, timeout=1),
            id=workflow_id,
            task_queue="berth",
            result_type=ContainerStopOutput,
        )
    else:
        await temporal.execute_workflow(
            "ContainerRestart",
            ContainerRestartInput(container=container_id, timeout=1),
            id=workflow_id,
            task_queue="berth",
            result_type=ContainerStartOutput,
        )


async def with_client(berth: BerthClient, op: str, container_id: str) -> None:
    if op == "start":
        await berth.start(container_id)
    elif op == "stop":
        await berth.stop(container_id, timeout=1)
    else:
        await berth.restart(container_id, timeout=1)


async def client_loop(
    index: int,
    berth: BerthClient,
    temporal: Client,
    containers: list[str],
    budget: list[int],
    tally: Tally,
    deadline: float,
    op_timeout: float,
) -> None:
    rng = random.Random(index)
    running: dict[str, bool] = dict.fromkeys(containers, False)
    typed = index % 2 == 1
    while budget[0] > 0 and time.monotonic() < deadline:
        budget[0] -= 1
        container_id = rng.choice(containers)
        # Mostly starts of stopped containers and stops of running ones, some restarts.
        op = "restart" if rng.random() < 0.2 else ("stop" if running[container_id] else "start")
        began = time.monotonic()
        try:
            call = (
                by_type_name(temporal, op, container_id)
                if typed
                else with_client(berth, op, container_id)
            )
            await asyncio.wait_for(call, op_timeout)
        except BaseException as error:  # every failure is a figure here
            if isinstance(error, asyncio.CancelledError):
                raise
            kind = "Timeout" if isinstance(error, TimeoutError) else failure_type(error)
            if kind == "NotModified":
                kind = ""
            else:
                if container_id in tally.expected and tally.expected[container_id] is None:
                    # The client gave up on its last operation here, which may still hold it.
                    kind += " (after an abandoned operation)"

                tally.failures[kind] += 1
                tally.examples.setdefault(
                    kind, f"{op} {container_id[:12]}: {failure_message(error)}"[:300]
                )
                tally.expected[container_id] = None  # outcome unknown
                running[container_id] = rng.random() < 0.5
        else:
            kind = ""
        elapsed = time.monotonic() - began
        if not kind:
            tally.acknowledged += 1
            tally.task_starts += op in ("start", "restart")
            running[container_id] = op != "stop"
            tally.expected[container_id] = (
                ContainerState.EXITED if op == "stop" else ContainerState.RUNNING
            )
        if elapsed > tally.slowest[0]:
            tally.slowest = (elapsed, f"{op} {container_id[:12]} ({kind or 'ok'})")


# --- the killer --------------------------------------------------------------------------------


def kill_pid(pid: int | None, marker: str) -> bool:
    if pid is None or not pid_alive(pid, marker):
        return False
    os.kill(pid, signal.SIGKILL)
    return True


def postgres_cluster(port: int) -> tuple[str, str]:
    """The Debian cluster (version, name) listening on ``port``, from ``pg_lsclusters``."""
    listing = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True
    ).stdout
    for line in listing.splitlines():
        version, name, cluster_port, *_ = line.split()
        if int(cluster_port) == port:
            return version, name
    raise SystemExit(f"no PostgreSQL cluster of this machine listens on port {port}")


def kill_one(
    kind: str, paths: StackPaths, nodes: list[str], database_port: int, rng: random.Random
) -> str:
    """SIGKILL one process of ``kind`` by the stack's pid files; what was killed."""
    if kind == "agent":
        node = rng.choice(nodes)
        killed = kill_pid(read_pid(paths.pid_file(f"worker-{node}")), WORKER_MARKER)
        return f"agent {node}" if killed else ""
    if kind == "control":
        killed = kill_pid(read_pid(paths.pid_file("worker-control")), WORKER_MARKER)
        return "control worker" if killed else ""
    if kind == "temporal":
        process = temporal_process(paths)
        killed = kill_pid(read_pid(paths.pid_file("temporal")), process.marker)
        return "temporal" if killed else ""
    if kind == "containerd":
        node = rng.choice(nodes)
        node_paths = paths.node(node)
        marker = str(node_paths.containerd_dir / "config.toml")
        killed = kill_pid(read_pid(containerd_pid_path(node_paths)), marker)
        return f"containerd {node}" if killed else ""
    version, cluster = postgres_cluster(database_port)
    result = subprocess.run(
        [
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            version,
            cluster,
            "restart",
            "-m",
            "immediate",
        ],
        capture_output=True,
    )
    return "postgres" if result.returncode == 0 else ""


def bring_up(nodes: int, settings: Settings) -> None:
    """``scripts/dev up --nodes N``: starts whatever is not running."""
    env = {**worker_env(settings, StackPaths(settings.state_dir))}
    subprocess.run(
        [str(PROJECT_ROOT / "scripts" / "dev"), "up", "--nodes", str(nodes)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        timeout=300,
    )


async def killer(
    kinds: list[str],
    settings: Settings,
    nodes: list[str],
    every: float,
    tally: Tally,
    stop: asyncio.Event,
) -> None:
    rng = random.Random(42)
    paths = StackPaths(settings.state_dir)
    database_port = make_url(settings.database_url.get_secret_value()).port or 5432
    weights = [WEIGHTS[k] for k in kinds]
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), rng.expovariate(1 / every))
            return
        except TimeoutError:
            pass
        kind = rng.choices(kinds, weights)[0]
        what = await asyncio.to_thread(kill_one, kind, paths, nodes, database_port, rng)
        if not what:
            continue
        tally.kills[kind] += 1
        print(f"  [{time.strftime('%H:%M:%S')}] killed {what}", flush=True)
        await asyncio.sleep(rng.uniform(1.0, 4.0))
        await asyncio.to_thread(bring_up, len(nodes), settings)


# --- verdict -----------------------------------------------------------------------------------


async def settle_and_check(
    settings: Settings, nodes: list[str], berth: BerthClient, timeout: float
) -> list[Finding]:
    """Wait until no operation is in flight (or ``timeout``), then every node's findings."""
    sessions = make_sessionmaker(berth._engine)
    deadline = time.monotonic() + timeout
    while True:
        findings: list[Finding] = []
        for node in nodes:
            own = settings.model_copy(update={"node": node})
            runtime = node_runtime(own)
            try:
                findings += await check_node(
                    node, own.node_paths(), runtime.containerd, runtime.cni, sessions
                )
            finally:
                await runtime.containerd.close()
        in_flight = [f for f in findings if f.kind is LeakKind.OPERATION_IN_FLIGHT]
        if not in_flight or time.monotonic() > deadline:
            return findings
        await asyncio.sleep(2)


async def lost_acknowledgements(berth: BerthClient, settings: Settings, tally: Tally) -> list[str]:
    """Containers whose last acknowledged operation the records or the tasks contradict."""
    sessions = make_sessionmaker(berth._engine)
    lost = []
    for container_id, expected in tally.expected.items():
        if expected is None:
            continue
        async with sessions() as session:
            record = await ContainerRepository(session).get(container_id)
        runtime = node_runtime(settings.model_copy(update={"node": record.node}))
        try:
            tasks = {task.id: task for task in await runtime.containerd.list_tasks()}
        finally:
            await runtime.containerd.close()
        task = tasks.get(container_id)
        runs = task is not None and task.status is TaskStatus.RUNNING
        if record.state != expected or runs != (expected is ContainerState.RUNNING):
            lost.append(
                f"{container_id[:12]}: acknowledged {expected}, recorded {record.state}, "
                f"task {task.status if task else 'none'}"
            )
    return lost


async def soak(args: argparse.Namespace) -> int:
    settings = Settings()
    nodes = node_names(args.nodes)
    kinds = [k for k in args.kill.split(",") if k]
    tally = Tally()
    run = uuid.uuid4().hex[:6]
    async with await BerthClient.connect(settings) as berth:
        ids = []
        for index in range(args.containers):
            created = await berth.create(
                ContainerConfig(
                    name=f"soak-{run}-{index}",
                    image=DEFAULT_REF,
                    cmd=["sleep", "3600"],
                    node=nodes[index % len(nodes)],
                )
            )
            ids.append(created.id)
        print(
            f"chaos soak {run}: {args.operations} operations, {args.clients} clients, "
            f"{args.containers} containers on {', '.join(nodes)}; killing {', '.join(kinds)} "
            f"every ~{args.kill_every:.0f} s",
            flush=True,
        )
        # A by-type-name client rides out a Temporal restart the way any SDK user can: its
        # connection retries calls for up to a minute (the SDK's default gives up after 10 s).
        temporal = await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=berth.temporal.data_converter,
            retry_config=RetryConfig(
                max_elapsed_time_millis=60_000, max_interval_millis=2_000, max_retries=100
            ),
        )
        began = time.monotonic()
        deadline = began + args.duration
        budget = [args.operations]
        stop = asyncio.Event()
        chaos = asyncio.create_task(killer(kinds, settings, nodes, args.kill_every, tally, stop))
        shards = [ids[i :: args.clients] for i in range(args.clients)]
        try:
            await asyncio.gather(
                *(
                    client_loop(i, berth, temporal, shard, budget, tally, deadline, args.op_timeout)
                    for i, shard in enumerate(shards)
                    if shard
                )
            )
        finally:
            stop.set()
            await chaos
        await asyncio.to_thread(bring_up, len(nodes), settings)
        elapsed = time.monotonic() - began
        findings = await settle_and_check(settings, nodes, berth, args.settle)
        lost = await lost_acknowledgements(berth, settings, tally)
        failed = sum(tally.failures.values())
        total = tally.acknowledged + failed
        print(f"\noperations: {total} in {elapsed:.0f} s ({tally.task_starts} task starts acked)")
        print(f"acknowledged: {tally.acknowledged}")
        print(f"failed: {failed} ({100 * failed / max(total, 1):.2f} %)")
        for kind, count in tally.failures.most_common():
            print(f"  {count:>5}  {kind}   e.g. {tally.examples[kind]}")
        print(f"slowest: {tally.slowest[0]:.1f} s  {tally.slowest[1]}")
        print("kills: " + ", ".join(f"{k} {n}" for k, n in sorted(tally.kills.items())))
        print(f"leak checker: {'no leak' if not findings else f'{len(findings)} findings'}")
        for finding in findings:
            print(f"  {finding}")
        print(f"lost acknowledgements: {len(lost)}")
        for line in lost:
            print(f"  {line}")
        if not args.keep:
            for container_id in ids:
                try:
                    await asyncio.wait_for(berth.remove(container_id, force=True), 60)
                except (BerthError, TimeoutError) as error:
                    print(f"  cleanup of {container_id[:12]}: {error}")
    return 1 if findings or lost else 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos_soak", description=__doc__)
    parser.add_argument("--operations", type=int, default=300, help="lifecycle operations")
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--containers", type=int, default=30)
    parser.add_argument("--duration", type=float, default=3600, help="seconds, at most")
    parser.add_argument("--kill-every", type=float, default=10, help="mean seconds between kills")
    parser.add_argument("--kill", default=",".join(KINDS), help=f"of {','.join(KINDS)}")
    parser.add_argument("--op-timeout", type=float, default=600, help="seconds per operation")
    parser.add_argument("--settle", type=float, default=180, help="seconds to wait at the end")
    parser.add_argument("--keep", action="store_true", help="keep the soak's containers")
    args = parser.parse_args()
    unknown = set(args.kill.split(",")) - set(KINDS) - {""}
    if unknown:
        parser.error(f"unknown --kill kinds: {', '.join(sorted(unknown))}")
    sys.exit(asyncio.run(soak(args)))


if __name__ == "__main__":
    main()
