"""Search attributes and ids that let an operator find a container's history in the Web UI."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

CONTAINER_ID = SearchAttributeKey.for_keyword("ContainerId")
CONTAINER_NAME = SearchAttributeKey.for_keyword("ContainerName")
NODE = SearchAttributeKey.for_keyword("Node")
SAGA_PHASE = SearchAttributeKey.for_keyword("SagaPhase")
OUTCOME = SearchAttributeKey.for_keyword("Outcome")

ALL_KEYS = (CONTAINER_ID, CONTAINER_NAME, NODE, SAGA_PHASE, OUTCOME)


def container_attributes(container_id: str, name: str, node: str) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(CONTAINER_ID, container_id),
            SearchAttributePair(CONTAINER_NAME, name),
            SearchAttributePair(NODE, node),
        ]
    )


def start_workflow_id(container_id: str) -> str:
    """The id the Berth client gives a container's start: ``container-start-<id>``."""
    return f"container-start-{container_id}"
