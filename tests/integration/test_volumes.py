"""Named volumes on the real stack: kept across ``rm`` and reused, refused removal while used,
filled from the image on first use, known to the leak checker, bad names refused."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError

from berth.db.volume_repository import VolumeRepository
from berth.errors import Conflict, NotFound
from berth.leaks import LeakKind, check_node
from berth.runtime.image import DEFAULT_REF
from berth.steps import VolumeCreateInput, node_task_queue
from berth.volume_client import VolumeClient
from berth.volumes_host import data_dir, volume_dir
from tests.integration.conftest import Stack, force_remove
from tests.integration.test_bad_input import raw_json
from tests.integration.test_cli import run
from tests.integration.test_published_ports import node_reconciler


class Volumes:
    """The suite's volume client and the names a test made, removed afterwards."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.client = VolumeClient.connect(stack.berth.temporal, stack.settings)
        self.names: list[str] = []

    def name(self) -> str:
        name = f"vol-{uuid.uuid4().hex[:10]}"
        self.names.append(name)
        return name

    @property
    def node(self) -> str:
        return self.stack.settings.node

    def data(self, name: str) -> Path:
        return data_dir(self.stack.settings.node_paths(), name)


@pytest.fixture
async def volumes(stack: Stack) -> AsyncIterator[Volumes]:
    made = Volumes(stack)
    yield made
    # Containers first: a volume is not removed while one references it.
    for container_id in stack.created:
        await force_remove(stack, container_id)
    stack.created.clear()
    for name in made.names:
        await made.client.remove(made.node, name, force=True)
    await made.client.close()


async def wait_exited(stack: Stack, container_id: str) -> None:
    assert await asyncio.wait_for(stack.berth.wait(container_id), 30) == 0


async def volume_leaks(stack: Stack) -> list[tuple[LeakKind, str]]:
    runtime = stack.runtime
    findings = await check_node(
        stack.settings.node,
        stack.settings.node_paths(),
        runtime.containerd,
        runtime.cni,
        stack.sessions,
    )
    return [(f.kind, f.subject) for f in findings if f.kind.startswith("volume-")]


async def test_volume_data_survives_rm_and_a_new_container_sees_it(
    stack: Stack, volumes: Volumes
) -> None:
    name = volumes.name()
    writer = await stack.create(
        cmd=["sh", "-c", "echo kept > /data/file"], volumes=[{"name": name, "target": "/data"}]
    )
    await stack.berth.start(writer)
    await wait_exited(stack, writer)
    await force_remove(stack, writer)  # waits out the exit's recording, as `berth rm -f`
    stack.created.remove(writer)
    with pytest.raises(NotFound):
        await stack.berth.get(writer)

    assert [v.name for v in await volumes.client.list(volumes.node) if v.name == name] == [name]
    assert (volumes.data(name) / "file").read_text() == "kept\n"
    reader = await stack.create(
        cmd=["cat", "/data/file"], volumes=[{"name": name, "target": "/data", "read_only": True}]
    )
    await stack.berth.start(reader)
    await wait_exited(stack, reader)
    assert await stack.berth.logs(reader) == b"kept\n"
    assert await volume_leaks(stack) == []


async def test_volume_rm_while_a_container_references_it_is_conflict_then_removes_data(
    stack: Stack, volumes: Volumes
) -> None:
    name = volumes.name()
    # Never started: the reference alone holds the volume, as in docker.
    container_id = await stack.create(volumes=[{"name": name, "target": "/data"}])
    [info] = await volumes.client.inspect(name, volumes.node)
    assert info.used_by and info.mountpoint == str(volumes.data(name))

    with pytest.raises(Conflict, match=f"remove {name}: volume is in use"):
        await volumes.client.remove(volumes.node, name)

    await force_remove(stack, container_id)
    stack.created.remove(container_id)
    removed = await volumes.client.remove(volumes.node, name)
    assert removed.removed
    assert not volume_dir(stack.settings.node_paths(), name).exists()
    with pytest.raises(NotFound):
        await volumes.client.inspect(name, volumes.node)
    with pytest.raises(NotFound):
        await volumes.client.remove(volumes.node, name)
    assert not (await volumes.client.remove(volumes.node, name, force=True)).removed


async def test_new_volume_is_filled_from_the_image_at_its_target(
    stack: Stack, volumes: Volumes
) -> None:
    name = volumes.name()
    container_id = await stack.create(
        cmd=["cat", "/etc/group"], volumes=[{"name": name, "target": "/etc"}]
    )
    await stack.berth.start(container_id)
    await wait_exited(stack, container_id)

    copied = (volumes.data(name) / "group").read_text()
    assert copied and (await stack.berth.logs(container_id)).decode() == copied
    assert (volumes.data(name) / "passwd").is_file()


async def test_volume_create_makes_the_directory_and_is_idempotent(
    stack: Stack, volumes: Volumes
) -> None:
    name = volumes.name()
    first = await volumes.client.create(volumes.node, name, {"team": "db"})
    again = await volumes.client.create(volumes.node, name)

    assert again.created_at == first.created_at and again.labels == {"team": "db"}
    assert volume_dir(stack.settings.node_paths(), name).is_dir()
    assert await volume_leaks(stack) == []


async def test_leak_checker_finds_an_orphaned_volume_dir_and_a_row_without_one(
    stack: Stack, volumes: Volumes
) -> None:
    paths = stack.settings.node_paths()
    orphan, lost = volumes.name(), volumes.name()
    volume_dir(paths, orphan).mkdir(parents=True)
    async with stack.sessions.begin() as session:
        await VolumeRepository(session).ensure(volumes.node, lost)

    found = await volume_leaks(stack)

    assert (LeakKind.VOLUME_DIR_WITHOUT_RECORD, str(volume_dir(paths, orphan))) in found
    assert (LeakKind.VOLUME_RECORD_WITHOUT_DIR, str(volume_dir(paths, lost))) in found
    volume_dir(paths, orphan).rmdir()


async def test_reconciler_remakes_a_lost_volume_dir_empty_and_only_reports_an_orphaned_one(
    stack: Stack, volumes: Volumes
) -> None:
    paths = stack.settings.node_paths()
    lost, orphan, pending = volumes.name(), volumes.name(), volumes.name()
    writer = await stack.create(
        cmd=["sh", "-c", "echo gone > /data/file"], volumes=[{"name": lost, "target": "/data"}]
    )
    await stack.berth.start(writer)
    await wait_exited(stack, writer)
    shutil.rmtree(volume_dir(paths, lost))  # someone deleted it on the node
    (volume_dir(paths, orphan) / "_data").mkdir(parents=True)
    (volume_dir(paths, orphan) / "_data" / "file").write_text("someone's data\n")
    # A row whose only user never started: its directory comes at that start, from the image.
    await stack.create(volumes=[{"name": pending, "target": "/etc"}])

    try:
        repairs = await node_reconciler(stack).reconcile()
        found = await volume_leaks(stack)
        orphan_data = (volume_dir(paths, orphan) / "_data" / "file").read_text()
    finally:
        shutil.rmtree(volume_dir(paths, orphan))

    lost_dir = str(volume_dir(paths, lost))
    assert [(r.kind, r.subject) for r in repairs if r.kind.startswith("volume")] == [
        ("volume-dir-lost", lost_dir)
    ]
    assert list(volume_dir(paths, lost).iterdir()) == []
    assert not volume_dir(paths, pending).exists()
    assert orphan_data == "someone's data\n"
    assert found == [(LeakKind.VOLUME_DIR_WITHOUT_RECORD, str(volume_dir(paths, orphan)))]
    # The remade volume is a new one: its next user's start fills it from the image.
    await stack.berth.start(writer)
    await wait_exited(stack, writer)
    assert (volumes.data(lost) / "file").read_text() == "gone\n"


async def test_volume_workflow_on_another_nodes_queue_is_invalid_parameter(
    stack: Stack, volumes: Volumes
) -> None:
    name = volumes.name()

    with pytest.raises(WorkflowFailureError) as failure:
        await stack.berth.temporal.execute_workflow(
            "VolumeCreateOnNode",
            VolumeCreateInput(node="node-2", name=name),
            id=f"volume-create-elsewhere-{name}",
            task_queue=node_task_queue(volumes.node),
        )

    assert getattr(failure.value.cause, "type", None) == "InvalidParameter"
    assert not volume_dir(stack.settings.node_paths(), name).exists()


@pytest.mark.parametrize("name", ["../x", "a", "-a", "a/b", ".hidden", "x" * 256])
async def test_volume_with_a_bad_name_is_invalid_parameter_everywhere(
    stack: Stack, volumes: Volumes, name: str
) -> None:
    for workflow, payload, queue in (
        (
            "VolumeCreateOnNode",
            {"node": volumes.node, "name": name},
            f"berth-node-{volumes.node}",
        ),
        (
            "ContainerCreate",
            {
                "config": {
                    "name": f"bad-{uuid.uuid4().hex[:8]}",
                    "image": DEFAULT_REF,
                    "volumes": [{"name": name, "target": "/data"}],
                }
            },
            stack.settings.task_queue,
        ),
    ):
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(
                stack.berth.temporal.execute_workflow(
                    workflow,
                    raw_json(json.dumps(payload).encode()),
                    id=f"test-bad-volume-{uuid.uuid4().hex[:8]}",
                    task_queue=queue,
                ),
                20,
            )
        assert getattr(failure.value.cause, "type", None) == "InvalidParameter"
    assert not (stack.settings.node_paths().workload_root / "x").exists()


async def test_cli_volume_verbs_and_run_with_a_named_volume(stack: Stack, volumes: Volumes) -> None:
    name, container = volumes.name(), f"cli-{uuid.uuid4().hex[:8]}"
    created = await run(stack, "volume", "create", "--label", "a=b", "--node", volumes.node, name)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == name

    ran = await run(
        stack, "run", "--name", container, "--node", volumes.node, "-v", f"{name}:/data",
        DEFAULT_REF, "sh", "-c", "echo from-run > /data/f; cat /data/f",
    )  # fmt: skip
    stack.created.append((await stack.berth.get(container)).id)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "from-run\n"
    listed = await run(stack, "volume", "ls", "-q", "--node", volumes.node)
    assert name in listed.stdout.split()
    as_json = await run(stack, "volume", "ls", "--format", "json", "--node", volumes.node)
    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert {"Driver": "local", "Labels": {"a": "b"}, "Name": name, "Node": volumes.node} in rows
    inspected = await run(stack, "volume", "inspect", name)
    [shown] = json.loads(inspected.stdout)
    assert shown["Mountpoint"] == str(volumes.data(name)) and len(shown["UsedBy"]) == 1

    mounts = await run(stack, "inspect", "--format", "{{json .Mounts}}", container)
    assert json.loads(mounts.stdout) == [
        {
            "Type": "volume",
            "Name": name,
            "Source": "",
            "Destination": "/data",
            "Driver": "local",
            "Mode": "",
            "RW": True,
            "Propagation": "",
        }
    ]

    refused = await run(stack, "volume", "rm", "--node", volumes.node, name)
    assert refused.returncode == 1
    assert "volume is in use" in refused.stderr
    missing = await run(stack, "volume", "inspect", "no-such-volume")
    assert missing.returncode == 1 and "no such volume" in missing.stderr
