"""docker run's resource knobs on create/run (--cpus ... --cap-drop) as ContainerConfig fields,
and back as docker inspect's HostConfig shows them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from berth import contract
from berth.cli import docker_view
from berth.cli.context import DaemonError
from berth.cli.create import add_create_arguments, config_from_args
from berth.cli.docker_view import inspect_view


class _Refused(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2; the CLI's parser exits 125
        raise _Refused(message)


def _args(*argv: str) -> argparse.Namespace:
    parser = _Parser()
    add_create_arguments(parser)
    return parser.parse_args([*argv, "busybox"])


def test_resource_flags_become_the_config() -> None:
    config = config_from_args(
        _args(
            "-m", "256m", "--memory-swap", "1g", "--cpus", "1.5", "--ulimit", "nofile=1024:2048",
            "--ulimit", "nproc=64", "--oom-score-adj", "-300", "--shm-size", "128m",
            "--read-only", "--tmpfs", "/run:rw,size=64m", "--tmpfs", "/cache",
            "--cap-add", "net_admin", "--cap-drop", "CHOWN",
        )
    )  # fmt: skip
    assert config.resources.memory_swap_bytes == 1 << 30
    assert config.resources.nano_cpus == 1_500_000_000
    assert [(u.name, u.soft, u.hard) for u in config.ulimits] == [
        ("nofile", 1024, 2048),
        ("nproc", 64, 64),
    ]
    assert (config.oom_score_adj, config.shm_size_bytes, config.read_only_rootfs) == (
        -300,
        128 << 20,
        True,
    )
    assert config.tmpfs == {"/run": "rw,size=64m", "/cache": ""}
    assert (config.cap_add, config.cap_drop) == (["CAP_NET_ADMIN"], ["CAP_CHOWN"])


def test_no_resource_flags_give_dockers_defaults() -> None:
    config = config_from_args(_args())
    assert config.resources.memory_swap_bytes is None and config.resources.nano_cpus is None
    assert (config.ulimits, config.oom_score_adj, config.shm_size) == ([], 0, 64 << 20)
    assert (config.read_only_rootfs, config.tmpfs, config.cap_add) == (False, {}, [])


def test_memory_swap_minus_one_is_unlimited() -> None:
    assert (
        config_from_args(_args("-m", "64m", "--memory-swap", "-1")).resources.effective_swap == -1
    )


@pytest.mark.parametrize(
    "argv",
    [
        ("--ulimit", "nofile=lots"),
        ("--ulimit", "files=10"),
        ("--ulimit", "nofile=4096:1024"),
        ("--cpus", "many"),
        ("--shm-size", "5x"),
        ("--memory-swap", "-2"),
        ("--oom-score-adj", "high"),
    ],
)
def test_malformed_resource_flag_is_a_usage_error(argv: tuple[str, ...]) -> None:
    with pytest.raises(_Refused):
        _args(*argv)


@pytest.mark.parametrize(
    ("argv", "field_name"),
    [
        (("--memory-swap", "1g"), "memory_swap_bytes"),
        (("--oom-score-adj", "1001"), "oom_score_adj"),
        (("--cap-add", "CAP_FLY"), "cap_add"),
        (("--tmpfs", "relative"), "tmpfs"),
        (("--cpus", "0.001"), "nano_cpus"),
    ],
)
def test_out_of_range_value_is_invalid_parameter_naming_the_field(
    argv: tuple[str, ...], field_name: str
) -> None:
    with pytest.raises(DaemonError, match=field_name):
        config_from_args(_args(*argv))


@dataclass
class Record:
    config: dict[str, Any]
    id: str = "c0ffee" + "1" * 58
    name: str = "web-1"
    image: str = "busybox"
    node: str = "node-1"
    state: str = "created"
    pid: int | None = None
    exit_code: int | None = None
    error: str | None = None
    ip: str | None = None
    operation: str | None = None
    restart_count: int = 0
    created_at: datetime = field(default_factory=lambda: datetime(2026, 1, 2, tzinfo=UTC))
    started_at: datetime | None = None
    finished_at: datetime | None = None


def _host_config(*argv: str) -> dict[str, Any]:
    config = config_from_args(_args(*argv)).model_dump(mode="json")
    return dict(inspect_view(Record(config))["HostConfig"])


def test_inspect_shows_the_knobs_under_dockers_names() -> None:
    host = _host_config(
        "-m", "256m", "--cpus", "0.5", "--ulimit", "nofile=10:20", "--oom-score-adj", "5",
        "--shm-size", "1m", "--read-only", "--tmpfs", "/run:size=1m", "--cap-add", "SYS_TIME",
        "--cap-drop", "ALL",
    )  # fmt: skip
    assert host["NanoCpus"] == 500_000_000 and host["MemorySwap"] == 512 << 20
    assert (host["OomScoreAdj"], host["ShmSize"], host["ReadonlyRootfs"]) == (5, 1 << 20, True)
    assert host["Tmpfs"] == {"/run": "size=1m"}
    assert (host["CapAdd"], host["CapDrop"]) == (["CAP_SYS_TIME"], ["ALL"])
    assert host["Ulimits"] == [{"Name": "nofile", "Hard": 20, "Soft": 10}]


def test_inspect_of_a_container_without_knobs_shows_dockers_defaults() -> None:
    host = _host_config()
    assert (host["NanoCpus"], host["MemorySwap"], host["OomScoreAdj"]) == (0, 0, 0)
    assert (host["ShmSize"], host["ReadonlyRootfs"]) == (64 << 20, False)
    assert (host["CapAdd"], host["CapDrop"], host["Ulimits"]) == (None, None, None)
    assert "Tmpfs" not in host


def test_inspect_default_shm_size_is_the_contracts() -> None:
    assert docker_view.DEFAULT_SHM_BYTES == contract.DEFAULT_SHM_BYTES
