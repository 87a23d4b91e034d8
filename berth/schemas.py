"""JSON Schemas of every workflow's input and output, generated from the contract.

The public workflows on queue ``berth`` (:data:`berth.contract.WORKFLOW_CONTRACTS`) and the node
workflows on ``berth-node-<node>`` that any Temporal client may start too
(:data:`berth.steps.NODE_WORKFLOW_CONTRACTS`).

``python -m berth.schemas`` writes them under ``schemas/``; a test fails when they are stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from berth.contract import WORKFLOW_CONTRACTS
from berth.steps import NODE_WORKFLOW_CONTRACTS

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


def render() -> dict[str, str]:
    """File name → schema text, for every workflow's input and output."""
    files = {}
    contracts = {**WORKFLOW_CONTRACTS, **NODE_WORKFLOW_CONTRACTS}
    for workflow_type, (input_model, output_model) in sorted(contracts.items()):
        for role, model in (("input", input_model), ("output", output_model)):
            schema = model.model_json_schema(
                mode="validation" if role == "input" else "serialization"
            )
            schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
            schema["title"] = f"{workflow_type} {role}"
            files[f"{workflow_type}.{role}.json"] = (
                json.dumps(schema, indent=2, sort_keys=True) + "\n"
            )
    return files


def write(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write():
        print(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path)
    sys.exit(0)
