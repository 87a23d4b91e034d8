"""One containerd per node: config, start, reuse and stop."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import pytest

from berth.config import NodePaths
from berth.runtime.containerd_daemon import (
    DAEMON_ENV_ALLOWED,
    DEFAULT_PATH,
    containerd_running,
    daemon_environment,
    log_path,
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


def test_daemon_environment_keeps_only_the_allow_list() -> None:
    env = daemon_environment(
        {
            "PATH": "/usr/sbin:/usr/bin",
            "TZ": "UTC",
            "BERTH_DATABASE_URL": "postgresql://u:pw@db/berth",
            "BERTH_CODEC_KEYS": "{}",
            "HTTPS_PROXY": "http://user:proxy-pw@proxy:3128",
            "AWS_SECRET_ACCESS_KEY": "x",
        }
    )
    assert env == {"PATH": "/usr/sbin:/usr/bin", "TZ": "UTC"}


def test_daemon_environment_without_path_gets_the_default_path() -> None:
    assert daemon_environment({})["PATH"] == DEFAULT_PATH


async def test_start_containerd_process_environ_has_no_berth_variable_or_secret(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "pw-containerd-env-7c1e"
    monkeypatch.setenv("BERTH_DATABASE_URL", f"postgresql+psycopg://berth:{secret}@127.0.0.1/b")
    monkeypatch.setenv("BERTH_CODEC_KEYS", secret)
    monkeypatch.setenv("SOME_API_TOKEN", secret)
    paths = NodePaths(state_dir, "test-env")
    pid = await start_containerd(paths)
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        log_mode = stat.S_IMODE(log_path(paths).stat().st_mode)
        dir_mode = stat.S_IMODE(paths.containerd_dir.stat().st_mode)
    finally:
        await stop_containerd(paths)

    names = {entry.split(b"=", 1)[0] for entry in environ.split(b"\0") if entry}
    assert secret.encode() not in environ
    assert not any(name.startswith(b"BERTH_") for name in names)
    assert names <= {name.encode() for name in DAEMON_ENV_ALLOWED}
    assert b"PATH" in names
    assert (log_mode, dir_mode) == (0o600, 0o700)
