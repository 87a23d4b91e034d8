"""schemas/ holds the JSON Schema of every workflow (public and node), current with the models."""

from __future__ import annotations

import json

from berth.contract import WORKFLOW_CONTRACTS
from berth.schemas import SCHEMA_DIR, render
from berth.steps import NODE_WORKFLOW_CONTRACTS


def test_schemas_on_disk_match_the_models() -> None:
    stale = [
        name
        for name, text in render().items()
        if not (SCHEMA_DIR / name).exists() or (SCHEMA_DIR / name).read_text() != text
    ]

    assert stale == [], f"regenerate with: python -m berth.schemas ({stale})"


def test_schemas_exist_for_every_workflow_and_nothing_else() -> None:
    workflows = {*WORKFLOW_CONTRACTS, *NODE_WORKFLOW_CONTRACTS}
    expected = {f"{workflow}.{role}.json" for workflow in workflows for role in ("input", "output")}

    assert {path.name for path in SCHEMA_DIR.glob("*.json")} == expected


def test_start_input_schema_requires_the_container_and_forbids_other_fields() -> None:
    schema = json.loads((SCHEMA_DIR / "ContainerStart.input.json").read_text())

    assert schema["required"] == ["container"]
    assert schema["additionalProperties"] is False


def test_node_start_input_schema_forbids_an_operation_field() -> None:
    schema = json.loads((SCHEMA_DIR / "ContainerStartOnNode.input.json").read_text())

    assert schema["required"] == ["request"]
    assert schema["additionalProperties"] is False
