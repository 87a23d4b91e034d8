"""A container record as docker inspect's object and docker ps's row."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from berth.cli.docker_view import go_time, inspect_view, ps_view

NOW = datetime(2026, 1, 2, 10, 0, tzinfo=UTC)


@dataclass
class Record:
    id: str = "c0ffee" + "1" * 58
    name: str = "web-1"
    image: str = "local/busybox:latest"
    node: str = "node-1"
    state: str = "running"
    config: dict[str, Any] = field(
        default_factory=lambda: {
            "name": "web-1",
            "image": "local/busybox:latest",
            "cmd": ["sleep", "3600"],
            "entrypoint": None,
            "env": ["A=1"],
            "labels": {"tier": "front"},
            "working_dir": "/srv",
            "user": "nobody",
            "network_mode": "bridge",
            "auto_remove": False,
            "restart_policy": {"name": "on-failure", "maximum_retry_count": 3},
            "resources": {"memory_bytes": 536870912, "cpu_shares": None, "pids_limit": 64},
            "binds": [{"source": "/srv/a", "target": "/a", "read_only": True}],
            "healthcheck": {
                "test": ["CMD-SHELL", "true"],
                "interval": 5.0,
                "timeout": 30.0,
                "start_period": 0.0,
                "retries": 3,
            },
            "seccomp_profile": None,
        }
    )
    pid: int | None = 4242
    exit_code: int | None = None
    error: str | None = None
    ip: str | None = "10.214.0.5"
    operation: str | None = None
    restart_count: int = 0
    created_at: datetime = NOW - timedelta(minutes=10)
    started_at: datetime | None = NOW - timedelta(minutes=5)
    finished_at: datetime | None = None


def test_inspect_view_uses_docker_s_field_names_and_shapes() -> None:
    view = inspect_view(Record(), {"Status": "healthy", "FailingStreak": 0, "Log": []})

    assert view["Name"] == "/web-1"
    assert view["Path"] == "sleep" and view["Args"] == ["3600"]
    assert view["State"]["Status"] == "running" and view["State"]["Running"] is True
    assert view["State"]["FinishedAt"] == "0001-01-01T00:00:00Z"
    assert view["State"]["Health"]["Status"] == "healthy"
    assert view["Config"]["Cmd"] == ["sleep", "3600"]
    assert view["Config"]["Env"] == ["A=1"]
    assert view["Config"]["Labels"] == {"tier": "front"}
    assert view["Config"]["WorkingDir"] == "/srv" and view["Config"]["User"] == "nobody"
    assert view["Config"]["Healthcheck"]["Interval"] == 5_000_000_000
    assert view["HostConfig"]["Binds"] == ["/srv/a:/a:ro"]
    assert view["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert view["HostConfig"]["Memory"] == 536870912 and view["HostConfig"]["PidsLimit"] == 64
    assert view["Mounts"] == [
        {
            "Type": "bind",
            "Source": "/srv/a",
            "Destination": "/a",
            "Mode": "ro",
            "RW": False,
            "Propagation": "rprivate",
        }
    ]
    assert view["NetworkSettings"]["IPAddress"] == "10.214.0.5"
    assert view["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] == "10.214.0.5"
    assert (view["Node"], view["SeccompProfile"]) == ("node-1", "default")


def test_inspect_view_of_a_starting_container_is_docker_s_created() -> None:
    view = inspect_view(Record(state="starting", started_at=None, pid=None))

    assert view["State"]["Status"] == "created" and view["State"]["Running"] is False
    assert "Health" not in view["State"]


def test_go_time_utc_with_trimmed_fraction() -> None:
    assert go_time(datetime(2026, 1, 2, 10, 0, 0, 120000, tzinfo=UTC)) == "2026-01-02T10:00:00.12Z"


def test_ps_view_docker_columns_truncation_and_label_method() -> None:
    record = Record(config={**Record().config, "cmd": ["sh", "-c", "while true; do sleep 1; done"]})

    row = ps_view(record, "healthy", NOW)
    full = ps_view(record, "healthy", NOW, no_trunc=True)

    assert row["ID"] == record.id[:12] and full["ID"] == record.id
    assert row["Command"] == '"sh -c while true; d…"'
    assert full["Command"] == '"sh -c while true; do sleep 1; done"'
    assert row["Status"] == "Up 5 minutes (healthy)"
    assert row["RunningFor"] == "10 minutes ago"
    assert row["State"] == "running" and row["Names"] == "web-1"
    assert row["Label"]("tier") == "front" and row["Label"]("none") == ""
    assert row["Labels"] == "tier=front" and row["Mounts"] == "/srv/a"


def test_inspect_view_host_config_shows_published_ports_and_extra_hosts() -> None:
    config = {
        **Record().config,
        "ports": [
            {"container_port": 80, "protocol": "tcp", "host_ip": "", "host_port": 18080},
            {"container_port": 53, "protocol": "udp", "host_ip": "127.0.0.1", "host_port": None},
        ],
        "publish_all": True,
        "extra_hosts": ["db:10.0.0.2"],
        "hostname": "box",
    }

    view = inspect_view(Record(config=config))

    assert view["HostConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "", "HostPort": "18080"}],
        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
    }
    assert view["HostConfig"]["PublishAllPorts"] is True
    assert view["HostConfig"]["ExtraHosts"] == ["db:10.0.0.2"]
    assert view["Config"]["Hostname"] == "box"


def test_ps_ports_column_groups_published_ports_by_container() -> None:
    from types import SimpleNamespace

    from berth.cli.ps import published_ports

    rows = [
        SimpleNamespace(
            container_id="a", host_ip="", host_port=18080, container_port=80, protocol="tcp"
        ),
        SimpleNamespace(
            container_id="a", host_ip="127.0.0.1", host_port=5353, container_port=53,
            protocol="udp",
        ),
        SimpleNamespace(
            container_id="b", host_ip="", host_port=9000, container_port=9000, protocol="tcp"
        ),
    ]  # fmt: skip

    ports = published_ports(rows)

    assert ports == {
        "a": "127.0.0.1:5353->53/udp, 0.0.0.0:18080->80/tcp",
        "b": "0.0.0.0:9000->9000/tcp",
    }
    assert ps_view(Record(), None, NOW, ports=ports["b"])["Ports"] == "0.0.0.0:9000->9000/tcp"
