"""The OCI runtime spec of a container, as containerd's default spec plus docker's merge rules.

``build_spec`` is a pure function of its arguments (it only reads the rootfs' ``/etc/passwd``
and ``/etc/group`` to resolve a named user), so the spec step can rebuild it on every retry.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from berth import capabilities
from berth.contract import BindMount, ContainerConfig, VolumeMount
from berth.errors import InvalidParameter
from berth.runtime import rootfs_files
from berth.runtime.seccomp import SeccompProfile, default_profile, to_oci

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CGROUP_PARENT = "/berth"

# Docker's (and containerd's) default set; a container's own comes from
# berth.capabilities.container_capabilities.
DEFAULT_CAPABILITIES = list(capabilities.DEFAULT_CAPABILITIES)
# The CFS period Docker uses with --cpus (100 ms, in microseconds).
CPU_PERIOD_US = 100_000
# An rlimit of -1 (unlimited) is RLIM_INFINITY in the spec (an unsigned 64-bit integer).
RLIM_INFINITY = 2**64 - 1
# Docker's only default rlimit, containerd's: 1024 open files.
DEFAULT_RLIMITS = {"nofile": (1024, 1024)}
# Docker's default options of a --tmpfs mount, before the container's own.
TMPFS_DEFAULT_OPTIONS = ("noexec", "nosuid", "nodev")
# A tmpfs option and its opposite: the container's choice replaces the default's.
_OPPOSITES = {
    "rw": "ro",
    "exec": "noexec",
    "suid": "nosuid",
    "dev": "nodev",
    "atime": "noatime",
    "diratime": "nodiratime",
    "relatime": "norelatime",
    "strictatime": "nostrictatime",
    "sync": "async",
}
MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def _mount(destination: str, kind: str, source: str, *options: str) -> dict[str, Any]:
    return {"destination": destination, "type": kind, "source": source, "options": [*options]}


def _default_mounts(shm_bytes: int) -> list[dict[str, Any]]:
    mount = _mount
    return [
        mount("/proc", "proc", "proc", "nosuid", "noexec", "nodev"),
        mount("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            "nosuid",
            "noexec",
            "nodev",
            "mode=1777",
            f"size={shm_bytes}",
        ),
        mount("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
        mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
        mount("/sys/fs/cgroup", "cgroup", "cgroup", "nosuid", "noexec", "nodev", "relatime", "ro"),
    ]


def process_args(config: ContainerConfig, image_config: dict[str, Any]) -> list[str]:
    """Entrypoint + cmd by docker's rules (daemon ``merge``).

    A container entrypoint replaces the image's and drops the image's Cmd unless the container
    gives a cmd; a container cmd replaces the image's Cmd. An explicitly empty entrypoint clears
    the image's entrypoint but keeps its Cmd.

    Raises:
        InvalidParameter: neither the container nor the image gives a command.
    """
    entrypoint = config.entrypoint
    cmd = config.cmd
    if not entrypoint:
        if not cmd:
            cmd = image_config.get("Cmd") or []
        if entrypoint is None:
            entrypoint = image_config.get("Entrypoint") or []
    args = [*(entrypoint or []), *(cmd or [])]
    if not args:
        raise InvalidParameter("no command specified: the container and its image give none")
    return args


def merge_env(*layers: list[str]) -> list[str]:
    """Later ``KEY=VALUE`` lists win by key; each key keeps its first position (docker's rule)."""
    merged: dict[str, str] = {}
    for layer in layers:
        for entry in layer:
            key = entry.partition("=")[0]
            merged[key] = entry
    return list(merged.values())


def _read_in_rootfs(rootfs: Path, relative: str) -> str | None:
    """A file of the rootfs, resolved without ever leaving it; None when it has none.

    Raises:
        InvalidParameter: the file is not a regular file or is over the size bound.
    """
    try:
        data = rootfs_files.read_file(rootfs, relative)
    except FileNotFoundError:  # no rootfs at all: nothing to resolve names against
        return None
    return None if data is None else data.decode(errors="replace")


def _entries(text: str | None) -> list[list[str]]:
    if not text:
        return []
    return [
        line.split(":")
        for line in text.splitlines()
        if line.strip() and not line.startswith("#") and line.count(":") >= 2
    ]


def resolve_user(user: str, rootfs: Path) -> tuple[int, int, list[int]]:
    """``user[:group]`` (names or numbers) as (uid, gid, additional gids), like runc's getUser.

    Raises:
        InvalidParameter: a named user or group is not in the rootfs' passwd or group file.
    """
    name, _, group = user.partition(":")
    # Only the files a lookup needs are read: the empty user (root) reads none.
    passwd = _entries(_read_in_rootfs(rootfs, "etc/passwd")) if name else []
    uid, gid, login = 0, 0, ""
    if name:
        match = next((e for e in passwd if name in (e[0], e[2])), None)
        if match is not None and len(match) >= 4:
            login, uid, gid = match[0], _int(match[2], user), _int(match[3], user)
        elif name.isdigit():
            uid = int(name)
        else:
            raise InvalidParameter(
                f"unable to find user {name}: no matching entries in passwd file"
            )
    groups = _entries(_read_in_rootfs(rootfs, "etc/group")) if group or login else []
    if group:
        match = next((e for e in groups if group in (e[0], e[2])), None)
        if match is not None:
            gid = _int(match[2], user)
        elif group.isdigit():
            gid = int(group)
        else:
            raise InvalidParameter(
                f"unable to find group {group}: no matching entries in group file"
            )
    additional = sorted(
        {
            _int(e[2], user)
            for e in groups
            if login and len(e) >= 4 and login in e[3].split(",") and _int(e[2], user) != gid
        }
    )
    return uid, gid, additional


def _int(value: str, user: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InvalidParameter(f"user {user!r}: malformed passwd or group entry") from None


@functools.cache
def swap_limit_supported(cgroup_root: Path = Path("/sys/fs/cgroup")) -> bool:
    """Whether this node's kernel limits swap per cgroup (cgroup v1's memsw files, or v2's
    memory.swap.max), as dockerd's sysinfo asks before it sets MemorySwap."""
    if (cgroup_root / "memory" / "memory.memsw.limit_in_bytes").exists():
        return True
    return any(cgroup_root.glob("*/memory.swap.max"))


def _resources(config: ContainerConfig, cpu_count: int, swap_limit: bool) -> dict[str, Any]:
    resources: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    limits = config.resources
    if limits.nano_cpus and limits.nano_cpus > cpu_count * 1_000_000_000:
        raise InvalidParameter(
            f"config.resources.nano_cpus: range of CPUs is from 0.01 to {cpu_count}.00, as there "
            f"are only {cpu_count} CPUs available"
        )
    if limits.memory_bytes is not None:
        resources["memory"] = {"limit": limits.memory_bytes}
        # swap is memory plus swap, as Docker's MemorySwap (cgroup v1's memsw limit); a kernel
        # without swap accounting gets none, as dockerd leaves it out there (runc would fail).
        if swap_limit:
            resources["memory"]["swap"] = limits.effective_swap
    cpu: dict[str, Any] = {}
    if limits.cpu_shares is not None:
        cpu["shares"] = limits.cpu_shares
    if limits.nano_cpus:
        cpu["period"] = CPU_PERIOD_US
        cpu["quota"] = limits.nano_cpus * CPU_PERIOD_US // 1_000_000_000
    if cpu:
        resources["cpu"] = cpu
    if limits.pids_limit is not None:
        resources["pids"] = {"limit": limits.pids_limit}
    return resources


def _rlimits(config: ContainerConfig) -> list[dict[str, Any]]:
    """Docker's default nofile 1024:1024, replaced or joined by the container's ulimits."""
    limits = dict(DEFAULT_RLIMITS)
    limits.update({u.name: (u.soft, u.hard) for u in config.ulimits})
    return [
        {
            "type": f"RLIMIT_{name.upper()}",
            "hard": RLIM_INFINITY if hard == -1 else hard,
            "soft": RLIM_INFINITY if soft == -1 else soft,
        }
        for name, (soft, hard) in limits.items()
    ]


def tmpfs_options(options: str) -> list[str]:
    """Docker's ``noexec,nosuid,nodev`` with the container's options merged over them: a flag
    replaces its opposite, a ``KEY=VALUE`` an earlier one of its key."""
    merged: list[str] = list(TMPFS_DEFAULT_OPTIONS)
    opposite = {**_OPPOSITES, **{no: yes for yes, no in _OPPOSITES.items()}}
    for option in filter(None, options.split(",")):
        key = option.partition("=")[0]
        merged = [
            kept
            for kept in merged
            if kept != option and kept != opposite.get(option) and kept.partition("=")[0] != key
        ]
        merged.append(option)
    return merged


def _depth(mount: dict[str, Any]) -> int:
    return len([part for part in str(mount["destination"]).split("/") if part])


def _tmpfs_mounts(config: ContainerConfig) -> list[dict[str, Any]]:
    return [
        _mount(target, "tmpfs", "tmpfs", *tmpfs_options(options))
        for target, options in config.tmpfs.items()
    ]


def _bind(bind: BindMount, source: str) -> dict[str, Any]:
    """The mount of ``bind`` from ``source``: the host path as the node resolved it, not as the
    client wrote it (``berth.host_paths``)."""
    mode = "ro" if bind.read_only else "rw"
    return {
        "destination": bind.target,
        "type": "bind",
        "source": source,
        "options": ["rbind", "rprivate", mode],
    }


def _volume(volume: VolumeMount, source: str) -> dict[str, Any]:
    """The mount of a named volume from its directory on the node (``berth.volumes_host``)."""
    mode = "ro" if volume.read_only else "rw"
    return {
        "destination": volume.target,
        "type": "bind",
        "source": source,
        "options": ["rbind", "rprivate", mode],
    }


def _etc_bind(target: str, source: Path) -> dict[str, Any]:
    """A generated /etc file, bound as dockerd binds its own (read-write, private)."""
    return {
        "destination": target,
        "type": "bind",
        "source": str(source),
        "options": ["rbind", "rprivate", "rw"],
    }


def client_bind_indexes(spec: dict[str, Any], binds: Sequence[BindMount]) -> list[int]:
    """The index in ``spec["mounts"]`` of each of ``binds``' mounts, in the order of ``binds``.

    Each bind's mount is the next bind-type mount at its target, as ``build_spec`` lays them out.

    Raises:
        InvalidParameter: the spec has no mount for one of ``binds``.
    """
    mounts = spec.get("mounts", [])
    found: list[int] = []
    for index, bind in enumerate(binds):
        at = next(
            (
                i
                for i, mount in enumerate(mounts)
                if i not in found
                and mount.get("type") == "bind"
                and mount.get("destination") == bind.target
            ),
            None,
        )
        if at is None:
            raise InvalidParameter(f"config.binds[{index}]: the container's spec has no such mount")
        found.append(at)
    return found


def with_bind_sources(
    spec: dict[str, Any], binds: Sequence[BindMount], sources: Sequence[str]
) -> dict[str, Any]:
    """``spec`` with the mounts of ``binds`` taken from ``sources`` (a new dict; pure)."""
    mounts = list(spec.get("mounts", []))
    for at, bind, source in zip(client_bind_indexes(spec, binds), binds, sources, strict=True):
        mounts[at] = _bind(bind, source)
    return {**spec, "mounts": mounts}


def build_spec(
    container_id: str,
    config: ContainerConfig,
    image_config: dict[str, Any],
    rootfs: Path,
    netns: Path | None,
    *,
    bind_sources: Sequence[str] | None = None,
    seccomp: SeccompProfile | Literal["default"] | None = "default",
    etc_files: Sequence[tuple[str, Path]] = (),
    volume_sources: Sequence[str] = (),
    cpu_count: int | None = None,
    swap_limit: bool | None = None,
) -> dict[str, Any]:
    """The OCI runtime spec (as JSON-ready dict) for ``config`` run from ``rootfs``.

    Args:
        container_id: Berth's container id; names the cgroup and gives the hostname.
        config: the container's config (command, env, user, working dir, resources).
        image_config: the ``config`` section of the image's OCI config.
        rootfs: the mounted root filesystem.
        netns: the network namespace to join; None runs in the host's network.
        bind_sources: the host paths of ``config.binds`` as resolved and checked on the node
            (``berth.host_paths``); None takes the config's own (for tests).
        seccomp: the profile to filter syscalls with, for the container's capabilities on this
            node; ``"default"`` is Docker's default profile, None none (unconfined).
        etc_files: (path in the container, file on the node) of the generated ``/etc/hosts``,
            ``/etc/hostname`` and ``/etc/resolv.conf``, bound over the image's as dockerd does
            (a client's bind of the same path replaces it, as in dockerd).
        volume_sources: the node's directory of each of ``config.volumes``, in their order.
        cpu_count: the node's CPUs, which ``--cpus`` may not exceed (None: this machine's).
        swap_limit: whether the node limits swap per cgroup (None: ask this machine's kernel).

    Raises:
        InvalidParameter: no command, a user or group that the rootfs does not know, or more
            CPUs than the node has.
    """
    hostname = config.hostname or container_id[:12]
    uid, gid, additional_gids = resolve_user(config.user or image_config.get("User") or "", rootfs)
    user: dict[str, Any] = {"uid": uid, "gid": gid}
    if additional_gids:
        user["additionalGids"] = additional_gids
    namespaces: list[dict[str, str]] = [
        {"type": "pid"},
        {"type": "ipc"},
        {"type": "uts"},
        {"type": "mount"},
    ]
    if netns is not None:
        namespaces.append({"type": "network", "path": str(netns)})
    caps = capabilities.container_capabilities(config.cap_add, config.cap_drop)
    sources = [bind.source for bind in config.binds] if bind_sources is None else bind_sources
    binds = zip(config.binds, sources, strict=True)
    volumes = zip(config.volumes, volume_sources, strict=True)
    linux_seccomp: dict[str, Any] = {}
    if seccomp is not None:
        profile = default_profile() if seccomp == "default" else seccomp
        linux_seccomp["seccomp"] = to_oci(profile, caps)
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": config.tty,
            "user": user,
            "args": process_args(config, image_config),
            "env": merge_env(
                [DEFAULT_PATH, f"HOSTNAME={hostname}"],
                list(image_config.get("Env") or []),
                config.env,
            ),
            "cwd": config.working_dir or image_config.get("WorkingDir") or "/",
            "capabilities": {
                "bounding": caps,
                "effective": list(caps),
                "permitted": list(caps),
            },
            "rlimits": _rlimits(config),
            "oomScoreAdj": config.oom_score_adj,
            "noNewPrivileges": True,
        },
        "root": {"path": str(rootfs), "readonly": config.read_only_rootfs},
        "hostname": hostname,
        "mounts": [
            mount
            for mount in _default_mounts(config.shm_size)
            if mount["destination"] not in config.tmpfs
        ]
        # Parents before children, as dockerd sorts them (stable: binds keep their order).
        + sorted(
            _tmpfs_mounts(config)
            + [
                _etc_bind(target, source)
                for target, source in etc_files
                if target not in {bind.target.rstrip("/") for bind in config.binds}
                and target not in {volume.target.rstrip("/") for volume in config.volumes}
            ]
            + [_bind(bind, source) for bind, source in binds]
            + [_volume(volume, source) for volume, source in volumes],
            key=_depth,
        ),
        "linux": {
            "resources": _resources(
                config,
                cpu_count or len(os.sched_getaffinity(0)),
                swap_limit_supported() if swap_limit is None else swap_limit,
            ),
            "cgroupsPath": f"{CGROUP_PARENT}/{container_id}",
            "namespaces": namespaces,
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
            **linux_seccomp,
        },
    }
