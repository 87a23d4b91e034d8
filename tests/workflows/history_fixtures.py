"""Recorded workflow histories: where they live, their file format, and how they replay.

Each fixture under ``tests/workflows/histories/`` (any depth) is one run of one workflow, as
JSON: ``{"workflow_id", "workflow_type", "scenario", "temporalio", "history"}``, where
``history`` is ``WorkflowHistory.to_json()`` as recorded on the test suite's own stack
(tests/integration/test_record_histories.py). The workflow id is kept because a workflow derives
its children's ids from its own, and replay checks them. Payloads stay as recorded: encrypted
with the test suite's codec key, so the fixtures replay offline with :func:`replay_converter`,
the data converter the suite's workers use.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import temporalio
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.worker import Replayer

from berth.codec import AesGcmCodec, CodecKeys
from berth.converter import data_converter
from berth.worker import workflow_runner
from berth.workflows.container_create import ContainerCreate
from berth.workflows.container_exit import ContainerExitedOnNode
from berth.workflows.container_export import ContainerExport, ContainerExportOnNode
from berth.workflows.container_pause import ContainerPause, ContainerPauseOnNode, ContainerUnpause
from berth.workflows.container_remove import ContainerRemove, ContainerRemoveOnNode
from berth.workflows.container_restart import ContainerRestart, ContainerRestartOnNode
from berth.workflows.container_start import ContainerStart, ContainerStartOnNode
from berth.workflows.container_stop import ContainerStop, ContainerStopOnNode
from berth.workflows.fleet_restart import FleetRestart
from berth.workflows.image_ops import (
    ImageListOnNode,
    ImageLoadOnNode,
    ImagePull,
    ImagePullOnNode,
    ImageRemoveOnNode,
)
from berth.workflows.volume_ops import VolumeCreateOnNode, VolumeRemoveOnNode
from tests.integration.conftest import TEST_CODEC_KEYS

HISTORIES_DIR = Path(__file__).resolve().parent / "histories"
# Set to 1 to re-record the fixtures (tests/integration/test_record_histories.py).
RECORD_VARIABLE = "BERTH_RECORD_HISTORIES"

# Every workflow class a Berth worker registers (control worker and node agents).
BERTH_WORKFLOWS: list[type] = [
    ContainerCreate,
    ContainerStart,
    ContainerStartOnNode,
    ContainerStop,
    ContainerStopOnNode,
    ContainerRestart,
    ContainerRestartOnNode,
    ContainerPause,
    ContainerUnpause,
    ContainerPauseOnNode,
    ContainerRemove,
    ContainerRemoveOnNode,
    ContainerExport,
    ContainerExportOnNode,
    ContainerExitedOnNode,
    FleetRestart,
    ImagePull,
    ImagePullOnNode,
    ImageListOnNode,
    ImageRemoveOnNode,
    ImageLoadOnNode,
    VolumeCreateOnNode,
    VolumeRemoveOnNode,
]


@dataclass(frozen=True)
class RecordedHistory:
    """One fixture: a run's history and what it is a history of."""

    path: Path
    scenario: str
    workflow_type: str
    history: WorkflowHistory


def replay_converter() -> DataConverter:
    """Berth's data converter with the test suite's codec keys, as the suite's workers use it."""
    return dataclasses.replace(
        data_converter, payload_codec=AesGcmCodec(CodecKeys.parse(TEST_CODEC_KEYS))
    )


def replayer(workflows: list[type] | None = None) -> Replayer:
    """A replayer of ``workflows`` (all of Berth's by default) in the workers' own sandbox."""
    return Replayer(
        workflows=workflows if workflows is not None else BERTH_WORKFLOWS,
        data_converter=replay_converter(),
        workflow_runner=workflow_runner(),
    )


def fixture_path(scenario: str, workflow_type: str, run: int | None = None) -> Path:
    """``<scenario>.<WorkflowType>[.run-<n>].json`` in the histories directory."""
    suffix = "" if run is None else f".run-{run}"
    return HISTORIES_DIR / f"{scenario}.{workflow_type}{suffix}.json"


def save(path: Path, scenario: str, workflow_type: str, history: WorkflowHistory) -> None:
    """Write one fixture (stable key order and indentation, so re-recordings diff cleanly)."""
    document: dict[str, Any] = {
        "workflow_id": history.workflow_id,
        "workflow_type": workflow_type,
        "scenario": scenario,
        "temporalio": temporalio.__version__,
        "history": json.loads(history.to_json()),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")


def load(path: Path) -> RecordedHistory:
    """Read one fixture."""
    document = json.loads(path.read_text())
    return RecordedHistory(
        path=path,
        scenario=document["scenario"],
        workflow_type=document["workflow_type"],
        history=WorkflowHistory.from_json(document["workflow_id"], document["history"]),
    )


def load_all() -> list[RecordedHistory]:
    """Every fixture under the histories directory, old releases' subfolders included."""
    return [load(path) for path in sorted(HISTORIES_DIR.rglob("*.json"))]
