"""A container as ``docker inspect`` shows it (moby's ``types.ContainerJSON``), and as a row of
``docker ps --format`` (its ``{{.ID}}``, ``{{.Names}}``, ``{{.Status}}``, ...).

Pure and duck-typed: a container is any object with the attributes of Berth's container record
(``id``, ``name``, ``image``, ``node``, ``state``, ``config`` as the contract's JSON, ``pid``,
``exit_code``, ``error``, ``ip``, ``operation``, ``restart_count``, ``created_at``,
``started_at``, ``finished_at``), so the CLI can read it from any source. Docker's field names
and shapes are kept (``Config.Cmd``, ``HostConfig.Binds``, ``HostConfig.RestartPolicy``,
``HostConfig.Memory``, ``Mounts``, durations in nanoseconds, zero times as Go's); what Berth
adds stays at the top level (``Node``, ``Operation``, ``SeccompProfile``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from berth.cli.status import DOCKER_STATUS, ago, status_words

# Go's zero time as docker prints it for a container never started or never finished.
ZERO_TIME = "0001-01-01T00:00:00Z"
_NANOSECONDS = 1_000_000_000
# docker ps's columns: the header of each field a table template may name.
PS_HEADERS: dict[str, Any] = {
    "ID": "CONTAINER ID",
    "Image": "IMAGE",
    "Command": "COMMAND",
    "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED",
    "Ports": "PORTS",
    "State": "STATE",
    "Status": "STATUS",
    "Size": "SIZE",
    "Names": "NAMES",
    "Labels": "LABELS",
    "Label": lambda name: "LABEL",
    "Mounts": "MOUNTS",
    "Networks": "NETWORKS",
    "LocalVolumes": "LOCAL VOLUMES",
    "Node": "NODE",
    "IP": "IP",
}
# docker ps's default table, with Berth's NODE before NAMES.
PS_DEFAULT_FIELDS = ("ID", "Image", "Command", "RunningFor", "Status", "Ports", "Node", "Names")
PS_DEFAULT_TABLE = "\t".join(f"{{{{.{name}}}}}" for name in PS_DEFAULT_FIELDS)
# docker truncates the command to this many characters unless --no-trunc.
COMMAND_WIDTH = 20
SHORT_ID = 12
# berth.contract.DEFAULT_SHM_BYTES (Docker's 64 MiB), not imported: inspect stays off pydantic.
DEFAULT_SHM_BYTES = 64 * 1024 * 1024


class ContainerRecord(Protocol):
    """What a container record gives the views (Berth's ``containers`` row), read-only."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def image(self) -> str: ...
    @property
    def node(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def pid(self) -> int | None: ...
    @property
    def exit_code(self) -> int | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def ip(self) -> str | None: ...
    @property
    def operation(self) -> str | None: ...
    @property
    def restart_count(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def finished_at(self) -> datetime | None: ...


class HealthRecord(Protocol):
    """What a health record gives (Berth's ``container_health`` row), read-only."""

    @property
    def status(self) -> str: ...
    @property
    def failing_streak(self) -> int: ...
    @property
    def log(self) -> list[dict[str, Any]]: ...


def health_view(record: HealthRecord | None) -> dict[str, Any] | None:
    """``State.Health`` as docker inspect shows it, or None when there is no check."""
    if record is None:
        return None
    return {
        "Status": record.status,
        "FailingStreak": record.failing_streak,
        "Log": list(record.log or []),
    }


def go_time(moment: datetime | None) -> str:
    """RFC 3339 in UTC with nanoseconds trimmed as Go prints them; Go's zero time for none."""
    if moment is None:
        return ZERO_TIME
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"


def _nanoseconds(seconds: float | None) -> int:
    return round((seconds or 0) * _NANOSECONDS)


def _healthcheck(check: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not check:
        return None
    return {
        "Test": list(check.get("test") or []),
        "Interval": _nanoseconds(check.get("interval")),
        "Timeout": _nanoseconds(check.get("timeout")),
        "StartPeriod": _nanoseconds(check.get("start_period")),
        "Retries": check.get("retries", 0),
    }


def bind_spec(bind: Mapping[str, Any]) -> str:
    """A bind as ``HostConfig.Binds`` lists it: ``/host:/container[:ro]``."""
    spec = f"{bind['source']}:{bind['target']}"
    return f"{spec}:ro" if bind.get("read_only") else spec


def _volume_mounts(volumes: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Named volumes as docker's ``Mounts`` shows them (their directory on the node: ``berth
    volume inspect``'s ``Mountpoint``)."""
    return [
        {
            "Type": "volume",
            "Name": volume["name"],
            "Source": "",
            "Destination": volume["target"],
            "Driver": "local",
            "Mode": "ro" if volume.get("read_only") else "",
            "RW": not volume.get("read_only"),
            "Propagation": "",
        }
        for volume in volumes
    ]


def _mounts(binds: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "Type": "bind",
            "Source": bind["source"],
            "Destination": bind["target"],
            "Mode": "ro" if bind.get("read_only") else "",
            "RW": not bind.get("read_only"),
            "Propagation": "rprivate",
        }
        for bind in binds
    ]


def port_bindings(ports: list[Mapping[str, Any]]) -> dict[str, list[dict[str, str]]]:
    """``HostConfig.PortBindings``: what ``-p`` asked for, ``"80/tcp"`` -> host IPs and ports
    (``""`` when the node picks the port)."""
    bindings: dict[str, list[dict[str, str]]] = {}
    for port in ports:
        key = f"{port['container_port']}/{port.get('protocol') or 'tcp'}"
        host_port = port.get("host_port")
        bindings.setdefault(key, []).append(
            {"HostIp": port.get("host_ip") or "", "HostPort": str(host_port) if host_port else ""}
        )
    return bindings


def _memory_swap(resources: Mapping[str, Any]) -> int:
    """``HostConfig.MemorySwap`` as dockerd records it: twice ``Memory`` when only that is set."""
    memory = resources.get("memory_bytes") or 0
    swap = resources.get("memory_swap_bytes") or 0
    return swap if swap or not memory else min(2 * memory, 2**63 - 1)


def resource_knobs(config: Mapping[str, Any]) -> dict[str, Any]:
    """``HostConfig``'s process limits and confinement (``--cpus`` ... ``--cap-drop``), with the
    values dockerd records when none were given (``ShmSize`` 64 MiB, ``MemorySwap`` 2x)."""
    resources = config.get("resources") or {}
    tmpfs = dict(config.get("tmpfs") or {})
    knobs: dict[str, Any] = {
        "NanoCpus": resources.get("nano_cpus") or 0,
        "MemorySwap": _memory_swap(resources),
        "OomScoreAdj": config.get("oom_score_adj") or 0,
        "ShmSize": config.get("shm_size_bytes") or DEFAULT_SHM_BYTES,
        "ReadonlyRootfs": bool(config.get("read_only_rootfs")),
        "CapAdd": list(config.get("cap_add") or []) or None,
        "CapDrop": list(config.get("cap_drop") or []) or None,
        "Ulimits": [
            {"Name": u["name"], "Hard": u["hard"], "Soft": u["soft"]}
            for u in config.get("ulimits") or []
        ]
        or None,
    }
    if tmpfs:  # omitted when empty, as in docker's JSON
        knobs["Tmpfs"] = dict(sorted(tmpfs.items()))
    return knobs


def _security_options(profile: str | None) -> list[str] | None:
    if profile in (None, "default"):
        return None
    return [f"seccomp={profile}"]


def state_view(container: ContainerRecord, health: Mapping[str, Any] | None) -> dict[str, Any]:
    """``State``: docker's status word, flags, pid, exit code, times, and ``Health``."""
    state = str(container.state)
    view: dict[str, Any] = {
        "Status": DOCKER_STATUS.get(state, state),
        "Running": state in ("running", "paused", "stopping"),
        "Paused": state == "paused",
        "Restarting": False,
        "OOMKilled": False,
        "Dead": state == "dead",
        "Pid": container.pid or 0,
        "ExitCode": container.exit_code or 0,
        "Error": container.error or "",
        "StartedAt": go_time(container.started_at),
        "FinishedAt": go_time(container.finished_at),
    }
    if health is not None:
        view["Health"] = dict(health)
    return view


def inspect_view(
    container: ContainerRecord,
    health: Mapping[str, Any] | None = None,
    log_path: str = "",
    ports: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The container as docker inspect's JSON object (``health``: ``State.Health``, if any;
    ``ports``: ``NetworkSettings.Ports``, what the node publishes now)."""
    config = dict(container.config or {})
    entrypoint = config.get("entrypoint")
    cmd = config.get("cmd")
    argv = [*(entrypoint or []), *(cmd or [])]
    binds = list(config.get("binds") or [])
    volumes = list(config.get("volumes") or [])
    restart = config.get("restart_policy") or {}
    resources = config.get("resources") or {}
    network_mode = str(config.get("network_mode") or "bridge")
    ip = container.ip or ""
    return {
        "Id": container.id,
        "Created": go_time(container.created_at),
        "Path": argv[0] if argv else "",
        "Args": argv[1:],
        "State": state_view(container, health),
        "Image": container.image,
        "LogPath": log_path,
        "Name": "/" + container.name,
        "RestartCount": container.restart_count,
        "Driver": "overlayfs",
        "Platform": "linux",
        "HostConfig": {
            "Binds": [
                *(bind_spec(bind) for bind in binds),
                *(bind_spec({**volume, "source": volume["name"]}) for volume in volumes),
            ]
            or None,
            "NetworkMode": network_mode,
            "RestartPolicy": {
                "Name": restart.get("name", "no"),
                "MaximumRetryCount": restart.get("maximum_retry_count", 0),
            },
            "AutoRemove": bool(config.get("auto_remove")),
            "Memory": resources.get("memory_bytes") or 0,
            "CpuShares": resources.get("cpu_shares") or 0,
            "PidsLimit": resources.get("pids_limit"),
            "SecurityOpt": _security_options(config.get("seccomp_profile")),
            "PortBindings": port_bindings(config.get("ports") or []),
            "PublishAllPorts": bool(config.get("publish_all")),
            "ExtraHosts": list(config.get("extra_hosts") or []) or None,
            "Dns": list(config.get("dns") or []),
            "DnsSearch": list(config.get("dns_search") or []),
            "DnsOptions": list(config.get("dns_options") or []),
            **resource_knobs(config),
        },
        "Mounts": _mounts(binds) + _volume_mounts(volumes),
        "Config": {
            "Hostname": config.get("hostname") or container.id[:SHORT_ID],
            "Domainname": "",
            "User": config.get("user", ""),
            "AttachStdin": False,
            "AttachStdout": False,
            "AttachStderr": False,
            "Tty": False,
            "OpenStdin": False,
            "StdinOnce": False,
            "Env": list(config.get("env") or []),
            "Cmd": cmd,
            "Healthcheck": _healthcheck(config.get("healthcheck")),
            "Image": container.image,
            "Volumes": None,
            "WorkingDir": config.get("working_dir", ""),
            "Entrypoint": entrypoint,
            # A Go map: docker's JSON lists its keys sorted (PostgreSQL's JSONB reorders them).
            "Labels": dict(sorted((config.get("labels") or {}).items())),
        },
        "NetworkSettings": {
            "Ports": dict(ports or {}),
            "IPAddress": ip,
            "Networks": {network_mode: {"IPAddress": ip}},
        },
        "Node": container.node,
        "Operation": container.operation,
        # The profile the node applies: Docker's default unless the config names another.
        "SeccompProfile": config.get("seccomp_profile") or "default",
    }


def command_text(config: Mapping[str, Any], no_trunc: bool) -> str:
    """docker ps's COMMAND: the quoted argv, cut to 20 characters with ``…`` unless no_trunc."""
    command = " ".join([*(config.get("entrypoint") or []), *(config.get("cmd") or [])])
    if not no_trunc and len(command) > COMMAND_WIDTH:
        command = command[: COMMAND_WIDTH - 1] + "…"
    return f'"{command}"'


def ps_view(
    container: ContainerRecord,
    health: str | None,
    now: datetime,
    no_trunc: bool = False,
    ports: str = "",
) -> dict[str, Any]:
    """docker ps's fields of one container, for ``--format`` (``health``: the check's status;
    ``ports``: the PORTS column, ``0.0.0.0:18080->80/tcp, ...``)."""
    config = container.config or {}
    labels: dict[str, str] = dict(sorted((config.get("labels") or {}).items()))
    label: Callable[[str], str] = lambda name: labels.get(name, "")  # noqa: E731
    binds = config.get("binds") or []
    volumes = config.get("volumes") or []
    state = str(container.state)
    return {
        "ID": container.id if no_trunc else container.id[:SHORT_ID],
        "Image": container.image,
        "Command": command_text(config, no_trunc),
        "CreatedAt": container.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S +0000 UTC"),
        "RunningFor": ago(container.created_at, now),
        "Ports": ports,
        "State": DOCKER_STATUS.get(state, state),
        "Status": status_words(
            state,
            now=now,
            started_at=container.started_at,
            finished_at=container.finished_at,
            exit_code=container.exit_code,
            health=health,
        ),
        "Size": "",
        "Names": container.name,
        "Labels": ",".join(f"{k}={v}" for k, v in labels.items()),
        "Label": label,
        "Mounts": ",".join([*(bind["source"] for bind in binds), *(v["name"] for v in volumes)]),
        "Networks": str(config.get("network_mode") or "bridge"),
        "LocalVolumes": str(len(volumes)),
        "Node": container.node,
        "IP": container.ip or "",
    }
