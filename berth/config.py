"""Settings from the environment (``BERTH_*``); one object passed to whatever needs it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# Defined with the wire (berth.steps), where workflows find it; re-exported for the rest.
from berth import capabilities
from berth.steps import node_task_queue as node_task_queue

CONTROL_TASK_QUEUE = "berth"
CONTAINERD_NAMESPACE = "berth"


# Docker keeps its container dirs 0700/0710: no other host user walks into a container's files.
PRIVATE_DIR_MODE = 0o700


def make_private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) and make it the owner's alone (0700)."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != PRIVATE_DIR_MODE:
        os.chmod(path, PRIVATE_DIR_MODE)
    return path


class NodePaths:
    """Where one node keeps its host state; every path is derived, so undo can find it.

    The node's containerd is shared; everything per container lives under the containerd
    namespace's own directory, so two Berth deployments on one node (say, a developer's and the
    test suite's) never see each other's mounts, namespaces or address reservations.
    """

    def __init__(self, state_dir: Path, node: str, namespace: str = CONTAINERD_NAMESPACE) -> None:
        self.root = state_dir / "nodes" / node
        self.workload_root = self.workloads_dir / namespace

    @property
    def workloads_dir(self) -> Path:
        """The parent of every deployment's per-container state on this node."""
        return self.root / "ns"

    @property
    def containerd_dir(self) -> Path:
        return self.root / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd_dir / "containerd.sock"

    @property
    def rootfs_dir(self) -> Path:
        return self.workload_root / "rootfs"

    def rootfs(self, container_id: str) -> Path:
        return self.rootfs_dir / container_id

    @property
    def netns_dir(self) -> Path:
        return self.workload_root / "netns"

    def netns(self, container_id: str) -> Path:
        return self.netns_dir / container_id

    @property
    def cni_dir(self) -> Path:
        return self.workload_root / "cni"

    @property
    def logs_dir(self) -> Path:
        return self.workload_root / "logs"

    @property
    def containers_dir(self) -> Path:
        """Each container's own directory (its generated /etc files), like dockerd's."""
        return self.workload_root / "containers"

    def container_dir(self, container_id: str) -> Path:
        return self.containers_dir / container_id

    def log(self, container_id: str) -> Path:
        return self.logs_dir / f"{container_id}.log"

    @property
    def imports_dir(self) -> Path:
        """The node's own directory of image archives to load: always allowed."""
        return self.root / "imports"

    @property
    def exports_dir(self) -> Path:
        """The node's own export directory: always allowed, created (0700) on first use."""
        return self.root / "exports"

    def bind_pins(self, container_id: str) -> Path:
        """Where a task creation pins the container's checked bind sources (``host_paths``)."""
        return self.workload_root / "binds" / container_id

    @property
    def specs_dir(self) -> Path:
        return self.workload_root / "specs"

    def spec(self, container_id: str) -> Path:
        return self.specs_dir / f"{container_id}.json"

    @property
    def health_dir(self) -> Path:
        """Health probes' output files, one per running probe."""
        return self.workload_root / "health"

    @property
    def log_driver(self) -> Path:
        """The containerd ``binary://`` log driver the shims run (``berth.log_driver``)."""
        return self.workload_root / "bin" / "berth-log-driver"

    def make_private_dirs(self) -> None:
        """Make the workload root and its directories 0700 (they hold rootfs mounts, network
        namespaces, specs with the containers' env, logs); idempotent."""
        for path in (
            self.workload_root,
            self.rootfs_dir,
            self.netns_dir,
            self.cni_dir,
            self.logs_dir,
            self.containers_dir,
            self.specs_dir,
            self.health_dir,
            self.log_driver.parent,
        ):
            make_private_dir(path)


class Settings(BaseSettings):
    """Berth's configuration; every field can be set as ``BERTH_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="BERTH_")

    state_dir: Path = Field(default=Path("/var/lib/berth"))
    # A secret: a URL with a password must never reach a log line, an error or a repr.
    database_url: SecretStr = SecretStr("postgresql+psycopg://postgres@127.0.0.1:5432/berth")
    temporal_address: str = "127.0.0.1:7233"
    # The frontend's HTTP API (host:port, ``temporal server start-dev --http-port``; the dev stack
    # serves it on 7243), which the CLI's writing verbs use instead of the SDK (berth.temporal_http,
    # read by berth.cli.env). Unset without TLS: temporal_address's port + 10, if it listens;
    # empty: the SDK. Same namespace, TLS and API key settings.
    temporal_http_address: str | None = None
    temporal_namespace: str = "default"
    task_queue: str = CONTROL_TASK_QUEUE
    node: str = "node-1"
    containerd_namespace: str = CONTAINERD_NAMESPACE
    # The node's CNI bridge and its subnet; each node on one machine needs its own. A /22 holds
    # 1,021 containers (host-local keeps the network, gateway and broadcast addresses).
    bridge: str = "berth0"
    subnet: str = "10.213.0.0/22"
    # Outbound like Docker's default bridge: masquerade the subnet's traffic leaving the bridge.
    masquerade: bool = True
    # The node's resolvers, which containers' /etc/resolv.conf take (loopback ones dropped).
    resolv_conf: Path = Path("/etc/resolv.conf")
    cni_bin_dir: Path = Path("/usr/lib/cni")
    # Temporal connection security: TLS (server CA, and a client pair for mTLS) and an API key.
    temporal_tls: bool = False
    temporal_tls_ca_file: Path | None = None
    temporal_tls_cert_file: Path | None = None
    temporal_tls_key_file: Path | None = None
    temporal_tls_server_name: str | None = None
    temporal_api_key: SecretStr | None = None
    # PostgreSQL TLS rides on the URL, as libpq reads it: ...?sslmode=verify-full&sslrootcert=...
    # Payload encryption keys (see berth.codec): inline JSON, or a file holding it.
    codec_keys: SecretStr | None = None
    codec_keys_file: Path | None = None
    # Host paths containers may bind-mount (anything at or below these); empty allows none.
    allowed_host_paths: list[Path] = Field(default_factory=list)
    # Node permissions beyond Docker's defaults, each off by default (refused with Forbidden):
    # seccomp profile files containers may name (at or below these, resolved on the node),
    # seccomp_profile "unconfined", and network_mode "host".
    allowed_seccomp_paths: list[Path] = Field(default_factory=list)
    allow_unconfined_seccomp: bool = False
    allow_host_network: bool = False
    # Capabilities containers may add beyond Docker's default set (``CAP_NET_ADMIN`` or
    # ``NET_ADMIN``; ``ALL`` for every one, which ``--cap-add ALL`` needs); empty allows none.
    allowed_capabilities: list[Annotated[str, AfterValidator(capabilities.normalize)]] = Field(
        default_factory=list
    )
    # Directories exports may write to (anything at or below these, resolved on the node at each
    # export), besides the node's own ``<state_dir>/nodes/<node>/exports``, which is always allowed.
    allowed_export_paths: list[Path] = Field(default_factory=list)
    # host:port of this process's Prometheus endpoint (workers); unset means no endpoint.
    metrics_address: str | None = None
    # Container logs, rotated by the node's log driver as Docker's json-file driver does
    # (--log-opt max-size / max-file): at most log_max_bytes * log_max_files bytes per container.
    # Docker's default is unlimited; Berth bounds it by default.
    log_max_bytes: int = Field(default=10 * 1024 * 1024, ge=4096)
    log_max_files: int = Field(default=3, ge=1, le=100)
    # How often a node agent's reconciler repairs what ended sagas left (it also runs at start).
    reconcile_interval_seconds: float = 60.0
    # Riding out restarts of what Berth depends on. Each containerd call, CNI plugin run and
    # PostgreSQL connect or statement has this deadline (seconds, not the step's minute) ...
    runtime_call_timeout_seconds: float = Field(default=10.0, gt=0)
    # ... and a step that finds containerd, the CNI plugins' locks or PostgreSQL unavailable is
    # retried for this long before it gives up (its saga then unwinds).
    runtime_grace_seconds: float = Field(default=60.0, ge=0)
    # How long the client and CLI wait for a restarting Temporal frontend or PostgreSQL.
    client_wait_seconds: float = Field(default=30.0, ge=0)
    # Image registries (berth.registry): host[:port] of registries this node speaks plain HTTP
    # to (all others: HTTPS only), and the Docker config.json with its credentials (unset:
    # ~/.docker/config.json).
    insecure_registries: list[str] = Field(default_factory=list)
    # When set, the only registries (host[:port]) this node pulls from: an image of any other is
    # NotFound without a byte sent (the dev stack and the suite allow their loopback registry
    # only, so nothing reaches Docker Hub). Unset: any registry.
    allowed_registries: list[str] | None = None
    registry_auth_file: Path | None = None
    # Directories ``berth image load`` may read archives from (at or below these, resolved on
    # the node at each load), besides the node's own ``<state_dir>/nodes/<node>/imports``.
    allowed_import_paths: list[Path] = Field(default_factory=list)

    # Where the node agent's endpoint (berth.endpoint: logs, exec, attach, cp) listens,
    # host:port; port 0 picks a free one. The address it listens on is recorded with the node's
    # heartbeat, so clients find it; endpoint_advertise overrides what is recorded.
    endpoint_address: str = "127.0.0.1:0"
    endpoint_advertise: str | None = None
    # The endpoint's mTLS (berth.endpoint.tls): the CA that signs both sides, and this side's
    # certificate and key (a node agent's node pair, a client's client pair); all three or none.
    # None: the dev stack's files under <state_dir>/endpoint/ if they are there.
    endpoint_tls_ca_file: Path | None = None
    endpoint_tls_cert_file: Path | None = None
    endpoint_tls_key_file: Path | None = None
    # Serve (and reach) a loopback endpoint without TLS. Off by default: a loopback port is open
    # to every local user, and this endpoint execs as root in containers. Never outside loopback.
    endpoint_insecure_loopback: bool = False

    def node_paths(self, node: str | None = None) -> NodePaths:
        return NodePaths(self.state_dir, node or self.node, self.containerd_namespace)
