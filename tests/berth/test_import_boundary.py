"""The layers' import boundary, checked in a fresh interpreter per case.

The client and the CLI speak the contract, the steps module, temporalio and the database layer:
importing them loads no workflow, no activity and no containerd runtime. Workflows import the
contract, the steps module, the errors and temporalio: no activity, no runtime, no SQLAlchemy,
so the workflow sandbox needs none of them passed through.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The repository's folders are installed as berth.workflows / berth.activities only.
OLD_TOP_LEVEL = ("workflows", "activities")
WORKFLOW_MODULES = [
    "berth.workflows.container_create",
    "berth.workflows.container_exit",
    "berth.workflows.container_export",
    "berth.workflows.container_pause",
    "berth.workflows.container_remove",
    "berth.workflows.container_restart",
    "berth.workflows.container_start",
    "berth.workflows.container_stop",
    "berth.workflows.fleet_restart",
]


def loaded_after(*modules: str) -> list[str]:
    """The modules a fresh interpreter has loaded after importing ``modules``."""
    program = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return list(json.loads(done.stdout))


def under(modules: list[str], *prefixes: str) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(f"{p}.") for p in prefixes)]


@pytest.mark.parametrize("module", ["berth.client", "berth.cli", "berth.fleet_client"])
def test_client_import_loads_no_workflow_activity_or_runtime_module(module: str) -> None:
    loaded = loaded_after(module)

    assert (
        under(
            loaded,
            *OLD_TOP_LEVEL,
            "berth.workflows",
            "berth.activities",
            "berth.runtime",
            "berth._containerd_api",
        )
        == []
    )


# What the CLI's entry and verb modules may not load at import: each costs start-up time that a
# verb pays only when its handler asks for it (berth.cli.main).
HEAVY = (
    "pydantic",
    "pydantic_settings",
    "temporalio",
    "sqlalchemy",
    "psycopg",
    "aiohttp",
    "google",
)


def cli_modules() -> list[str]:
    from berth.cli.verbs import VERBS

    return sorted(
        {
            "berth.cli",
            "berth.cli.main",
            *(verb.module for verb in VERBS.values()),
            "berth.cli.env",
            "berth.temporal_http",
            # What the light handlers import: create's messages, logs' readers.
            "berth.validation",
            "berth.container_logs",
        }
    )


@pytest.mark.parametrize("module", cli_modules())
def test_cli_entry_and_verb_modules_load_no_heavy_dependency(module: str) -> None:
    loaded = loaded_after(module)

    assert under(loaded, *HEAVY) == []


@pytest.mark.parametrize("module", ["berth.db.reads", "berth.db.node_reads"])
def test_cli_light_paths_load_asyncpg_but_no_sdk_orm_psycopg_or_pydantic(module: str) -> None:
    loaded = loaded_after(module)

    assert "asyncpg" in loaded
    assert under(loaded, *HEAVY) == []


@pytest.mark.parametrize(
    "module",
    [
        "berth.endpoint.client",
        "berth.endpoint.logs_wire",
        "berth.endpoint.exec_wire",
        "berth.endpoint.files_wire",
    ],
)
def test_cli_endpoint_calls_load_no_asyncpg_protobuf_or_heavy_dependency(module: str) -> None:
    # logs, exec, attach, cp and export encode their messages on berth.endpoint.wire.
    loaded = loaded_after(module)

    assert under(loaded, "asyncpg", *HEAVY) == []


@pytest.mark.parametrize("module", ["berth.cli.transport", "berth.db.wire"])
def test_cli_operations_load_no_asyncio_asyncpg_or_heavy_dependency(module: str) -> None:
    # The writing verbs run without an event loop (berth.cli.main.without_loop).
    loaded = loaded_after(module)

    assert under(loaded, "asyncio", "asyncpg", *HEAVY) == []


def test_workflow_imports_load_no_activity_runtime_or_sqlalchemy_module() -> None:
    loaded = loaded_after(*WORKFLOW_MODULES)

    assert (
        under(
            loaded,
            *OLD_TOP_LEVEL,
            "berth.activities",
            "berth.runtime",
            "berth._containerd_api",
            "sqlalchemy",
        )
        == []
    )
    outside_workflows = [m for m in under(loaded, "berth") if not m.startswith("berth.workflows")]
    assert outside_workflows == ["berth", "berth.contract", "berth.errors", "berth.steps"]


def test_steps_module_imports_only_pydantic_contract_and_errors() -> None:
    loaded = loaded_after("berth.steps")

    assert under(loaded, "berth") == ["berth", "berth.contract", "berth.steps"]
    assert under(loaded, *OLD_TOP_LEVEL, "sqlalchemy") == []
