"""Shared base for step inputs and outputs: frozen, JSON-serialisable, ids not handles."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StepModel(BaseModel):
    model_config = ConfigDict(frozen=True)


class ContainerRef(StepModel):
    """Enough to find every resource of a container on its node: ids are derivable paths."""

    container_id: str
    node: str
