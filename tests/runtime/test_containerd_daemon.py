"""One containerd per node: config, start, reuse and stop."""

from __future__ import annotations

import tomllib
from pathlib import Path

from berth.config import NodePaths
from berth.runtime.containerd_daemon import (
    containerd_running,
    pid_path,
    render_config,
    start_containerd,
    stop_containerd,
)


def test_render_config_points_everything_under_the_node() -> None:
    paths = NodePaths(Path("/s"), "n1")
    config = tomllib.loads(render_config(paths))
    assert config["version"] == 2
    assert config["root"] == "/s/nodes/n1/containerd/root"
    assert config["state"] == "/s/nodes/n1/containerd/state"
    assert config["grpc"]["address"] == "/s/nodes/n1/containerd/containerd.sock"
    assert config["ttrpc"]["address"] == "/s/nodes/n1/containerd/containerd.sock.ttrpc"
    assert config["disabled_plugins"] == ["io.containerd.grpc.v1.cri"]
    assert config["debug"]["address"] == config["metrics"]["address"] == ""


async def test_start_containerd_already_running_returns_same_pid(containerd: NodePaths) -> None:
    pid = int(pid_path(containerd).read_text())
    assert await start_containerd(containerd) == pid


async def test_containerd_running_live_daemon_is_true(containerd: NodePaths) -> None:
    assert await containerd_running(containerd)


async def test_stop_containerd_running_daemon_stops_it_and_removes_pidfile(
    state_dir: Path,
) -> None:
    paths = NodePaths(state_dir, "test-stop")
    pid = await start_containerd(paths)
    await stop_containerd(paths)
    assert not await containerd_running(paths)
    assert not pid_path(paths).exists()
    assert not Path(f"/proc/{pid}").exists()


async def test_stop_containerd_never_started_succeeds(state_dir: Path) -> None:
    await stop_containerd(NodePaths(state_dir, "test-never"))
