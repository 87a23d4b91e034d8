"""Seccomp profiles: Docker's default shipped as Debian has it, moby's format converted to OCI."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from berth.errors import InvalidParameter
from berth.runtime.oci_spec import DEFAULT_CAPABILITIES
from berth.runtime.seccomp import (
    DEFAULT_PROFILE_FILE,
    MAX_PROFILE_BYTES,
    SeccompProfile,
    default_profile,
    parse_profile,
    read_profile_fd,
    to_oci,
)

DEBIAN_PROFILE = Path(
    "/usr/share/gocode/src/github.com/docker/docker/profiles/seccomp/default.json"
)


def _profile(**fields: Any) -> SeccompProfile:
    return SeccompProfile.model_validate({"defaultAction": "SCMP_ACT_ERRNO", **fields})


def _names(seccomp: dict[str, Any]) -> set[str]:
    return {name for group in seccomp["syscalls"] for name in group["names"]}


@pytest.mark.skipif(not DEBIAN_PROFILE.exists(), reason="golang-github-docker-docker-dev")
def test_default_profile_file_equals_debians_docker_profile() -> None:
    assert DEFAULT_PROFILE_FILE.read_bytes() == DEBIAN_PROFILE.read_bytes()


def test_default_profile_on_x86_64_refuses_namespaces_mounts_and_keyrings() -> None:
    seccomp = to_oci(
        default_profile(), DEFAULT_CAPABILITIES, machine="x86_64", kernel_release="6.1.0-18-amd64"
    )

    assert seccomp["defaultAction"] == "SCMP_ACT_ERRNO"
    assert seccomp["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    allowed = _names(seccomp)
    assert {"read", "write", "execve", "clone", "chroot", "ptrace", "arch_prctl"} <= allowed
    blocked = {"unshare", "mount", "umount2", "setns", "keyctl", "add_key", "bpf", "reboot"}
    assert not blocked & allowed


def test_default_profile_on_aarch64_maps_to_arm64_and_arm() -> None:
    seccomp = to_oci(
        default_profile(), DEFAULT_CAPABILITIES, machine="aarch64", kernel_release="6.1.0"
    )

    assert seccomp["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "arm_fadvise64_64" in _names(seccomp)
    assert "arch_prctl" not in _names(seccomp)


def test_default_profile_with_cap_sys_admin_allows_mount_and_unshare() -> None:
    caps = [*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"]

    seccomp = to_oci(default_profile(), caps, machine="x86_64", kernel_release="6.1.0")

    assert {"mount", "unshare", "setns", "bpf"} <= _names(seccomp)


def test_clone_without_cap_sys_admin_is_allowed_only_without_namespace_flags() -> None:
    seccomp = to_oci(default_profile(), DEFAULT_CAPABILITIES, machine="x86_64")

    (clone,) = [group for group in seccomp["syscalls"] if group["names"] == ["clone"]]
    assert clone["args"] == [
        {"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
    ]
    (clone3,) = [group for group in seccomp["syscalls"] if group["names"] == ["clone3"]]
    assert (clone3["action"], clone3["errnoRet"]) == (
        "SCMP_ACT_ERRNO",
        38,
    )  # ENOSYS: libc falls back


def test_conversion_drops_groups_whose_minimum_kernel_the_node_lacks() -> None:
    old = to_oci(default_profile(), DEFAULT_CAPABILITIES, machine="x86_64", kernel_release="4.4.0")
    new = to_oci(default_profile(), DEFAULT_CAPABILITIES, machine="x86_64", kernel_release="4.8")

    assert "ptrace" not in _names(old)
    assert "ptrace" in _names(new)


def test_conversion_honours_excludes_by_capability_and_architecture() -> None:
    profile = _profile(
        syscalls=[
            {"names": ["a"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_X"]}},
            {"names": ["b"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64"]}},
            {"name": "c", "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_X", "CAP_Y"]}},
        ]
    )

    assert _names(to_oci(profile, ["CAP_Y"], machine="x86_64")) == {"a"}
    assert _names(to_oci(profile, ["CAP_X", "CAP_Y"], machine="aarch64")) == {"b", "c"}


def test_oci_format_profile_passes_through_with_its_errno() -> None:
    raw = json.dumps(
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}],
        }
    ).encode()

    seccomp = to_oci(parse_profile(raw, "p.json"), [], machine="x86_64")

    assert seccomp == {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}],
    }


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"syscalls": []}',
        b'{"defaultAction": "SCMP_ACT_MAYBE"}',
        b'{"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/run/agent.sock"}',
        b'{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}',
        b'{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["X"], '
        b'"archMap": [{"architecture": "X"}]}',
        b'{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "a", "names": ["b"], '
        b'"action": "SCMP_ACT_ALLOW"}]}',
    ],
)
def test_profile_that_is_not_one_is_invalid_parameter_naming_the_field(raw: bytes) -> None:
    with pytest.raises(InvalidParameter, match=r"config\.seccomp_profile: p\.json"):
        parse_profile(raw, "p.json")


def test_profile_file_over_the_size_bound_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (MAX_PROFILE_BYTES + 1))
    fd = os.open(big, os.O_PATH)
    try:
        with pytest.raises(InvalidParameter, match="larger than"):
            read_profile_fd(fd, str(big))
    finally:
        os.close(fd)


def test_profile_that_is_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_PATH)
    try:
        with pytest.raises(InvalidParameter, match="not a regular file"):
            read_profile_fd(fd, str(fifo))
    finally:
        os.close(fd)
