"""The public JSON contract: typed inputs and outputs of every workflow.

Clients in any language start Berth's workflows by type name with these shapes as plain JSON.
Validation happens here, at the edge: a bad field is an ``InvalidParameter`` that names it.
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

# moby's validContainerNamePattern: the first character alphanumeric, then [a-zA-Z0-9_.-].
CONTAINER_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
# A reference like docker's: [registry/]path[:tag][@digest], lower-case path components.
IMAGE_REFERENCE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
NODE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
CONTAINER_ID = re.compile(r"^[a-f0-9]{64}$")
MAX_LABELS = 256
MAX_ENV = 1024
MAX_VALUE_BYTES = 4096
# containerd refuses a label whose key and value together exceed 4096 bytes.
MAX_LABEL_BYTES = 4096
MAX_LABEL_KEY = 255
# An OCI spec's integers are int64 (memory limit, pids limit).
INT64_MAX = 2**63 - 1
# Arguments of a process: Linux takes one up to 128 KiB; the whole list is bounded too.
MAX_ARGS = 4096
MAX_ARG_BYTES = 128 * 1024
MAX_ARGS_TOTAL_BYTES = 1024 * 1024
# A fleet selector's ids stay well below PostgreSQL's 65,535 bind parameters (ids and names).
MAX_SELECTOR_IDS = 10_000
# Counts a fleet restart's knobs can meaningfully take (a selection is at most this many).
MAX_FLEET_COUNT = 1_000_000


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# A string that PostgreSQL, containerd and the kernel can all take: no NUL character.
Text = Annotated[str, AfterValidator(_no_nul)]


def check_labels(value: dict[str, str]) -> dict[str, str]:
    """Container labels (and selector labels): containerd's limits, no NUL, no empty key."""
    for key, val in value.items():
        if not key or len(key) > MAX_LABEL_KEY:
            raise ValueError(f"invalid label {key[:64]!r}: empty key or longer than 255")
        if "\x00" in key or "\x00" in val:
            raise ValueError(f"invalid label {key[:64]!r}: must not contain NUL characters")
        if len(key.encode()) + len(val.encode()) > MAX_LABEL_BYTES:
            raise ValueError(
                f"invalid label {key[:64]!r}: key and value exceed {MAX_LABEL_BYTES} bytes"
            )
    return value


def check_node_name(value: str | None) -> str | None:
    """A node name as placement and selectors take it (DNS label style); None passes."""
    if value is not None and not NODE_NAME.match(value):
        raise ValueError(f"invalid node name {value!r}")
    return value


def check_args(value: list[str] | None) -> list[str] | None:
    """A process's arguments: at most 4096, each at most 128 KiB, 1 MiB in all, no NUL."""
    if value is None:
        return value
    if len(value) > MAX_ARGS:
        raise ValueError(f"at most {MAX_ARGS} arguments, got {len(value)}")
    total = 0
    for arg in value:
        if "\x00" in arg:
            raise ValueError("arguments must not contain NUL")
        size = len(arg.encode())
        if size > MAX_ARG_BYTES:
            raise ValueError(f"an argument exceeds {MAX_ARG_BYTES} bytes")
        total += size
    if total > MAX_ARGS_TOTAL_BYTES:
        raise ValueError(f"arguments exceed {MAX_ARGS_TOTAL_BYTES} bytes in all")
    return value


Labels = Annotated[dict[str, str], Field(max_length=MAX_LABELS), AfterValidator(check_labels)]


class Model(BaseModel):
    """Strict JSON model: unknown fields are an error, so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NetworkMode(StrEnum):
    NONE = "none"
    BRIDGE = "bridge"
    HOST = "host"


class ContainerState(StrEnum):
    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    EXITED = "exited"
    REMOVING = "removing"
    DEAD = "dead"


class PullPolicy(StrEnum):
    """When a start pulls the container's image onto its node (kubelet's imagePullPolicy).

    ``missing``: only when the node does not have it (IfNotPresent); ``always``: at every start,
    from the registry (the node's copy is refreshed); ``never``: the node must have it already
    (``NotFound`` otherwise).
    """

    MISSING = "missing"
    ALWAYS = "always"
    NEVER = "never"


def check_image_reference(value: str) -> str:
    """An image reference as docker takes it (``[registry/]path[:tag][@digest]``)."""
    if len(value) > 255 or not IMAGE_REFERENCE.match(value):
        raise ValueError(f"invalid reference format: {value!r}")
    return value


ImageReference = Annotated[str, AfterValidator(check_image_reference)]
NodeName = Annotated[str, AfterValidator(check_node_name)]


class ImagePullInput(Model):
    """Input of ``ImagePull``: pull ``reference`` onto each of ``nodes``, all at once.

    Each node pulls it from its registry (``berth image pull --all-nodes`` names every live node);
    a node that has it already refreshes it from the registry, as ``docker pull`` does.
    """

    reference: ImageReference
    nodes: list[NodeName] = Field(min_length=1, max_length=1000)


class ImageOnNode(Model):
    """An image on one node: what a pull recorded there (``pulled`` False: nothing changed)."""

    node: str
    reference: str
    digest: str | None = None
    pulled: bool = True
    # Bytes of its layers and config, as the registry served them (compressed).
    size: int = 0


class ImagePullOutput(Model):
    """Output of ``ImagePull``: one entry per node."""

    reference: str
    nodes: list[ImageOnNode]


class RestartPolicy(Model):
    """Docker's restart policy: ``no``, ``always``, ``unless-stopped`` or ``on-failure[:N]``."""

    name: Literal["no", "always", "unless-stopped", "on-failure"] = "no"
    maximum_retry_count: Annotated[int, Field(ge=0, le=1_000_000)] = 0

    @model_validator(mode="after")
    def _retries_only_on_failure(self) -> RestartPolicy:
        if self.maximum_retry_count and self.name != "on-failure":
            raise ValueError("maximum_retry_count is only valid with on-failure")
        return self


# The shortest CFS quota the kernel takes is 1 ms of a 100 ms period: 0.01 CPU (Docker's floor).
MIN_NANO_CPUS = 10_000_000


class Resources(Model):
    """Limits applied through the OCI spec's cgroup section.

    ``memory_swap_bytes`` is memory plus swap, as Docker's ``--memory-swap``: None (or 0) is
    Docker's default, twice ``memory_bytes`` when that is set (else unlimited); -1 is unlimited.
    ``nano_cpus`` is ``--cpus`` in billionths of a CPU (a CFS quota of a 100 ms period).
    """

    memory_bytes: Annotated[int, Field(ge=6 * 1024 * 1024, le=INT64_MAX)] | None = None
    cpu_shares: Annotated[int, Field(ge=2, le=262144)] | None = None
    pids_limit: Annotated[int, Field(ge=1, le=INT64_MAX)] | None = None
    memory_swap_bytes: Annotated[int, Field(ge=-1, le=INT64_MAX)] | None = None
    nano_cpus: Annotated[int, Field(ge=0, le=INT64_MAX)] | None = None

    @field_validator("nano_cpus")
    @classmethod
    def _cpus_floor(cls, value: int | None) -> int | None:
        if value and value < MIN_NANO_CPUS:
            raise ValueError("must be at least 0.01 CPU (10000000 nano-CPUs), or 0 for no limit")
        return value or None

    @model_validator(mode="after")
    def _swap_with_memory(self) -> Resources:
        swap = self.memory_swap_bytes
        if swap is None or swap in (0, -1):
            return self
        if self.memory_bytes is None:
            raise ValueError(
                "memory_swap_bytes: you should always set the memory limit when using a "
                "memory+swap limit"
            )
        if swap < self.memory_bytes:
            raise ValueError(
                "memory_swap_bytes: minimum memory+swap limit should be larger than the memory "
                "limit; see memory_bytes"
            )
        return self

    @property
    def effective_swap(self) -> int | None:
        """Memory plus swap as applied (Docker's default twice the memory); None: no limit."""
        swap = self.memory_swap_bytes
        if swap == -1:
            return -1 if self.memory_bytes is not None else None
        if swap:
            return swap
        return min(2 * self.memory_bytes, INT64_MAX) if self.memory_bytes is not None else None


def check_absolute_clean_path(value: str) -> str:
    """An absolute path without NUL or a ``..`` component."""
    if not value.startswith("/") or "\x00" in value:
        raise ValueError(f"must be an absolute path, got {value!r}")
    if ".." in value.split("/"):
        raise ValueError(f"must not contain '..', got {value!r}")
    return value


def check_mount_target(value: str) -> str:
    """Where a bind or a volume is mounted in the container: a clean absolute path, not ``/``."""
    check_absolute_clean_path(value)
    if value.rstrip("/") == "":
        raise ValueError("cannot mount over the container's root")
    return value


class BindMount(Model):
    """A host path mounted into the container; the host path must be under an allowed root."""

    source: Annotated[str, Field(min_length=1, max_length=4096)]
    target: Annotated[str, Field(min_length=1, max_length=4096)]
    read_only: bool = False

    @field_validator("source")
    @classmethod
    def _absolute_clean_path(cls, value: str) -> str:
        return check_absolute_clean_path(value)

    @field_validator("target")
    @classmethod
    def _valid_target(cls, value: str) -> str:
        return check_mount_target(value)


# -- named volumes (docker volume create; run -v NAME:/path) --------------------------------------
# Docker's volume name rule; it also keeps a name one path component (no '/', no '..').
VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
MAX_VOLUMES = 64


def check_volume_name(value: str) -> str:
    """A volume name as docker takes it: ``[a-zA-Z0-9][a-zA-Z0-9_.-]+``, at most 255 bytes."""
    if len(value) > 255 or not VOLUME_NAME.match(value):
        raise ValueError(
            f"invalid volume name {value[:64]!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, "
            "at least 2 characters"
        )
    return value


VolumeName = Annotated[str, AfterValidator(check_volume_name)]


class VolumeMount(Model):
    """A named volume of the container's node mounted into the container (``-v name:/path``).

    The volume is created on the node when missing; its directory is the node's own
    (``<workload root>/volumes/<name>``), never a path the client names.
    """

    name: VolumeName
    target: Annotated[str, Field(min_length=1, max_length=4096)]
    read_only: bool = False

    @field_validator("target")
    @classmethod
    def _valid_target(cls, value: str) -> str:
        return check_mount_target(value)


# A health check's probe: docker's HEALTHCHECK test forms.
HEALTH_TEST_KINDS = ("CMD", "CMD-SHELL", "NONE")
# Docker's minimum for a health check duration.
MIN_HEALTH_SECONDS = 0.001


def _health_duration(default: float) -> BeforeValidator:
    """0 means Docker's default; else at least 1 ms (Docker refuses shorter ones)."""

    def check(value: object) -> object:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if value == 0:
                return default
            if 0 < value < MIN_HEALTH_SECONDS:
                raise ValueError(f"must be 0 (the default) or at least {MIN_HEALTH_SECONDS} s")
        return value

    return BeforeValidator(check)


HealthSeconds = Annotated[float, Field(gt=0, le=86_400), _health_duration(30.0)]


class HealthCheck(Model):
    """Docker's ``HEALTHCHECK``: a probe run inside the container's task, and its timing.

    ``test`` is ``["CMD", arg, ...]`` (exec form), ``["CMD-SHELL", "command"]`` (run by
    ``/bin/sh -c`` inside the container) or ``["NONE"]`` (no check, also none of the image's).
    The check is healthy after one probe exits 0 and unhealthy after ``retries`` failures in a
    row; failures within ``start_period`` of the start do not count. Durations are seconds.
    """

    test: list[str] = Field(min_length=1, max_length=1024)
    interval: HealthSeconds = 30.0
    timeout: HealthSeconds = 30.0
    start_period: Annotated[float, Field(ge=0, le=86_400), _health_duration(0.0)] = 0.0
    retries: Annotated[int, Field(ge=1, le=1_000_000)] = 3

    @field_validator("test")
    @classmethod
    def _valid_test(cls, value: list[str]) -> list[str]:
        kind = value[0]
        if kind not in HEALTH_TEST_KINDS:
            raise ValueError(f"test must start with CMD, CMD-SHELL or NONE, got {kind!r}")
        if kind == "NONE" and len(value) != 1:
            raise ValueError("test ['NONE'] takes no arguments")
        if kind == "CMD" and (len(value) < 2 or not value[1]):
            raise ValueError("test ['CMD', ...] needs the command to run")
        if kind == "CMD-SHELL" and (len(value) != 2 or not value[1].strip()):
            raise ValueError("test ['CMD-SHELL', ...] takes exactly one command string")
        if any("\x00" in arg or len(arg.encode()) > MAX_VALUE_BYTES for arg in value):
            raise ValueError("test arguments must not contain NUL or exceed 4096 bytes")
        return value

    @property
    def disabled(self) -> bool:
        """``["NONE"]``: no health check, not even the image's."""
        return self.test[0] == "NONE"


# --- networking: published ports, hostname, /etc/hosts, /etc/resolv.conf (docker run's flags) ---

# A host name as /etc/hostname and the UTS namespace take it: RFC 1123 labels, 63 bytes at most.
HOSTNAME = re.compile(
    r"^(?=.{1,63}$)[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$"
)
# A DNS search domain: dot-separated labels (253 bytes at most); "." alone clears the search list.
DNS_DOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-zA-Z0-9_](?:[a-zA-Z0-9_-]{0,61}[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9_](?:[a-zA-Z0-9_-]{0,61}[a-zA-Z0-9])?)*\.?$"
)
# A resolv.conf option: ``name`` or ``name:value`` (ndots:2, timeout:1, rotate, edns0, use-vc).
DNS_OPTION = re.compile(r"^[a-zA-Z0-9_-]{1,32}(?::[0-9]{1,5})?$")
# ``--add-host NAME:host-gateway`` maps NAME to the node's bridge address, as Docker does.
HOST_GATEWAY = "host-gateway"
MAX_PORTS = 1024
MAX_EXTRA_HOSTS = 256
MAX_DNS = 16


def _ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"invalid IP address {value!r}") from None


def check_hostname(value: str | None) -> str | None:
    """A container hostname (``--hostname``); None passes."""
    if value is not None and not HOSTNAME.match(value):
        raise ValueError(f"invalid hostname {value!r}: RFC 1123 labels, at most 63 characters")
    return value


def check_extra_host(value: str) -> str:
    """``NAME:IP`` (``--add-host``): IP may be IPv6 or ``host-gateway``; returned normalised."""
    name, sep, address = value.partition(":")
    if not sep or not HOSTNAME.match(name):
        raise ValueError(f"invalid extra host {value!r}: expected NAME:IP")
    address = address.strip("[]")
    return f"{name}:{address if address == HOST_GATEWAY else _ip_address(address)}"


def check_dns_search(value: str) -> str:
    if value != "." and not DNS_DOMAIN.match(value):
        raise ValueError(f"invalid DNS search domain {value!r}")
    return value


def check_dns_option(value: str) -> str:
    if not DNS_OPTION.match(value):
        raise ValueError(f"invalid DNS option {value!r}: expected NAME or NAME:NUMBER")
    return value


Port = Annotated[int, Field(ge=1, le=65535)]


class PortBinding(Model):
    """One published port: ``[host_ip:][host_port:]container_port[/protocol]`` (``-p``).

    ``host_port`` None (or 0) lets the node pick a free one from its ephemeral range;
    ``host_ip`` empty publishes on every address of the node.
    """

    container_port: Port
    protocol: Literal["tcp", "udp"] = "tcp"
    host_ip: Annotated[str, Field(max_length=15)] = ""
    host_port: Annotated[int, Field(ge=0, le=65535)] | None = None

    @field_validator("host_ip")
    @classmethod
    def _ipv4_or_any(cls, value: str) -> str:
        if not value:
            return value
        try:
            return str(ipaddress.IPv4Address(value))
        except ValueError:
            raise ValueError(f"invalid host IP {value!r}: an IPv4 address or empty") from None

    @classmethod
    def parse(cls, spec: str) -> list[PortBinding]:
        """Docker's ``-p`` syntax: ``[ip:][host:]container[/tcp|udp]``, ports or equal-length
        ranges (``8000-8002:80-82``).

        Raises:
            ValueError: the spec is malformed.
        """
        ports, _, protocol = spec.partition("/")
        parts = ports.split(":")
        if len(parts) > 3 or not parts[-1]:
            raise ValueError(f"invalid port spec {spec!r}: expected [ip:][host:]container[/proto]")
        host_ip = parts[0] if len(parts) == 3 else ""
        host = parts[-2] if len(parts) >= 2 else ""
        containers = _port_range(parts[-1], spec)
        hosts = _port_range(host, spec) if host else [None] * len(containers)
        if len(hosts) != len(containers):
            if len(hosts) > 1:
                raise ValueError(f"invalid port spec {spec!r}: ranges of different lengths")
            hosts = [None] * len(containers) if len(containers) > 1 else hosts
        return [
            cls.model_validate(
                {
                    "container_port": container,
                    "protocol": protocol or "tcp",
                    "host_ip": host_ip,
                    "host_port": host_port,
                }
            )
            for container, host_port in zip(containers, hosts, strict=True)
        ]


def _port_range(text: str, spec: str) -> list[int | None]:
    first, sep, last = text.partition("-")
    if not first.isdigit() or (sep and not last.isdigit()):
        raise ValueError(f"invalid port spec {spec!r}: {text!r} is not a port or range")
    low, high = int(first), int(last) if sep else int(first)
    if high < low or high - low >= MAX_PORTS:
        raise ValueError(f"invalid port spec {spec!r}: bad range {text!r}")
    return list(range(low, high + 1))


ExtraHost = Annotated[str, Field(max_length=320), AfterValidator(check_extra_host)]
DnsServer = Annotated[str, Field(max_length=45), AfterValidator(_ip_address)]
DnsSearch = Annotated[str, Field(max_length=253), AfterValidator(check_dns_search)]
DnsOption = Annotated[str, Field(max_length=40), AfterValidator(check_dns_option)]
Hostname = Annotated[str | None, AfterValidator(check_hostname)]


# --- process limits and confinement (docker run --ulimit, --tmpfs, --cap-add/--cap-drop) ---

# setrlimit's resources as Docker names them (go-units' ulimitNameMapping).
ULIMIT_NAMES = (
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
)
# Docker's /dev/shm size when none is given.
DEFAULT_SHM_BYTES = 64 * 1024 * 1024
# Mount flags a tmpfs mount takes (besides these, tmpfs' own KEY=VALUE options below).
TMPFS_FLAGS = frozenset(
    {
        "rw", "ro", "exec", "noexec", "suid", "nosuid", "dev", "nodev",
        "atime", "noatime", "diratime", "nodiratime", "relatime", "norelatime",
        "strictatime", "nostrictatime", "sync", "async", "dirsync",
        "private", "rprivate", "shared", "rshared", "slave", "rslave",
    }
)  # fmt: skip
TMPFS_KEYS = frozenset({"size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol"})
TMPFS_VALUE = re.compile(r"^[A-Za-z0-9:=%._,-]{1,64}$")
MAX_TMPFS = 64
MAX_ULIMITS = len(ULIMIT_NAMES)
# An rlimit of -1 is unlimited (RLIM_INFINITY).
RlimitValue = Annotated[int, Field(ge=-1, le=INT64_MAX)]


class Ulimit(Model):
    """One ``--ulimit NAME=SOFT[:HARD]``: the soft and hard limit of a setrlimit resource."""

    name: str
    soft: RlimitValue
    hard: RlimitValue

    @field_validator("name")
    @classmethod
    def _known_name(cls, value: str) -> str:
        if value not in ULIMIT_NAMES:
            raise ValueError(f"invalid ulimit type {value!r}: one of {', '.join(ULIMIT_NAMES)}")
        return value

    @model_validator(mode="after")
    def _soft_within_hard(self) -> Ulimit:
        if self.hard != -1 and (self.soft == -1 or self.soft > self.hard):
            raise ValueError(
                f"ulimit {self.name}: soft limit must be less than or equal to the hard limit"
            )
        return self

    @classmethod
    def parse(cls, spec: str) -> Ulimit:
        """Docker's ``NAME=SOFT[:HARD]`` (``nofile=1024:2048``; HARD defaults to SOFT).

        Raises:
            ValueError: the spec is malformed or the values are out of range.
        """
        name, sep, limits = spec.partition("=")
        soft, _, hard = limits.partition(":")
        numbers = (soft, hard or soft)
        if not sep or not all(re.fullmatch(r"-?\d{1,19}", n) for n in numbers):
            raise ValueError(f"invalid ulimit {spec!r}: expected NAME=SOFT[:HARD]")
        return cls.model_validate({"name": name, "soft": int(numbers[0]), "hard": int(numbers[1])})


def _container_path(value: str, what: str) -> str:
    """An absolute path inside the container, not its root, without ``..`` or NUL."""
    if not value.startswith("/") or "\x00" in value or ".." in value.split("/"):
        raise ValueError(f"invalid {what} {value!r}: must be an absolute path without '..'")
    if value.rstrip("/") == "" or len(value.encode()) > MAX_VALUE_BYTES:
        raise ValueError(f"invalid {what} {value!r}: not the root, at most 4096 bytes")
    return value.rstrip("/")


def check_tmpfs(value: dict[str, str]) -> dict[str, str]:
    """``--tmpfs PATH[:OPTIONS]`` as Docker's HostConfig.Tmpfs: path -> comma-separated options."""
    checked: dict[str, str] = {}
    for path, options in value.items():
        target = _container_path(path, "tmpfs path")
        for option in filter(None, options.split(",")):
            key, sep, setting = option.partition("=")
            known = key in TMPFS_KEYS if sep else key in TMPFS_FLAGS
            if not known or (sep and not TMPFS_VALUE.match(setting)):
                raise ValueError(f"invalid tmpfs option {option!r} for {target}")
        if target in checked:
            raise ValueError(f"duplicate tmpfs mount point {target}")
        checked[target] = options
    return checked


ALL_CAPABILITIES = "ALL"
# Every capability of Linux 5.9 and later, by number (CAP_CHOWN is 0, CAP_CHECKPOINT_RESTORE 40).
KNOWN_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
# Docker's (and containerd's) default set (moby oci/caps/defaults.go), in its order.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)


def normalize_capability(name: str) -> str:
    """``net_admin``, ``NET_ADMIN`` or ``CAP_NET_ADMIN`` as ``CAP_NET_ADMIN``; ``all`` as ``ALL``.

    Raises:
        ValueError: not a capability Linux knows, as Docker says it.
    """
    upper = name.strip().upper()
    if upper == ALL_CAPABILITIES:
        return ALL_CAPABILITIES
    full = upper if upper.startswith("CAP_") else f"CAP_{upper}"
    if full not in KNOWN_CAPABILITIES:
        raise ValueError(f"unknown capability: {name!r}")
    return full


Capability = Annotated[str, Field(max_length=64), AfterValidator(normalize_capability)]


class ContainerConfig(Model):
    """What ``berth create`` registers: the container's config and host config."""

    name: str
    image: str
    # When a start pulls the image onto the container's node (berth.runtime.pull).
    pull_policy: PullPolicy = PullPolicy.MISSING
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] = Field(default_factory=list, max_length=MAX_ENV)
    working_dir: Annotated[Text, Field(max_length=4096)] = ""
    user: Annotated[Text, Field(max_length=256)] = ""
    labels: Labels = Field(default_factory=dict)
    network_mode: NetworkMode = NetworkMode.BRIDGE
    auto_remove: bool = False
    restart_policy: RestartPolicy = Field(default_factory=RestartPolicy)
    resources: Resources = Field(default_factory=Resources)
    binds: list[BindMount] = Field(default_factory=list, max_length=64)
    volumes: list[VolumeMount] = Field(default_factory=list, max_length=MAX_VOLUMES)
    node: str | None = None
    # Wins over the image's Healthcheck when given; ["NONE"] disables the image's too.
    healthcheck: HealthCheck | None = None
    # None or "default": Docker's default profile; "unconfined": none (only where the node
    # permits it); else an absolute path on the node, under its allowed seccomp paths.
    seccomp_profile: str | None = None
    # Networking (docker run -p/-P, --hostname, --add-host, --dns, --dns-search, --dns-option):
    # ports published on the node (``publish_all``: also each port the image exposes, on a
    # port the node picks); the hostname (default: the id's first 12 characters) and the
    # entries of the container's own /etc/hosts and /etc/resolv.conf (default: the node's
    # resolvers, loopback ones dropped).
    ports: list[PortBinding] = Field(default_factory=list, max_length=MAX_PORTS)
    publish_all: bool = False
    hostname: Hostname = None
    extra_hosts: list[ExtraHost] = Field(default_factory=list, max_length=MAX_EXTRA_HOSTS)
    dns: list[DnsServer] = Field(default_factory=list, max_length=MAX_DNS)
    dns_search: list[DnsSearch] = Field(default_factory=list, max_length=MAX_DNS)
    dns_options: list[DnsOption] = Field(default_factory=list, max_length=MAX_DNS)
    # Process limits and confinement (docker run --ulimit, --oom-score-adj, --shm-size,
    # --read-only, --tmpfs, --cap-add, --cap-drop), Docker's defaults when not given: nofile
    # 1024:1024, OOM score 0, a 64 MiB /dev/shm, a writable root, Docker's capability set.
    # Capabilities beyond that set only on a node that permits them (allowed_capabilities).
    ulimits: list[Ulimit] = Field(default_factory=list, max_length=MAX_ULIMITS)
    oom_score_adj: Annotated[int, Field(ge=-1000, le=1000)] = 0
    shm_size_bytes: Annotated[int, Field(ge=0, le=INT64_MAX)] | None = None
    read_only_rootfs: bool = False
    tmpfs: Annotated[
        dict[str, Annotated[str, Field(max_length=1024)]],
        Field(max_length=MAX_TMPFS),
        AfterValidator(check_tmpfs),
    ] = Field(default_factory=dict)
    cap_add: list[Capability] = Field(default_factory=list, max_length=64)
    cap_drop: list[Capability] = Field(default_factory=list, max_length=64)
    # docker run -t / -i: the init gets a terminal (the shim writes its console to the log) and
    # with -i a stdin FIFO a later attach writes to. -i needs -t: the node's log driver, which
    # takes the output of a task without a terminal, gives containerd no stdin to copy.
    tty: bool = False
    open_stdin: bool = False

    @model_validator(mode="after")
    def _stdin_with_a_terminal(self) -> ContainerConfig:
        if self.open_stdin and not self.tty:
            raise ValueError("open_stdin (-i) needs tty (-t): use -it")
        return self

    @field_validator("ulimits")
    @classmethod
    def _one_ulimit_each(cls, value: list[Ulimit]) -> list[Ulimit]:
        names = [ulimit.name for ulimit in value]
        if len(set(names)) != len(names):
            raise ValueError("each ulimit may be given once")
        return value

    @model_validator(mode="after")
    def _tmpfs_apart_from_binds(self) -> ContainerConfig:
        targets = {bind.target.rstrip("/") for bind in self.binds}
        clash = sorted(targets & set(self.tmpfs))
        if clash:
            raise ValueError(f"tmpfs: duplicate mount point {clash[0]} (also a bind target)")
        seen = targets | set(self.tmpfs)
        for volume in self.volumes:
            target = volume.target.rstrip("/")
            if target in seen:
                raise ValueError(f"volumes: duplicate mount point {volume.target}")
            seen.add(target)
        return self

    @property
    def shm_size(self) -> int:
        """/dev/shm's size in bytes (Docker's 64 MiB when none or 0 was given)."""
        return self.shm_size_bytes or DEFAULT_SHM_BYTES

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not CONTAINER_NAME.match(value) or len(value) > 128:
            raise ValueError(
                f"Invalid container name ({value!r}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )
        return value.lstrip("/")

    @field_validator("image")
    @classmethod
    def _valid_image(cls, value: str) -> str:
        return check_image_reference(value)

    @field_validator("env")
    @classmethod
    def _valid_env(cls, value: list[str]) -> list[str]:
        for entry in value:
            key, sep, _ = entry.partition("=")
            if not sep or not key:
                raise ValueError(f"invalid environment variable {entry!r}: expected KEY=VALUE")
            if "\x00" in entry or len(entry.encode()) > MAX_VALUE_BYTES:
                raise ValueError(f"invalid environment variable {key!r}: too long or has NUL")
        return value

    @field_validator("working_dir")
    @classmethod
    def _absolute_working_dir(cls, value: str) -> str:
        if value and not value.startswith("/"):
            raise ValueError(f"working_dir must be an absolute path, got {value!r}")
        return value

    @field_validator("entrypoint", "cmd")
    @classmethod
    def _valid_args(cls, value: list[str] | None) -> list[str] | None:
        return check_args(value)

    @field_validator("node")
    @classmethod
    def _valid_node(cls, value: str | None) -> str | None:
        return check_node_name(value)

    @field_validator("seccomp_profile")
    @classmethod
    def _valid_seccomp_profile(cls, value: str | None) -> str | None:
        if value is None or value in ("default", "unconfined"):
            return value
        parts = value.split("/")
        if (
            not value.startswith("/")
            or value.endswith("/")
            or ".." in parts
            or "\x00" in value
            or len(value.encode()) > MAX_VALUE_BYTES
        ):
            raise ValueError(
                "seccomp_profile must be 'default', 'unconfined' or an absolute file path "
                f"without '..', got {value!r}"
            )
        return value


class ContainerCreateInput(Model):
    """Input of ``ContainerCreate``."""

    config: ContainerConfig


class ContainerCreateOutput(Model):
    """Output of ``ContainerCreate``."""

    id: str
    name: str
    node: str


class ContainerStartInput(Model):
    """Input of ``ContainerStart``: the container's id or name.

    ``checkpoint`` and ``checkpoint_dir`` mirror docker's options; they are refused, as docker
    refuses them without experimental mode.
    """

    container: Annotated[Text, Field(min_length=1, max_length=128)]
    checkpoint: Annotated[Text, Field(max_length=4096)] = ""
    checkpoint_dir: Annotated[Text, Field(max_length=4096)] = ""


class ContainerStartOutput(Model):
    """Output of ``ContainerStart``."""

    id: str
    name: str
    node: str
    pid: int
    ip: str | None = None
    not_modified: bool = False


# docker stop's default grace period before SIGKILL, in seconds.
DEFAULT_STOP_TIMEOUT = 10
ContainerReference = Annotated[Text, Field(min_length=1, max_length=128)]
StopTimeout = Annotated[int, Field(ge=0, le=86_400)]


class ContainerStopInput(Model):
    """Input of ``ContainerStop``: the container and the seconds to wait before SIGKILL."""

    container: ContainerReference
    timeout: StopTimeout | None = None


class ContainerStopOutput(Model):
    """Output of ``ContainerStop``; ``not_modified`` when it was not running (HTTP 304)."""

    id: str
    name: str
    node: str
    exit_code: int | None = None
    not_modified: bool = False


class ContainerRestartInput(Model):
    """Input of ``ContainerRestart``: stop (with ``timeout``) then start, as one operation."""

    container: ContainerReference
    timeout: StopTimeout | None = None


class ContainerPauseInput(Model):
    """Input of ``ContainerPause`` and ``ContainerUnpause``."""

    container: ContainerReference


class ContainerPauseOutput(Model):
    """Output of ``ContainerPause`` and ``ContainerUnpause``: the state now."""

    id: str
    name: str
    node: str
    state: ContainerState


class ContainerRemoveInput(Model):
    """Input of ``ContainerRemove``; ``force`` kills a running container first (docker rm -f)."""

    container: ContainerReference
    force: bool = False


class ContainerRemoveOutput(Model):
    """Output of ``ContainerRemove``."""

    id: str
    name: str
    node: str


class ContainerExportInput(Model):
    """Input of ``ContainerExport``: a tar of the container's filesystem at ``output``.

    ``output`` is an absolute path on the container's node, at or below one of the node's export
    directories (its own ``<state_dir>/nodes/<node>/exports`` and the node's
    ``allowed_export_paths``; anything else is ``Forbidden``); its directory must exist and must
    not be reached through a symlink, and an existing regular file or symlink there is replaced
    (never followed).
    """

    container: ContainerReference
    output: Annotated[str, Field(min_length=2, max_length=4096)]

    @field_validator("output")
    @classmethod
    def _absolute_output(cls, value: str) -> str:
        parts = value.split("/")
        if not value.startswith("/") or value.endswith("/") or ".." in parts or "\x00" in value:
            raise ValueError(f"output must be an absolute file path without '..', got {value!r}")
        return value


class ContainerExportOutput(Model):
    """Output of ``ContainerExport``."""

    id: str
    name: str
    node: str
    output: str
    size_bytes: int


class FleetSelector(Model):
    """Which containers a fleet restart takes; every given criterion must match (AND).

    ``ids`` are container ids or names; ``labels`` must all be present with these values.
    """

    ids: list[ContainerReference] = Field(default_factory=list, max_length=MAX_SELECTOR_IDS)
    labels: Labels = Field(default_factory=dict)
    node: str | None = None
    state: ContainerState | None = None

    @field_validator("node")
    @classmethod
    def _valid_node(cls, value: str | None) -> str | None:
        return check_node_name(value)


FleetName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,99}$")]
Seconds = Annotated[float, Field(ge=0, le=86_400)]


class FleetCarry(Model):
    """What a fleet restart carries over continue-as-new: set by the workflow, never by callers.

    A run that Temporal did not continue as new from an earlier one (no ``continued_run_id``, or a
    retry or cron run) refuses it with ``InvalidParameter``; the run's record in PostgreSQL is
    named by the first run's id, which Temporal sets, so no carry can point at another run.
    """

    paused: bool = False
    paused_reason: Annotated[Text, Field(max_length=4096)] = ""
    cancelled: bool = False
    acknowledged_failures: Annotated[int, Field(ge=0, le=MAX_FLEET_COUNT)] = 0
    canary_checked: bool = False
    runs: Annotated[int, Field(ge=1, le=INT64_MAX)] = 1


class FleetRestartInput(Model):
    """Input of ``FleetRestart``: the selection (paged from PostgreSQL, not carried) and knobs.

    ``max_failures`` / ``max_failure_ratio`` (of the selection) is the failure budget; on breach
    the run pauses (``on_failure="pause"``, the default) or stops (``"abort"``); with neither set
    the first failure breaches it. A restarted container counts as healthy when it still runs
    with the new task after ``min_healthy`` seconds, reached within ``healthy_deadline`` of its
    restart; a container with a health check counts as healthy when its new task's check says
    ``healthy`` within ``healthy_deadline`` (``unhealthy``, or still ``starting`` then, fails).
    With ``batch_delay`` the run goes in batches of ``max_parallel`` with that pause between
    them; without it, a rolling window. An item whose node agent does not pick it up
    within ``node_wait`` seconds fails with that reason.
    """

    name: FleetName
    selector: FleetSelector = Field(default_factory=FleetSelector)
    max_parallel: Annotated[int, Field(ge=1, le=1000)] = 8
    max_parallel_per_node: Annotated[int, Field(ge=1, le=1000)] | None = None
    canary: Annotated[int, Field(ge=0, le=MAX_FLEET_COUNT)] = 0
    min_healthy: Seconds = 0.0
    healthy_deadline: Seconds = 300.0
    max_failures: Annotated[int, Field(ge=0, le=MAX_FLEET_COUNT)] | None = None
    max_failure_ratio: Annotated[float, Field(ge=0, le=1)] | None = None
    on_failure: Literal["pause", "abort"] = "pause"
    batch_delay: Seconds = 0.0
    stop_timeout: StopTimeout = DEFAULT_STOP_TIMEOUT
    node_wait: Annotated[float, Field(ge=1, le=86_400)] = 120.0
    continue_as_new_after: Annotated[int, Field(ge=1, le=MAX_FLEET_COUNT)] = 1000
    # Internal: only a continue-as-new of the same fleet restart may pass it (see FleetCarry).
    carry: FleetCarry | None = None

    @model_validator(mode="after")
    def _one_budget(self) -> FleetRestartInput:
        if self.max_failures is not None and self.max_failure_ratio is not None:
            raise ValueError("give max_failures or max_failure_ratio, not both")
        return self


class FleetCounts(Model):
    """How many items of a fleet restart (or of one node's share) stand where."""

    total: int = 0
    restarted: int = 0
    failed: int = 0
    busy: int = 0
    in_flight: int = 0
    remaining: int = 0


class FleetProgress(Model):
    """The ``progress`` query's answer, and ``FleetRestart``'s output when it ends.

    ``status``: running, paused, cancelling, completed, aborted or cancelled.
    """

    name: str
    run_id: str
    status: str
    reason: str = ""
    counts: FleetCounts
    nodes: dict[str, FleetCounts] = Field(default_factory=dict)
    errors: list[str] = Field(default_factory=list)


# Every public workflow type and its input and output; schemas/ is generated from this table.
WORKFLOW_CONTRACTS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "ContainerCreate": (ContainerCreateInput, ContainerCreateOutput),
    "ContainerStart": (ContainerStartInput, ContainerStartOutput),
    "ContainerStop": (ContainerStopInput, ContainerStopOutput),
    "ContainerRestart": (ContainerRestartInput, ContainerStartOutput),
    "ContainerPause": (ContainerPauseInput, ContainerPauseOutput),
    "ContainerUnpause": (ContainerPauseInput, ContainerPauseOutput),
    "ContainerRemove": (ContainerRemoveInput, ContainerRemoveOutput),
    "ContainerExport": (ContainerExportInput, ContainerExportOutput),
    "FleetRestart": (FleetRestartInput, FleetProgress),
    "ImagePull": (ImagePullInput, ImagePullOutput),
}
