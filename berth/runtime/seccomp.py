"""Seccomp profiles: Docker's default by default, converted to the OCI spec's ``linux.seccomp``.

Profiles come in moby's format (``archMap``, syscall groups gated by ``includes``/``excludes`` on
capabilities, architectures and minimum kernel) or in the OCI format (``architectures`` and plain
syscall groups); the conversion keeps a group only when its conditions hold for the container's
capability set, the node's architecture and its kernel, as moby's daemon does at container
start. ``seccomp_default.json`` is moby 20.10's ``profiles/seccomp/default.json`` as Debian
ships it in ``golang-github-docker-docker-dev`` (a test checks that they are equal).

Only fields that runc acts on and that need no host resource are carried: ``SCMP_ACT_NOTIFY``
and ``listenerPath`` (a host socket) are refused.
"""

from __future__ import annotations

import functools
import json
import os
import stat
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from berth.errors import InvalidParameter

DEFAULT = "default"
UNCONFINED = "unconfined"
DEFAULT_PROFILE_FILE = Path(__file__).with_name("seccomp_default.json")
# Docker's default profile is 14 kB; a profile file is read with this bound.
MAX_PROFILE_BYTES = 1024 * 1024
FIELD = "config.seccomp_profile"

# uname -m → moby's (libseccomp's) native architecture name.
NATIVE_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "i386": "x86",
    "i686": "x86",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "ppc64le": "ppc64le",
    "ppc64": "ppc64",
    "s390x": "s390x",
    "mips64": "mips64",
    "riscv64": "riscv64",
}
# moby's native architecture name → the OCI/libseccomp architecture it runs as.
SECCOMP_ARCH = {
    "amd64": "SCMP_ARCH_X86_64",
    "x86": "SCMP_ARCH_X86",
    "arm64": "SCMP_ARCH_AARCH64",
    "arm": "SCMP_ARCH_ARM",
    "ppc64le": "SCMP_ARCH_PPC64LE",
    "ppc64": "SCMP_ARCH_PPC64",
    "s390x": "SCMP_ARCH_S390X",
    "mips64": "SCMP_ARCH_MIPS64",
    "riscv64": "SCMP_ARCH_RISCV64",
}

Action = Literal[
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
]
Operator = Literal[
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
]
U64 = Annotated[int, Field(ge=0, lt=2**64)]
Errno = Annotated[int, Field(ge=0, le=4095)]
KernelVersion = Annotated[str, Field(pattern=r"^[0-9]{1,3}\.[0-9]{1,3}$")]


class _Profile(BaseModel):
    # Unknown fields are ignored, as moby's and runc's JSON decoders ignore them.
    model_config = ConfigDict(extra="ignore", frozen=True)


class SeccompArg(_Profile):
    index: Annotated[int, Field(ge=0, le=5)]
    value: U64
    valueTwo: U64 = 0
    op: Operator


class SeccompFilter(_Profile):
    caps: list[str] = Field(default_factory=list)
    arches: list[str] = Field(default_factory=list)
    minKernel: KernelVersion | None = None


class SeccompSyscall(_Profile):
    name: str = ""
    names: list[str] = Field(default_factory=list)
    action: Action
    errnoRet: Errno | None = None
    args: list[SeccompArg] | None = None
    includes: SeccompFilter = Field(default_factory=SeccompFilter)
    excludes: SeccompFilter = Field(default_factory=SeccompFilter)

    @model_validator(mode="after")
    def _one_way_to_name(self) -> SeccompSyscall:
        if self.name and self.names:
            raise ValueError("a syscall group gives 'name' or 'names', not both")
        if not self.name and not self.names:
            raise ValueError("a syscall group names no syscall")
        return self


class SeccompArchMap(_Profile):
    architecture: str
    subArchitectures: list[str] = Field(default_factory=list)


class SeccompProfile(_Profile):
    """A profile in moby's format (a superset of the OCI one)."""

    defaultAction: Action
    defaultErrnoRet: Errno | None = None
    architectures: list[str] = Field(default_factory=list)
    archMap: list[SeccompArchMap] = Field(default_factory=list)
    flags: list[str] = Field(default_factory=list)
    syscalls: list[SeccompSyscall] = Field(default_factory=list)
    listenerPath: Literal[""] = ""

    @model_validator(mode="after")
    def _one_arch_list(self) -> SeccompProfile:
        if self.architectures and self.archMap:
            raise ValueError("a profile gives 'architectures' or 'archMap', not both")
        return self


def parse_profile(raw: bytes, where: str) -> SeccompProfile:
    """A profile from JSON bytes.

    Raises:
        InvalidParameter: not JSON, or not a seccomp profile in moby or OCI format.
    """
    try:
        return SeccompProfile.model_validate(json.loads(raw))
    except ValidationError as err:
        first = err.errors()[0]
        location = ".".join(str(part) for part in first["loc"]) or "profile"
        detail = f"{location}: {first['msg']}"
    except (ValueError, UnicodeDecodeError) as err:
        detail = f"not JSON: {err}"
    raise InvalidParameter(f"{FIELD}: {where} is not a valid seccomp profile ({detail})")


def read_profile_fd(fd: int, where: str) -> SeccompProfile:
    """The profile in the file open (``O_PATH`` is enough) at ``fd``: a regular file, bounded.

    Raises:
        InvalidParameter: not a regular file, larger than ``MAX_PROFILE_BYTES``, or not a profile.
    """
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        raise InvalidParameter(f"{FIELD}: {where} is not a regular file")
    # Reopened for reading through the checked descriptor; O_NONBLOCK in case it changed type.
    reader = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(reader).st_mode):
            raise InvalidParameter(f"{FIELD}: {where} is not a regular file")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(reader, 65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_PROFILE_BYTES:
                raise InvalidParameter(f"{FIELD}: {where} is larger than {MAX_PROFILE_BYTES} bytes")
    finally:
        os.close(reader)
    return parse_profile(b"".join(chunks), where)


@functools.cache
def default_profile() -> SeccompProfile:
    """Docker's default profile, shipped with Berth."""
    return parse_profile(DEFAULT_PROFILE_FILE.read_bytes(), "the default profile")


def _kernel(release: str) -> tuple[int, int]:
    major, _, rest = release.partition(".")
    minor = "".join(c for c in rest.split(".")[0] if c.isdigit()) if rest else "0"
    return int(major or 0), int(minor or 0)


def _at_least(kernel: tuple[int, int], minimum: str) -> bool:
    return kernel >= _kernel(minimum)


def _applies(
    group: SeccompSyscall, caps: Collection[str], arch: str, kernel: tuple[int, int]
) -> bool:
    """moby's rule: every exclude must miss and every include must hold."""
    excluded, included = group.excludes, group.includes
    if arch in excluded.arches or any(cap in caps for cap in excluded.caps):
        return False
    if excluded.minKernel is not None and _at_least(kernel, excluded.minKernel):
        return False
    if included.arches and arch not in included.arches:
        return False
    if not all(cap in caps for cap in included.caps):
        return False
    return included.minKernel is None or _at_least(kernel, included.minKernel)


def to_oci(
    profile: SeccompProfile,
    capabilities: Collection[str],
    *,
    machine: str | None = None,
    kernel_release: str | None = None,
) -> dict[str, Any]:
    """The OCI ``linux.seccomp`` for a container with ``capabilities`` (its bounding set).

    ``machine`` and ``kernel_release`` are the node's (``uname -m`` and ``uname -r``, the
    defaults). Groups whose conditions do not hold on this node for this container are dropped;
    ``archMap`` becomes the node's architecture and its sub-architectures.
    """
    uname = os.uname()
    machine = machine or uname.machine
    arch = NATIVE_ARCH.get(machine, machine)
    kernel = _kernel(kernel_release or uname.release)
    caps = frozenset(capabilities)
    architectures = list(profile.architectures)
    native = SECCOMP_ARCH.get(arch)
    for entry in profile.archMap:
        if entry.architecture == native:
            architectures = [entry.architecture, *entry.subArchitectures]
            break
    syscalls: list[dict[str, Any]] = []
    for group in profile.syscalls:
        if not _applies(group, caps, arch, kernel):
            continue
        syscall: dict[str, Any] = {
            "names": [group.name] if group.name else list(group.names),
            "action": group.action,
        }
        if group.errnoRet is not None:
            syscall["errnoRet"] = group.errnoRet
        if group.args:
            syscall["args"] = [arg.model_dump() for arg in group.args]
        syscalls.append(syscall)
    seccomp: dict[str, Any] = {"defaultAction": profile.defaultAction, "syscalls": syscalls}
    if profile.defaultErrnoRet is not None:
        seccomp["defaultErrnoRet"] = profile.defaultErrnoRet
    if architectures:
        seccomp["architectures"] = architectures
    if profile.flags:
        seccomp["flags"] = list(profile.flags)
    return seccomp
