"""build_spec's resource knobs (docker run --memory-swap, --cpus, --ulimit, --oom-score-adj,
--shm-size, --read-only, --tmpfs, --cap-add/--cap-drop): pure, no containerd."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from berth.capabilities import KNOWN_CAPABILITIES, beyond_allowed, container_capabilities
from berth.contract import ContainerConfig, Resources, Ulimit
from berth.errors import InvalidParameter
from berth.runtime.oci_spec import (
    DEFAULT_CAPABILITIES,
    RLIM_INFINITY,
    build_spec,
    swap_limit_supported,
    tmpfs_options,
)

CONTAINER_ID = "0123456789abcdef" * 4
IMAGE = {"Cmd": ["sh"]}


def _spec(**fields: Any) -> dict[str, Any]:
    config = ContainerConfig.model_validate({"name": "web-1", "image": "busybox", **fields})
    return build_spec(
        CONTAINER_ID, config, IMAGE, Path("/nonexistent-rootfs"), None, swap_limit=True
    )


def _mounts(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["destination"]: m for m in spec["mounts"]}


def test_memory_swap_defaults_to_twice_the_memory() -> None:
    memory = _spec(resources={"memory_bytes": 100 << 20})["linux"]["resources"]["memory"]
    assert memory == {"limit": 100 << 20, "swap": 200 << 20}


def test_memory_swap_is_left_out_where_the_kernel_limits_no_swap() -> None:
    config = ContainerConfig(name="web-1", image="busybox", resources={"memory_bytes": 100 << 20})
    spec = build_spec(CONTAINER_ID, config, IMAGE, Path("/r"), None, swap_limit=False)
    assert spec["linux"]["resources"]["memory"] == {"limit": 100 << 20}


def test_swap_limit_supported_reads_cgroup_v1_and_v2_files(tmp_path: Path) -> None:
    v1, v2, none = tmp_path / "v1", tmp_path / "v2", tmp_path / "none"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.memsw.limit_in_bytes").write_text("max\n")
    (v2 / "init.scope").mkdir(parents=True)
    (v2 / "init.scope" / "memory.swap.max").write_text("max\n")
    (none / "memory").mkdir(parents=True)
    assert [swap_limit_supported(root) for root in (v1, v2, none)] == [True, True, False]


def test_memory_swap_given_is_memory_plus_swap_and_minus_one_unlimited() -> None:
    given = _spec(resources={"memory_bytes": 100 << 20, "memory_swap_bytes": 150 << 20})
    unlimited = _spec(resources={"memory_bytes": 100 << 20, "memory_swap_bytes": -1})
    assert given["linux"]["resources"]["memory"]["swap"] == 150 << 20
    assert unlimited["linux"]["resources"]["memory"]["swap"] == -1


def test_memory_swap_without_memory_or_below_it_is_refused() -> None:
    with pytest.raises(ValidationError, match="always set the memory limit"):
        Resources(memory_swap_bytes=200 << 20)
    with pytest.raises(ValidationError, match="larger than the memory limit"):
        Resources(memory_bytes=200 << 20, memory_swap_bytes=100 << 20)


def test_cpus_become_a_cfs_quota_of_a_100ms_period() -> None:
    cpu = _spec(resources={"nano_cpus": 1_500_000_000, "cpu_shares": 512})["linux"]["resources"]
    assert cpu["cpu"] == {"shares": 512, "period": 100_000, "quota": 150_000}


def test_cpus_beyond_the_nodes_cpus_are_invalid_as_docker_says() -> None:
    config = ContainerConfig(name="web-1", image="busybox", resources={"nano_cpus": 3 * 10**9})
    with pytest.raises(InvalidParameter, match=r"from 0\.01 to 2\.00, as there are only 2 CPUs"):
        build_spec(CONTAINER_ID, config, IMAGE, Path("/nonexistent-rootfs"), None, cpu_count=2)
    spec = build_spec(CONTAINER_ID, config, IMAGE, Path("/nonexistent-rootfs"), None, cpu_count=3)
    assert spec["linux"]["resources"]["cpu"]["quota"] == 300_000


def test_cpus_below_a_hundredth_are_refused_and_zero_is_no_limit() -> None:
    with pytest.raises(ValidationError, match=r"at least 0\.01 CPU"):
        Resources(nano_cpus=1_000_000)
    assert "cpu" not in _spec(resources={"nano_cpus": 0})["linux"]["resources"]


def test_ulimits_replace_the_default_nofile_and_add_others() -> None:
    ulimits = [
        {"name": "nofile", "soft": 2048, "hard": 4096},
        {"name": "core", "soft": -1, "hard": -1},
    ]
    rlimits = _spec(ulimits=ulimits)["process"]["rlimits"]
    assert rlimits == [
        {"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 2048},
        {"type": "RLIMIT_CORE", "hard": RLIM_INFINITY, "soft": RLIM_INFINITY},
    ]


def test_ulimit_parse_takes_docker_syntax_and_refuses_soft_above_hard() -> None:
    assert Ulimit.parse("nofile=1024:2048") == Ulimit(name="nofile", soft=1024, hard=2048)
    assert Ulimit.parse("nproc=50") == Ulimit(name="nproc", soft=50, hard=50)
    with pytest.raises(ValueError, match="soft limit must be less than or equal"):
        Ulimit.parse("nofile=4096:1024")
    with pytest.raises(ValueError, match="invalid ulimit type"):
        Ulimit.parse("files=10")
    with pytest.raises(ValueError, match="expected NAME=SOFT"):
        Ulimit.parse("nofile=lots")


def test_oom_score_adj_defaults_to_zero_and_is_bounded() -> None:
    assert _spec()["process"]["oomScoreAdj"] == 0
    assert _spec(oom_score_adj=-500)["process"]["oomScoreAdj"] == -500
    with pytest.raises(ValidationError):
        _spec(oom_score_adj=1001)


def test_shm_size_defaults_to_64_mib_and_takes_the_given_size() -> None:
    assert "size=67108864" in _mounts(_spec())["/dev/shm"]["options"]
    assert "size=134217728" in _mounts(_spec(shm_size_bytes=128 << 20))["/dev/shm"]["options"]


def test_read_only_rootfs_sets_root_readonly() -> None:
    assert _spec()["root"]["readonly"] is False
    assert _spec(read_only_rootfs=True)["root"]["readonly"] is True


def test_tmpfs_mount_merges_its_options_over_dockers_defaults() -> None:
    mount = _mounts(_spec(tmpfs={"/run": "rw,exec,size=64m"}))["/run"]
    assert mount == {
        "destination": "/run",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "nodev", "rw", "exec", "size=64m"],
    }
    assert tmpfs_options("") == ["noexec", "nosuid", "nodev"]
    assert tmpfs_options("size=1m,size=2m") == ["noexec", "nosuid", "nodev", "size=2m"]


def test_mounts_are_ordered_parents_first_whatever_the_config_order() -> None:
    spec = _spec(
        tmpfs={"/data/cache/tmp": "", "/scratch": ""},
        binds=[
            {"source": "/srv/cache", "target": "/data/cache"},
            {"source": "/srv", "target": "/data"},
        ],
    )
    user = [m["destination"] for m in spec["mounts"]][7:]
    assert user == ["/scratch", "/data", "/data/cache", "/data/cache/tmp"]


def test_tmpfs_over_dev_shm_replaces_the_default_shm_mount() -> None:
    shm = [
        m for m in _spec(tmpfs={"/dev/shm": "size=1m"})["mounts"] if m["destination"] == "/dev/shm"
    ]
    assert [m["source"] for m in shm] == ["tmpfs"]


@pytest.mark.parametrize(
    ("tmpfs", "message"),
    [
        ({"run": ""}, "absolute path"),
        ({"/": ""}, "not the root"),
        ({"/a/../b": ""}, "absolute path"),
        ({"/run": "bogus"}, "invalid tmpfs option"),
        ({"/run": "size=$(x)"}, "invalid tmpfs option"),
        ({"/run": "", "/run/": ""}, "duplicate tmpfs mount point"),
    ],
)
def test_tmpfs_bad_path_or_option_is_refused(tmpfs: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _spec(tmpfs=tmpfs)


def test_tmpfs_on_a_bind_target_is_refused() -> None:
    with pytest.raises(ValidationError, match="duplicate mount point /data"):
        _spec(tmpfs={"/data": ""}, binds=[{"source": "/srv", "target": "/data"}])


def test_capabilities_default_to_dockers_set() -> None:
    caps = _spec()["process"]["capabilities"]
    assert caps["bounding"] == caps["effective"] == caps["permitted"] == DEFAULT_CAPABILITIES


def test_cap_add_and_drop_change_every_set_and_names_are_normalized() -> None:
    caps = _spec(cap_add=["net_admin"], cap_drop=["CAP_CHOWN", "mknod"])["process"]["capabilities"]
    expected = [c for c in DEFAULT_CAPABILITIES if c not in ("CAP_CHOWN", "CAP_MKNOD")]
    assert (
        caps["bounding"]
        == caps["effective"]
        == caps["permitted"]
        == [
            *expected,
            "CAP_NET_ADMIN",
        ]
    )


def test_cap_add_all_is_every_capability_but_the_dropped() -> None:
    caps = container_capabilities(["ALL"], ["sys_admin"])
    assert caps == [c for c in KNOWN_CAPABILITIES if c != "CAP_SYS_ADMIN"]


def test_cap_drop_all_keeps_only_the_added() -> None:
    assert container_capabilities(["chown"], ["all"]) == ["CAP_CHOWN"]


def test_unknown_capability_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown capability"):
        _spec(cap_add=["CAP_FLY"])


def test_capabilities_beyond_the_default_need_the_nodes_permission() -> None:
    caps = container_capabilities(["NET_ADMIN", "SYS_TIME", "CHOWN"], [])
    assert beyond_allowed(caps, []) == ["CAP_NET_ADMIN", "CAP_SYS_TIME"]
    assert beyond_allowed(caps, ["net_admin"]) == ["CAP_SYS_TIME"]
    assert beyond_allowed(caps, ["ALL"]) == []


def test_added_capabilities_open_the_seccomp_profiles_syscalls_for_them() -> None:
    def names(spec: dict[str, Any]) -> set[str]:
        return {n for group in spec["linux"]["seccomp"]["syscalls"] for n in group["names"]}

    config = ContainerConfig(name="web-1", image="busybox", cap_add=["SYS_TIME"])
    spec = build_spec(CONTAINER_ID, config, IMAGE, Path("/nonexistent-rootfs"), None)
    assert "settimeofday" in names(spec) and "settimeofday" not in names(_spec())
