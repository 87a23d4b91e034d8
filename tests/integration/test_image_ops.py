"""``ImagePull`` onto several nodes, ``ImageListOnNode`` and ``ImageRemoveOnNode`` on the real
stack (the suite's registry, node-1's in-process agent and node-2's subprocess agent)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError

from berth.errors import Conflict, InvalidParameter
from berth.image_client import ImageClient, NodeProgress
from berth.registry.client import RegistryClient
from berth.runtime.containerd import ContainerdClient
from berth.runtime.pull import ImagePuller
from berth.steps import ImageListInput, ImageListOutput, node_task_queue
from dev.registry import LocalRegistry
from tests.integration.conftest import Stack
from tests.integration.node_agent import Node2
from tests.integration.test_image_pull import content_digests, push_image
from tests.support.stack import SuiteStack


@pytest.fixture
def registry(suite_stack: SuiteStack) -> LocalRegistry:
    return suite_stack.registry


@pytest.fixture
def images(stack: Stack) -> ImageClient:
    return ImageClient(stack.berth.temporal, stack.settings.task_queue)


def has(containerd: ContainerdClient, registry: LocalRegistry) -> ImagePuller:
    return ImagePuller(containerd, lambda: RegistryClient([registry.address]))


async def test_image_pull_onto_two_nodes_records_it_on_each_and_leaves_no_lease(
    node2: Node2, images: ImageClient, registry: LocalRegistry, tmp_path: Path
) -> None:
    image = push_image(registry, tmp_path, layers=3)
    seen: list[list[NodeProgress]] = []

    pulled = await images.pull(image.ref, ["node-1", "node-2"], progress=seen.append)

    assert sorted(entry.node for entry in pulled.nodes) == ["node-1", "node-2"]
    assert all(entry.pulled and entry.digest for entry in pulled.nodes)
    for containerd in (node2.stack.containerd, node2.runtime.containerd):
        assert await has(containerd, registry).has_image(image.ref)
        assert [lease for lease in await containerd.list_leases() if "pull" in lease] == []
        assert set(image.layers) <= await content_digests(containerd)


async def test_image_pull_of_unknown_image_fails_naming_it_and_the_node(
    stack: Stack, images: ImageClient, registry: LocalRegistry
) -> None:
    ref = f"{registry.address}/berth/absent-{uuid.uuid4().hex[:8]}:v1"

    with pytest.raises(Exception, match="failed on node-1") as failure:
        await images.pull(ref, ["node-1"])

    assert type(failure.value).__name__ == "NotFound"
    assert ref.rsplit(":", 1)[0] in str(failure.value)
    assert [lease for lease in await stack.containerd.list_leases() if "pull" in lease] == []


async def test_image_list_shows_a_pulled_image_with_its_size(
    stack: Stack, images: ImageClient, registry: LocalRegistry, tmp_path: Path
) -> None:
    image = push_image(registry, tmp_path, layers=2)
    await images.pull(image.ref, ["node-1"])

    listed = await images.list("node-1")

    entry = next(item for item in listed.images if item.name == image.ref)
    assert entry.size > 1_000_000 and entry.digest.startswith("sha256:")


async def test_image_remove_is_refused_while_a_container_uses_it_then_removes_it(
    stack: Stack, images: ImageClient, registry: LocalRegistry, tmp_path: Path
) -> None:
    image = push_image(registry, tmp_path, layers=2)
    container_id = await stack.create(image=image.ref)
    await stack.berth.start(container_id)

    with pytest.raises(Conflict, match="use it"):
        await images.remove("node-1", image.ref)
    assert await has(stack.containerd, registry).has_image(image.ref)

    await stack.berth.remove(container_id, force=True)
    removed = await images.remove("node-1", image.ref)
    again = await images.remove("node-1", image.ref)

    assert (removed.removed, again.removed) == (True, False)
    assert not await has(stack.containerd, registry).has_image(image.ref)
    # Its own layer is collected (the busybox one may be another image's too).
    assert image.layers[-1] not in await content_digests(stack.containerd)


async def test_image_list_on_another_nodes_queue_is_refused(stack: Stack) -> None:
    with pytest.raises(WorkflowFailureError) as failure:
        await stack.berth.temporal.execute_workflow(
            "ImageListOnNode",
            ImageListInput(node="node-2"),
            id=f"image-list-forged-{uuid.uuid4().hex[:8]}",
            task_queue=node_task_queue("node-1"),
            result_type=ImageListOutput,
        )

    assert failure.value.cause is not None
    assert getattr(failure.value.cause, "type", None) == InvalidParameter.type_name
