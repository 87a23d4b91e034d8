"""Confinement on the real stack: Docker's default seccomp profile, and node permissions.

A default container runs under Docker's default profile (``Seccomp: 2``): creating a user
namespace, mounting and joining a keyring fail with EPERM while ordinary programs run. The same
attacks succeed without the filter (on a node that permits ``unconfined``), which shows that the
filter is what stops them. Unconfined, a profile outside the node's allowed directories and host
networking are refused with ``Forbidden`` unless the node permits them.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import secrets
import shutil
import struct
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from berth.activities.mount import MountActivities
from berth.activities.network import NetworkActivities
from berth.activities.shim import ShimActivities
from berth.activities.spec import SpecActivities
from berth.activities.task import TaskActivities
from berth.container_logs import read_entries
from berth.contract import ContainerConfig, NetworkMode
from berth.errors import Forbidden, InvalidParameter
from berth.runtime.image import DEFAULT_REF
from berth.runtime.seccomp import DEFAULT_PROFILE_FILE
from berth.steps import (
    ContainerRef,
    CreateShimInput,
    MountRootfsInput,
    NetworkInput,
    ReleaseRootfsInput,
    WriteSpecInput,
)
from tests.integration.conftest import BIND_ROOT, SECCOMP_ROOT, Stack, force_remove

X86_64_KEYCTL = 250
KEYCTL_JOIN_SESSION_KEYRING = 1

# Refused by the default profile; each prints "<what>=<exit code>".
ATTACKS = (
    "grep Seccomp: /proc/self/status; "
    "unshare -U true; echo unshare=$?; "
    "mount -t tmpfs none /mnt; echo mount=$?; "
    "/tools/keyctl; echo keyctl=$?; "
    "echo ordinary $(echo ok | tr a-z A-Z); "
    "sleep 3600"
)


def syscall_program(number: int, arg0: int = 0, arg1: int = 0) -> bytes:
    """A static x86-64 ELF that makes one syscall and exits 0, or with its errno if it failed.

    busybox has no ``keyctl``; this is the smallest program that has.
    """
    code = (
        b"\xb8" + struct.pack("<I", number)  # mov eax, number
        + b"\xbf" + struct.pack("<I", arg0)  # mov edi, arg0
        + b"\xbe" + struct.pack("<I", arg1)  # mov esi, arg1
        + b"\x31\xd2"  # xor edx, edx
        + b"\x0f\x05"  # syscall
        + b"\x31\xff"  # xor edi, edi
        + b"\x85\xc0"  # test eax, eax
        + b"\x79\x04"  # jns exit
        + b"\xf7\xd8"  # neg eax
        + b"\x89\xc7"  # mov edi, eax
        + b"\xb8\x3c\x00\x00\x00"  # exit: mov eax, 60 (exit)
        + b"\x0f\x05"  # syscall
    )  # fmt: skip
    base, headers = 0x400000, 64 + 56
    size = headers + len(code)
    elf_header = (
        b"\x7fELF\x02\x01\x01" + bytes(9)
        + struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, base + headers, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    )  # fmt: skip
    program_header = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    return elf_header + program_header + code


@pytest.fixture
def tools(bind_dir: Path) -> Path:
    """A bind source holding the keyctl program."""
    if platform.machine() != "x86_64":
        pytest.skip("the keyctl program is x86-64 machine code")
    bind_dir.mkdir(parents=True)
    program = bind_dir / "keyctl"
    program.write_bytes(syscall_program(X86_64_KEYCTL, KEYCTL_JOIN_SESSION_KEYRING))
    program.chmod(0o755)
    return bind_dir


async def _logs_with(stack: Stack, container_id: str, text: bytes) -> str:
    for _ in range(100):
        logs = await stack.berth.logs(container_id)
        if text in logs:
            return logs.decode()
        await asyncio.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared: {logs!r}")


def _results(logs: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in logs.splitlines() if "=" in line and " " not in line)


async def test_default_container_refuses_userns_mount_and_keyctl_while_programs_run(
    stack: Stack, tools: Path
) -> None:
    container_id = await stack.create(
        cmd=["sh", "-c", ATTACKS],
        binds=[{"source": str(tools), "target": "/tools", "read_only": True}],
    )

    await stack.berth.start(container_id)

    logs = await _logs_with(stack, container_id, b"ordinary OK")
    assert "Seccomp:\t2" in logs
    assert _results(logs) == {"unshare": "1", "mount": "1", "keyctl": "1"}  # keyctl: EPERM
    # EPERM, as each says: busybox's mount words it as "permission denied".
    assert "unshare(0x10000000): Operation not permitted" in logs
    assert "mount: permission denied" in logs
    assert (await stack.berth.inspect(container_id))["SeccompProfile"] == "default"


async def test_unconfined_is_forbidden_where_the_node_does_not_permit_it(stack: Stack) -> None:
    container_id = await stack.create(seccomp_profile="unconfined")

    with pytest.raises(Forbidden, match=r"config\.seccomp_profile: unconfined is not permitted"):
        await stack.berth.start(container_id)

    described = await stack.berth.inspect(container_id)
    assert (described["State"]["Running"], described["SeccompProfile"]) == (False, "unconfined")
    trace = await stack.footprint(container_id)
    assert (trace.rootfs_mounts, trace.netns, trace.containerd_container) == (0, False, False)


async def test_seccomp_profile_outside_the_allowed_dirs_is_forbidden_at_create(
    stack: Stack,
) -> None:
    with pytest.raises(Forbidden, match=r"config\.seccomp_profile: host path /etc/passwd"):
        await stack.create(seccomp_profile="/etc/passwd")


@pytest.fixture
def seccomp_dir() -> Iterator[Path]:
    """A fresh directory under the allowed seccomp root, removed afterwards (links unfollowed)."""
    directory = SECCOMP_ROOT / f"t-{uuid.uuid4().hex[:8]}"
    directory.mkdir(parents=True)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


async def test_seccomp_profile_linked_out_of_the_allowed_dir_is_forbidden_at_start(
    seccomp_dir: Path,
    stack: Stack,
) -> None:
    link = seccomp_dir / f"escape-{uuid.uuid4().hex[:8]}.json"
    link.symlink_to(DEFAULT_PROFILE_FILE)  # a real profile, but outside the allowed directory
    container_id = await stack.create(seccomp_profile=str(link))

    with pytest.raises(Forbidden, match=r"config\.seccomp_profile: host path .*resolved to"):
        await stack.berth.start(container_id)

    assert (await stack.footprint(container_id)).rootfs_mounts == 0


async def test_seccomp_profile_that_is_not_one_is_invalid_parameter_at_start(
    seccomp_dir: Path,
    stack: Stack,
) -> None:
    bad = seccomp_dir / f"bad-{uuid.uuid4().hex[:8]}.json"
    bad.write_text('{"defaultAction": "SCMP_ACT_SOMETIMES"}')
    container_id = await stack.create(seccomp_profile=str(bad))

    with pytest.raises(InvalidParameter, match=r"config\.seccomp_profile: .* not a valid"):
        await stack.berth.start(container_id)


async def test_custom_seccomp_profile_under_the_allowed_dir_is_applied(
    seccomp_dir: Path, stack: Stack
) -> None:
    # Docker's default without mkdir: mkdir fails, everything else runs as by default.
    profile = json.loads(DEFAULT_PROFILE_FILE.read_text())
    for name in ("mkdir", "mkdirat"):
        profile["syscalls"][0]["names"].remove(name)
    path = seccomp_dir / f"no-mkdir-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps(profile))
    script = "mkdir /tmp/new; echo mkdir=$?; echo ordinary $(echo ok | tr a-z A-Z); sleep 3600"
    container_id = await stack.create(cmd=["sh", "-c", script], seccomp_profile=str(path))

    await stack.berth.start(container_id)

    logs = await _logs_with(stack, container_id, b"ordinary OK")
    assert _results(logs)["mkdir"] == "1"
    assert "Operation not permitted" in logs
    assert (await stack.berth.inspect(container_id))["SeccompProfile"] == str(path)


async def test_host_network_is_forbidden_where_the_node_does_not_permit_it(stack: Stack) -> None:
    container_id = await stack.create(network_mode="host")

    with pytest.raises(Forbidden, match=r"config\.network_mode: host networking is not permitted"):
        await stack.berth.start(container_id)

    trace = await stack.footprint(container_id)
    assert (trace.rootfs_mounts, trace.containerd_container, trace.task_status) == (0, False, None)


@dataclass
class PermissiveNode:
    """The node's steps with every permission on: run a container through them directly."""

    stack: Stack
    spec: SpecActivities
    started: list[tuple[str, NetworkMode]]

    async def run(self, config: ContainerConfig, until: bytes) -> str:
        stack, node = self.stack, self.stack.settings.node
        paths, runtime = stack.settings.node_paths(), stack.runtime
        container_id = secrets.token_hex(32)
        self.started.append((container_id, config.network_mode))
        mounted = await MountActivities(stack.sessions, runtime.containerd, paths).mount_rootfs(
            MountRootfsInput(container_id=container_id, node=node, image=DEFAULT_REF)
        )
        attached = await NetworkActivities(stack.sessions, runtime.cni, paths).attach_network(
            NetworkInput(container_id=container_id, node=node, mode=config.network_mode)
        )
        written = await self.spec.write_spec(
            WriteSpecInput(
                container_id=container_id,
                node=node,
                config=config,
                image_config=mounted.image_config,
                rootfs=mounted.target,
                netns=attached.netns,
            )
        )
        shim = ShimActivities(runtime.containerd, paths, allowed_host_paths=[BIND_ROOT])
        await shim.create_shim(
            CreateShimInput(
                container_id=container_id,
                node=node,
                image=DEFAULT_REF,
                spec=written.spec,
                labels={},
                binds=config.binds,
            )
        )
        await TaskActivities(runtime.containerd).start_task(
            ContainerRef(container_id=container_id, node=node)
        )
        for _ in range(100):
            batches = read_entries(paths.log(container_id))
            logs = b"".join(entry.line for batch in batches for entry in batch)
            if until in logs:
                return logs.decode()
            await asyncio.sleep(0.1)
        raise AssertionError(f"{until!r} never appeared: {logs!r}")

    async def release(self) -> None:
        stack, node = self.stack, self.stack.settings.node
        paths, runtime = stack.settings.node_paths(), stack.runtime
        for container_id, mode in self.started:
            await force_remove(stack, container_id)
            await MountActivities(stack.sessions, runtime.containerd, paths).release_rootfs(
                ReleaseRootfsInput(container_id=container_id, node=node)
            )
            await NetworkActivities(stack.sessions, runtime.cni, paths).detach_network(
                NetworkInput(container_id=container_id, node=node, mode=mode)
            )


@pytest.fixture
async def permissive(stack: Stack) -> AsyncIterator[PermissiveNode]:
    spec = SpecActivities(
        stack.settings.node_paths(),
        allowed_host_paths=[BIND_ROOT],
        allow_unconfined_seccomp=True,
        allow_host_network=True,
    )
    node = PermissiveNode(stack, spec, [])
    yield node
    await node.release()


async def test_unconfined_where_permitted_runs_without_a_filter_and_the_attacks_succeed(
    permissive: PermissiveNode, tools: Path
) -> None:
    config = ContainerConfig.model_validate(
        {
            "name": "unconfined",
            "image": DEFAULT_REF,
            "cmd": ["sh", "-c", ATTACKS],
            "network_mode": "none",
            "seccomp_profile": "unconfined",
            "binds": [{"source": str(tools), "target": "/tools", "read_only": True}],
        }
    )

    logs = await permissive.run(config, b"ordinary OK")

    assert "Seccomp:\t0" in logs
    # Without the filter only the capability set stops mount; the rest goes through.
    results = _results(logs)
    assert (results["unshare"], results["keyctl"]) == ("0", "0")
    assert results["mount"] != "0"


async def test_host_network_where_permitted_shares_the_hosts_network_namespace(
    permissive: PermissiveNode,
) -> None:
    config = ContainerConfig(
        name="hostnet",
        image=DEFAULT_REF,
        cmd=["sh", "-c", "echo netns=$(readlink /proc/self/ns/net); sleep 3600"],
        network_mode=NetworkMode.HOST,
    )

    logs = await permissive.run(config, b"netns=")

    assert _results(logs)["netns"] == os.readlink("/proc/self/ns/net")
