"""Docker's resource knobs on the real stack, read from inside the container.

``--ulimit``, ``--oom-score-adj``, ``--cpus``, ``-m``/``--memory-swap``, ``--shm-size``,
``--read-only``, ``--tmpfs`` and ``--cap-add``/``--cap-drop`` reach runc: the container's own
``ulimit -n``, ``/proc/self/oom_score_adj``, cgroup files (this machine's cgroup v1 hierarchy, as
runc mounts the container's own cgroups at ``/sys/fs/cgroup/<controller>``), ``df /dev/shm``,
``/proc/mounts`` and ``/proc/self/status`` show them. A capability beyond Docker's default set is
``Forbidden`` unless permitted: at create (nothing recorded) and by the node's spec step.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterable

import pytest

from berth.activities.spec import SpecActivities
from berth.capabilities import DEFAULT_CAPABILITIES, KNOWN_CAPABILITIES
from berth.contract import ContainerConfig
from berth.errors import Forbidden, InvalidParameter, NotFound
from berth.runtime.image import DEFAULT_REF
from berth.steps import WriteSpecInput
from tests.integration.conftest import BIND_ROOT, Stack
from tests.integration.test_cli import run
from tests.integration.test_confinement import PermissiveNode

# The kernel's "no limit" of a cgroup v1 memory file: the largest page-aligned int64.
CGROUP_V1_UNLIMITED = 9223372036854771712


def _mask(capabilities: Iterable[str]) -> str:
    """``CapEff`` of /proc/self/status for a set of capabilities (16 hex digits)."""
    return f"{sum(1 << KNOWN_CAPABILITIES.index(cap) for cap in capabilities):016x}"


async def _report(stack: Stack, container_id: str) -> dict[str, str]:
    """The ``key=value`` lines the container printed, once it printed ``done=1``."""
    for _ in range(150):
        logs = (await stack.berth.logs(container_id)).decode()
        if "done=1" in logs:
            return _values(logs)
        await asyncio.sleep(0.1)
    raise AssertionError(f"the container never finished its report: {logs!r}")


def _values(logs: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in logs.splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def _script(*lines: str) -> list[str]:
    return ["sh", "-c", "; ".join([*lines, "echo done=1", "sleep 3600"])]


async def _run(stack: Stack, *lines: str, **fields: object) -> dict[str, str]:
    container_id = await stack.create(cmd=_script(*lines), network_mode="none", **fields)
    await stack.berth.start(container_id)
    return await _report(stack, container_id)


async def test_ulimit_and_oom_score_adj_reach_the_process(stack: Stack) -> None:
    seen = await _run(
        stack,
        "echo nofile=$(ulimit -n)",
        "echo nofile_hard=$(ulimit -H -n)",
        "echo nproc=$(ulimit -u)",
        "echo oom=$(cat /proc/self/oom_score_adj)",
        ulimits=[
            {"name": "nofile", "soft": 2048, "hard": 4096},
            {"name": "nproc", "soft": 99, "hard": 99},
        ],
        oom_score_adj=345,
    )

    assert (seen["nofile"], seen["nofile_hard"], seen["nproc"]) == ("2048", "4096", "99")
    assert seen["oom"] == "345"


async def test_defaults_are_dockers_nofile_oom_score_shm_and_capabilities(stack: Stack) -> None:
    seen = await _run(
        stack,
        "echo nofile=$(ulimit -n)",
        "echo oom=$(cat /proc/self/oom_score_adj)",
        "echo shm_kib=$(df -k /dev/shm | awk 'NR==2 {print $2}')",
        "echo capeff=$(awk '/^CapEff/ {print $2}' /proc/self/status)",
        "echo quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)",
        "touch /written && echo root_write=ok || echo root_write=refused",
    )

    assert (seen["nofile"], seen["oom"], seen["shm_kib"]) == ("1024", "0", str(64 * 1024))
    assert seen["capeff"] == _mask(DEFAULT_CAPABILITIES)
    assert (seen["quota"], seen["root_write"]) == ("-1", "ok")


async def test_cpus_set_the_cfs_quota_and_memory_limits_swap_as_docker(stack: Stack) -> None:
    seen = await _run(
        stack,
        "echo period=$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)",
        "echo quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)",
        "echo memory=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)",
        "echo memsw=$(cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes)",
        resources={"nano_cpus": 1_500_000_000, "memory_bytes": 64 << 20},
    )

    assert (seen["period"], seen["quota"]) == ("100000", "150000")
    # No --memory-swap: memory plus swap is twice the memory, as Docker sets it.
    assert (seen["memory"], seen["memsw"]) == (str(64 << 20), str(128 << 20))


async def test_more_cpus_than_the_node_has_is_invalid_and_leaves_nothing(stack: Stack) -> None:
    cpus = len(os.sched_getaffinity(0))
    container_id = await stack.create(resources={"nano_cpus": (cpus + 1) * 10**9})

    with pytest.raises(InvalidParameter, match=rf"only {cpus} CPUs available"):
        await stack.berth.start(container_id)

    trace = await stack.footprint(container_id)
    assert (trace.rootfs_mounts, trace.netns, trace.containerd_container) == (0, False, False)


async def test_memory_swap_given_or_unlimited(stack: Stack) -> None:
    memsw = "echo memsw=$(cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes)"
    given = await _run(
        stack, memsw, resources={"memory_bytes": 64 << 20, "memory_swap_bytes": 96 << 20}
    )
    unlimited = await _run(
        stack, memsw, resources={"memory_bytes": 64 << 20, "memory_swap_bytes": -1}
    )

    assert given["memsw"] == str(96 << 20)
    assert unlimited["memsw"] == str(CGROUP_V1_UNLIMITED)


async def test_shm_size_read_only_root_and_tmpfs(stack: Stack) -> None:
    seen = await _run(
        stack,
        "echo shm_kib=$(df -k /dev/shm | awk 'NR==2 {print $2}')",
        "touch /written 2>/dev/null && echo root_write=ok || echo root_write=refused",
        'echo run=$(awk \'$2 == "/run" {print $3 "," $4}\' /proc/mounts)',
        "touch /run/pid && echo run_write=ok || echo run_write=refused",
        "echo run_kib=$(df -k /run | awk 'NR==2 {print $2}')",
        shm_size_bytes=128 << 20,
        read_only_rootfs=True,
        tmpfs={"/run": "rw,size=8m"},
    )

    assert seen["shm_kib"] == str(128 * 1024)
    assert seen["root_write"] == "refused"
    kind, _, options = seen["run"].partition(",")
    assert kind == "tmpfs"
    assert {"rw", "nosuid", "nodev", "noexec"} <= set(options.split(","))
    assert (seen["run_write"], seen["run_kib"]) == ("ok", str(8 * 1024))


async def test_cap_drop_removes_capabilities_from_every_set(stack: Stack) -> None:
    seen = await _run(
        stack,
        "grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status | tr '\\t' '='",
        "chown 1 /tmp && echo chown=ok || echo chown=refused",
        cap_drop=["CHOWN", "net_raw"],
    )

    expected = _mask(c for c in DEFAULT_CAPABILITIES if c not in ("CAP_CHOWN", "CAP_NET_RAW"))
    assert (seen["CapEff:"], seen["CapPrm:"], seen["CapBnd:"]) == (expected,) * 3
    assert seen["chown"] == "refused"


async def test_cap_add_beyond_the_default_is_forbidden_at_create(stack: Stack) -> None:
    name = f"cap-{uuid.uuid4().hex[:8]}"

    with pytest.raises(Forbidden, match=r"config\.cap_add: CAP_NET_ADMIN not permitted at create"):
        await stack.berth.create(
            ContainerConfig(
                name=name, image=DEFAULT_REF, node=stack.settings.node, cap_add=["NET_ADMIN"]
            )
        )

    with pytest.raises(NotFound):
        await stack.berth.inspect(name)


async def test_node_refuses_a_cap_add_it_does_not_permit_before_writing_a_spec(
    stack: Stack,
) -> None:
    # A record from a control worker that permits more than this node: the node decides.
    container_id = secrets.token_hex(32)
    config = ContainerConfig(
        name="cap-node", image=DEFAULT_REF, cap_add=["ALL"], cap_drop=["SYS_ADMIN"]
    )
    request = WriteSpecInput(
        container_id=container_id,
        node=stack.settings.node,
        config=config,
        image_config={},
        rootfs="/nonexistent-rootfs",
        netns=None,
    )
    spec = SpecActivities(stack.settings.node_paths(), allowed_capabilities=["NET_ADMIN"])

    with pytest.raises(Forbidden, match=r"config\.cap_add: CAP_DAC_READ_SEARCH, .* on node node-1"):
        await spec.write_spec(request)

    assert not stack.settings.node_paths().spec(container_id).exists()


@pytest.fixture
async def allows_net_admin(stack: Stack) -> AsyncIterator[PermissiveNode]:
    """The node's steps where its setting allowed_capabilities lists NET_ADMIN."""
    spec = SpecActivities(
        stack.settings.node_paths(),
        allowed_host_paths=[BIND_ROOT],
        allowed_capabilities=["NET_ADMIN"],
    )
    node = PermissiveNode(stack, spec, [])
    yield node
    await node.release()


async def test_cap_add_where_the_node_permits_it_is_in_every_set(
    allows_net_admin: PermissiveNode,
) -> None:
    config = ContainerConfig.model_validate(
        {
            "name": "net-admin",
            "image": DEFAULT_REF,
            "network_mode": "none",
            "cap_add": ["net_admin"],
            "cmd": _script(
                "grep -E '^Cap(Eff|Bnd)' /proc/self/status | tr '\\t' '='",
                "ip addr add 127.0.0.2/8 dev lo && echo addr_add=ok || echo addr_add=refused",
            ),
        }
    )

    seen = _values(await allows_net_admin.run(config, b"done=1"))

    expected = _mask([*DEFAULT_CAPABILITIES, "CAP_NET_ADMIN"])
    assert (seen["CapEff:"], seen["CapBnd:"]) == (expected, expected)
    assert seen["addr_add"] == "ok"


async def test_cli_run_takes_the_flags_and_inspect_shows_them_as_docker(stack: Stack) -> None:
    name = f"knobs-{uuid.uuid4().hex[:8]}"
    started = await run(
        stack, "run", "-d", "--name", name, "--network", "none", "-m", "64m", "--cpus", "0.5",
        "--ulimit", "nofile=512:1024", "--oom-score-adj", "100", "--shm-size", "16m",
        "--read-only", "--tmpfs", "/run:size=4m", "--cap-drop", "MKNOD",
        DEFAULT_REF, "sh", "-c", "echo nofile=$(ulimit -n); echo done=1; sleep 600",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    container_id = started.stdout.strip()
    stack.created.append(container_id)

    shown = await run(stack, "inspect", "-f", "{{json .HostConfig}}", name)

    assert shown.returncode == 0, shown.stderr
    host = json.loads(shown.stdout)
    assert (host["NanoCpus"], host["Memory"], host["MemorySwap"]) == (
        500_000_000,
        64 << 20,
        128 << 20,
    )
    assert (host["OomScoreAdj"], host["ShmSize"], host["ReadonlyRootfs"]) == (100, 16 << 20, True)
    assert (host["Tmpfs"], host["CapAdd"], host["CapDrop"]) == (
        {"/run": "size=4m"},
        None,
        ["CAP_MKNOD"],
    )
    assert host["Ulimits"] == [{"Name": "nofile", "Hard": 1024, "Soft": 512}]
    assert (await _report(stack, container_id))["nofile"] == "512"


async def test_cli_malformed_knob_is_a_usage_error_that_creates_nothing(stack: Stack) -> None:
    name = f"bad-knob-{uuid.uuid4().hex[:8]}"

    refused = await run(stack, "create", "--name", name, "--ulimit", "nofile=9:1", DEFAULT_REF)

    assert refused.returncode == 125
    assert "soft limit must be less than or equal" in refused.stderr
    assert (await run(stack, "inspect", name)).returncode != 0
