"""docker-compose.yml wires Berth to its PostgreSQL and Temporal, publishing on loopback only."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

COMPOSE_FILE = Path(__file__).resolve().parent.parent / "docker-compose.yml"
SERVICES = {"postgresql", "temporal", "temporal-ui", "berth-control", "berth-node"}
WORKERS = ("berth-control", "berth-node")


def compose_config() -> subprocess.CompletedProcess[str]:
    """The file as Debian's docker-compose parses, validates and resolves it (no engine needed)."""
    return subprocess.run(
        ["docker-compose", "--file", str(COMPOSE_FILE), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=COMPOSE_FILE.parent,
    )


def test_compose_file_is_valid_for_a_real_compose_parser() -> None:
    result = compose_config()

    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load(compose_config().stdout)
    result: dict[str, Any] = compose["services"]
    return result


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, whether written as a mapping or as ``KEY=VALUE`` lines."""
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(line.split("=", 1) for line in env)
    return {key: str(value) for key, value in env.items()}


def test_compose_has_the_five_services(services: dict[str, Any]) -> None:
    assert set(services) >= SERVICES


def test_compose_temporal_persists_in_the_postgresql_service(services: dict[str, Any]) -> None:
    temporal = services["temporal"]
    env = environment(temporal)
    assert temporal["image"].startswith("temporalio/auto-setup")
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] == "postgresql"
    assert "postgresql" in temporal["depends_on"]


def test_compose_ui_points_at_temporal(services: dict[str, Any]) -> None:
    assert environment(services["temporal-ui"])["TEMPORAL_ADDRESS"] == "temporal:7233"


@pytest.mark.parametrize("worker", WORKERS)
def test_compose_worker_environment_names_temporal_and_database(
    services: dict[str, Any], worker: str
) -> None:
    env = environment(services[worker])
    assert env["BERTH_TEMPORAL_ADDRESS"] == "temporal:7233"
    assert env["BERTH_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "@postgresql:5432/" in env["BERTH_DATABASE_URL"]


@pytest.mark.parametrize("worker", WORKERS)
def test_compose_worker_runs_its_berth_worker_role(services: dict[str, Any], worker: str) -> None:
    command = services[worker]["command"]
    text = " ".join(command) if isinstance(command, list) else command
    role = "control" if worker == "berth-control" else "node-entrypoint"
    assert role in text


def test_compose_node_is_privileged_with_its_own_identity(services: dict[str, Any]) -> None:
    node = services["berth-node"]
    env = environment(node)
    assert node["privileged"] is True
    assert env["BERTH_NODE"] == "node-1"
    assert env["BERTH_BRIDGE"] and env["BERTH_SUBNET"]


def test_compose_publishes_ports_on_loopback_only(services: dict[str, Any]) -> None:
    published = [port for service in services.values() for port in service.get("ports", [])]
    assert published
    assert all(str(port).startswith("127.0.0.1:") for port in published)


def test_compose_temporal_has_no_floor_between_runs_of_a_workflow_id(
    services: dict[str, Any],
) -> None:
    # The public workflows continue as new on the node; a floor would delay each by a second.
    temporal = services["temporal"]
    path = environment(temporal)["DYNAMIC_CONFIG_FILE_PATH"]
    # ``source:target[:mode]`` as this parser resolves it (a mapping in newer ones).
    volumes = [
        v.split(":")[:2] if isinstance(v, str) else [v["source"], v["target"]]
        for v in temporal["volumes"]
    ]
    mounted = [source for source, target in volumes if target == path]
    assert len(mounted) == 1, temporal["volumes"]
    config = yaml.safe_load(Path(mounted[0]).read_text())
    assert config["history.workflowIdReuseMinimalInterval"] == [{"value": "0s"}]
