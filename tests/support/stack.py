"""The test suite's own stack: a Temporal dev server, one containerd per node and a database.

A session claims a suite index ``k`` (``claim_suite``): an exclusive lock on
``/tmp/berth-suites/<k>.lock`` held for the whole session, so two suites side by side get
different indexes. Everything of the session is named from it and lives under its state dir
``/tmp/berth-suites/<k>/`` (short: containerd's unix sockets are limited to 108 bytes):

- Temporal: ``temporal server start-dev`` on free loopback ports, its db file in the state dir;
- containerd for node-1..3 with their own root, state and socket under the state dir, the busybox
  image imported into namespace ``berth-test``;
- PostgreSQL: database ``berth_test_<k>_<random>`` on the shared server, created and migrated at
  the start, dropped at the end;
- CNI: bridge ``btest<k>n<i>`` and subnet ``10.214.<4 (3k + i)>.0/22`` for node i+1;
- an image registry (distribution 2.8, ``dev/registry.py``) on a free loopback port, its storage
  under the state dir, with the busybox image pushed as ``berth/busybox:latest``; the nodes list
  it as insecure (plain HTTP).

A developer's stack (``scripts/dev up``: /var/lib/berth, ports 7233/8233, database ``berth``,
bridges ``berth<i>``) is never touched. ``clear_suite`` is the one teardown: it ends every process
recorded under the state dir (by pid, checking the pid is still that process), deletes the nodes'
containerd tasks and containers, stops the containerds, unmounts everything under the state dir,
deletes the suite's bridges and databases and removes the dir. It runs when the session ends,
also after failures, and at the start of a later session for any index whose owner died without
it (its lock is free and its dir still there).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import os
import re
import secrets
import shutil
import socket
import subprocess
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import psycopg
from alembic import command
from alembic.config import Config
from psycopg import sql
from sqlalchemy.engine import make_url

from berth.config import NodePaths, Settings
from berth.endpoint.certs import ensure_dev_certificates
from berth.endpoint.tls import dev_directory
from berth.runtime.cni import CniNetwork, delete_masquerade
from berth.runtime.containerd_daemon import start_containerd
from berth.runtime.image import DEFAULT_REF, build_busybox_image, import_image
from berth.runtime.mounts import unmount_rootfs
from berth.runtime.netns import list_netns
from dev.registry import LocalRegistry, push_oci_layout
from dev.stack import (
    BackgroundProcess,
    StackPaths,
    TemporalServer,
    bring_up_temporal,
    libpq_conninfo,
    pid_alive,
    read_pid,
    start_background,
    stop_background,
    stop_node_containerd,
    temporal_process,
)

ROOT = Path(__file__).resolve().parents[2]
SUITES_DIR = Path("/tmp/berth-suites")
MAX_SUITES = 10
NODES = ("node-1", "node-2", "node-3")
# The suite's Temporal namespace and containerd namespace.
NAMESPACE = "berth-test"
# The PostgreSQL server the suite makes its database on (any database of it to connect to).
POSTGRES_URL = os.environ.get(
    "BERTH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
# Pid files under ``<state>/run`` and the string each process's command line must hold.
AGENT_MARKER = "berth.worker"
# The registry's pid file under ``<state>/run`` and the repository the test image is pushed to.
REGISTRY_PROCESS = "registry"
REGISTRY_REPOSITORY = "berth/busybox"

T = TypeVar("T")


class SuiteStackError(Exception):
    """The suite's stack could not be brought up or fully cleared; the message says what."""


@dataclass(frozen=True)
class Suite:
    """One claimed suite index and what is named from it."""

    index: int

    @property
    def paths(self) -> StackPaths:
        return StackPaths(SUITES_DIR / str(self.index))

    @property
    def state_dir(self) -> Path:
        return self.paths.state

    @property
    def database_prefix(self) -> str:
        return f"berth_test_{self.index}_"

    def bridge(self, node: str) -> str:
        return f"btest{self.index}n{NODES.index(node)}"

    def subnet(self, node: str) -> str:
        # A /22 per node (1,021 containers), in 10.214/16 so that no dev-stack node overlaps.
        return f"10.214.{4 * (len(NODES) * self.index + NODES.index(node))}.0/22"

    def node_paths(self, node: str) -> NodePaths:
        return NodePaths(self.state_dir, node, NAMESPACE)

    def registry(self, port: int = 0) -> LocalRegistry:
        """The suite's registry (its files under the state dir; ``port`` once it is known)."""
        return LocalRegistry(self.state_dir / "registry", port)

    def agent_pid_file(self, node: str) -> Path:
        """Where a test records the pid of a node agent subprocess it runs."""
        return self.paths.pid_file(f"agent-{node}")


@dataclass(frozen=True)
class SuiteStack:
    """The suite's running services."""

    suite: Suite
    temporal: TemporalServer
    database_url: str
    registry: LocalRegistry

    @property
    def registry_image(self) -> str:
        """The test image's reference in the suite's registry."""
        return f"{self.registry.address}/{REGISTRY_REPOSITORY}:latest"

    def environ(self) -> dict[str, str]:
        """``BERTH_*`` naming this stack: any process a test starts reaches it, not a dev stack."""
        return {
            "BERTH_STATE_DIR": str(self.suite.state_dir),
            "BERTH_DATABASE_URL": self.database_url,
            "BERTH_TEMPORAL_ADDRESS": self.temporal.address,
            "BERTH_TEMPORAL_HTTP_ADDRESS": self.temporal.http_address,
            "BERTH_TEMPORAL_NAMESPACE": NAMESPACE,
            "BERTH_CONTAINERD_NAMESPACE": NAMESPACE,
            "BERTH_NODE": NODES[0],
            "BERTH_BRIDGE": self.suite.bridge(NODES[0]),
            "BERTH_SUBNET": self.suite.subnet(NODES[0]),
            "BERTH_INSECURE_REGISTRIES": f'["{self.registry.address}"]',
            # The suite's registry only: an image of any other (Docker Hub's) is NotFound at
            # once, and nothing leaves this machine.
            "BERTH_ALLOWED_REGISTRIES": f'["{self.registry.address}"]',
        }

    def node_settings(self, settings: Settings, node: str) -> Settings:
        """``settings`` for ``node``: its name, bridge and subnet."""
        return settings.model_copy(
            update={
                "node": node,
                "bridge": self.suite.bridge(node),
                "subnet": self.suite.subnet(node),
            }
        )

    def stop_temporal(self) -> None:
        """Stop the suite's Temporal by its pid (SIGTERM, then SIGKILL)."""
        paths = self.suite.paths
        stop_background(paths, "temporal", temporal_process(paths, self.temporal).marker)

    def start_temporal(self) -> None:
        """Start the suite's Temporal again on the same ports and db file."""
        if bring_up_temporal(self.suite.paths, self.temporal) is None:
            raise SuiteStackError(f"{self.temporal.address} is served by another process")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on a loop of its own in a thread (callable inside or outside a loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


# --- claim and clear ---------------------------------------------------------------------------


def _try_lock(index: int) -> IO[str] | None:
    SUITES_DIR.mkdir(parents=True, exist_ok=True)
    lock = (SUITES_DIR / f"{index}.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock


@contextlib.contextmanager
def claim_suite() -> Iterator[Suite]:
    """Claim the lowest free suite index for the duration; clear what it made when done.

    On the way, every free index whose dir is still there (a session that died without its
    teardown) is cleared first.
    """
    claimed: tuple[Suite, IO[str]] | None = None
    for index in range(MAX_SUITES):
        lock = _try_lock(index)
        if lock is None:
            continue
        suite = Suite(index)
        try:
            if suite.state_dir.exists() or _suite_databases(suite):
                clear_suite(suite)
        except BaseException:
            lock.close()
            raise
        if claimed is None:
            claimed = (suite, lock)
        else:
            lock.close()
    if claimed is None:
        raise SuiteStackError(f"all {MAX_SUITES} suite indexes are taken ({SUITES_DIR})")
    suite, lock = claimed
    try:
        suite.paths.run_dir.mkdir(parents=True)
        suite.paths.logs_dir.mkdir(parents=True)
        yield suite
    finally:
        try:
            clear_suite(suite)
        finally:
            lock.close()


def clear_suite(suite: Suite) -> None:
    """End and remove everything of ``suite``; every step is attempted, failures reported."""
    failures: list[str] = []

    def attempt(what: str, step: Any, *args: Any) -> None:
        try:
            step(*args)
        except Exception as err:
            failures.append(f"{what}: {err!r}")

    attempt("processes", _stop_recorded_processes, suite)
    for node in _node_dirs(suite):
        attempt(f"containerd {node}", run_coroutine, stop_node_containerd(suite.paths, node))
    attempt("port forwards", _delete_port_forwards, suite)
    if suite.state_dir.exists():
        attempt("mounts", unmount_rootfs, suite.state_dir)
    attempt("bridges", _delete_bridges, suite)
    attempt("databases", _drop_databases, suite)
    attempt("state dir", shutil.rmtree, suite.state_dir, True)
    # The runc root containerd's shims used for the namespace, shared by every suite: only empty.
    with contextlib.suppress(OSError):
        Path("/run/containerd/runc", NAMESPACE).rmdir()
    if failures:
        raise SuiteStackError(f"suite {suite.index} not fully cleared: " + "; ".join(failures))


def _stop_recorded_processes(suite: Suite) -> None:
    run_dir = suite.paths.run_dir
    if not run_dir.is_dir():
        return
    for pid_file in sorted(run_dir.glob("*.pid")):
        name = pid_file.stem
        marker = (
            temporal_process(suite.paths).marker
            if name == "temporal"
            else AGENT_MARKER
            if name.startswith("agent-")
            else str(suite.registry().config_file)
            if name == REGISTRY_PROCESS
            else None
        )
        pid = read_pid(pid_file)
        if marker is not None and pid is not None and pid_alive(pid, marker):
            stop_background(suite.paths, name, marker)
        pid_file.unlink(missing_ok=True)


def _node_dirs(suite: Suite) -> list[str]:
    nodes_dir = suite.state_dir / "nodes"
    if not nodes_dir.is_dir():
        return []
    return sorted(entry.name for entry in nodes_dir.iterdir() if entry.is_dir())


def _delete_port_forwards(suite: Suite) -> None:
    """portmap's rules (host-global iptables) of every container a node of the suite still has a
    network namespace or /etc directory for: a CNI DEL each, before the dirs go."""
    for node in _node_dirs(suite):
        if node not in NODES:
            continue
        paths = suite.node_paths(node)
        ids = {entry.name for entry in list_netns(paths.netns_dir)}
        if paths.containers_dir.is_dir():
            ids |= {entry.name for entry in paths.containers_dir.iterdir()}
        network = CniNetwork(
            Settings.model_fields["cni_bin_dir"].default,
            f"berth-{node}",
            suite.bridge(node),
            suite.subnet(node),
            paths.cni_dir,
            masquerade=False,
        )
        for container_id in sorted(ids):
            network.detach(container_id, paths.netns(container_id))


def _delete_bridges(suite: Suite) -> None:
    listed = subprocess.run(
        ["ip", "-o", "link", "show", "type", "bridge"], capture_output=True, text=True, check=True
    )
    names = [line.split(":")[1].strip().split("@")[0] for line in listed.stdout.splitlines()]
    for name in names:
        if re.fullmatch(rf"btest{suite.index}n[0-9]+", name):
            subprocess.run(["ip", "link", "del", name], check=True, capture_output=True)
    # Also the rules of bridges a test deleted itself (a simulated reboot).
    for node in NODES:
        delete_masquerade(suite.bridge(node))


def _admin() -> psycopg.Connection[Any]:
    return psycopg.connect(libpq_conninfo(POSTGRES_URL), autocommit=True, connect_timeout=5)


def _suite_databases(suite: Suite) -> list[str]:
    with _admin() as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
            (suite.database_prefix,),
        ).fetchall()
    return [str(row[0]) for row in rows]


def _drop_databases(suite: Suite) -> None:
    names = _suite_databases(suite)
    with _admin() as conn:
        for name in names:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# --- bring up ----------------------------------------------------------------------------------


async def start_stack(suite: Suite) -> SuiteStack:
    """Temporal, the nodes' containerds with the test image, and a migrated database."""
    temporal = TemporalServer(
        ip="127.0.0.1",
        port=free_port(),
        ui_port=free_port(),
        namespaces=("default", NAMESPACE),
        http_port=free_port(),
    )
    database = f"{suite.database_prefix}{secrets.token_hex(4)}"
    database_url = make_url(POSTGRES_URL).set(database=database).render_as_string(False)
    stack = SuiteStack(suite, temporal, database_url, suite.registry(free_port()))
    await asyncio.gather(
        asyncio.to_thread(stack.start_temporal),
        _start_nodes(suite),
        asyncio.to_thread(_create_database, database, database_url),
        # The node endpoint's CA and pairs: every agent and client of the suite uses mTLS.
        asyncio.to_thread(ensure_dev_certificates, dev_directory(suite.state_dir)),
    )
    await asyncio.to_thread(start_registry, suite, stack.registry)
    return stack


def start_registry(suite: Suite, registry: LocalRegistry) -> None:
    """Start the suite's registry (recorded by pid) and push the test image into it."""
    registry.write_config()
    start_background(
        suite.paths,
        BackgroundProcess(REGISTRY_PROCESS, registry.argv(), str(registry.config_file)),
    )
    registry.wait_ready()
    push_oci_layout(suite.paths.busybox_tar, registry.address, REGISTRY_REPOSITORY, "latest")


async def _start_nodes(suite: Suite) -> None:
    tar = suite.paths.busybox_tar
    tar.parent.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(build_busybox_image, tar, DEFAULT_REF)

    async def one(node: str) -> None:
        paths = suite.node_paths(node)
        await start_containerd(paths)
        await import_image(paths, NAMESPACE, tar, DEFAULT_REF)

    await asyncio.gather(*(one(node) for node in NODES))


def _create_database(name: str, database_url: str) -> None:
    with _admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` in this process's environment for the duration, then restore it."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
