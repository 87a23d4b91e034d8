"""Shims are found by their command line (node socket and namespace) and ended by pid only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.runtime.shims import kill_shim, list_shims, parse_shim_argv, shim_alive
from tests.support.shims import fake_shim

SHIM = "/usr/bin/containerd-shim-runc-v2"


@pytest.fixture
def sockets(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    yield tmp_path / "node-a" / "containerd.sock", tmp_path / "node-b" / "containerd.sock"


def test_parse_shim_argv_long_lived_shim_gives_namespace_id_and_address() -> None:
    argv = [SHIM, "-namespace", "berth", "-id", "abc", "-address", "/run/c.sock"]
    assert parse_shim_argv(argv) == ("berth", "abc", "/run/c.sock")


def test_parse_shim_argv_equals_form_and_extra_flags_are_understood() -> None:
    argv = [SHIM, "-namespace=berth", "-debug", "-id=abc", "-address", "/run/c.sock"]
    assert parse_shim_argv(argv) == ("berth", "abc", "/run/c.sock")


def test_parse_shim_argv_start_and_delete_actions_are_not_resources() -> None:
    base = [SHIM, "-namespace", "berth", "-id", "abc", "-address", "/run/c.sock"]
    assert parse_shim_argv([*base, "start"]) is None
    assert parse_shim_argv([*base, "delete"]) is None


def test_parse_shim_argv_other_program_is_none() -> None:
    assert parse_shim_argv(["/usr/bin/containerd", "-namespace", "berth", "-id", "abc"]) is None
    assert parse_shim_argv([]) is None


def test_list_shims_only_the_node_socket_and_namespace(sockets: tuple[Path, Path]) -> None:
    mine, other_node = sockets
    processes = [
        fake_shim("berth", "c1", mine),
        fake_shim("other", "c1", mine),
        fake_shim("berth", "c1", other_node),
    ]
    try:
        assert [s.pid for s in list_shims(mine, "berth")] == [processes[0].pid]
        assert sorted(s.pid for s in list_shims(mine, None)) == sorted(p.pid for p in processes[:2])
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_kill_shim_ends_the_shim_and_leaves_the_others(sockets: tuple[Path, Path]) -> None:
    mine, other_node = sockets
    target, bystander = fake_shim("berth", "c1", mine), fake_shim("berth", "c1", other_node)
    try:
        (shim,) = list_shims(mine, "berth")
        assert kill_shim(shim)
        target.wait(5)
        assert not shim_alive(shim)
        assert bystander.poll() is None
        assert kill_shim(shim)  # gone already: success, nothing signalled
    finally:
        for process in (target, bystander):
            process.kill()
            process.wait()
