"""``berth export``: a second mount holder beside start, on node-2's real agent."""

from __future__ import annotations

import asyncio
import os
import tarfile
import uuid
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError

from berth.errors import InvalidParameter
from berth.runtime.netns import netns_exists
from tests.integration.node_agent import (
    Node2,
)
from tests.integration.test_crash_safety import RESULT_TIMEOUT, wait_until


def members(path: Path) -> set[str]:
    with tarfile.open(path) as tar:
        return set(tar.getnames())


async def test_export_of_created_container_mounts_then_unmounts(
    node2: Node2, tmp_path: Path
) -> None:
    container_id = await node2.create()
    output = tmp_path / "fs.tar"

    exported = await node2.stack.berth.export(container_id, str(output))

    assert exported.size_bytes == output.stat().st_size > 0
    assert "./bin/busybox" in members(output)
    trace = await node2.footprint(container_id)
    assert (trace.rootfs_mounts, trace.mount_holders) == (0, [])
    assert await node2.leaks() == []


async def test_export_of_running_container_reuses_its_mount(node2: Node2, tmp_path: Path) -> None:
    container_id = await node2.create()
    await node2.stack.berth.start(container_id)
    node2.agent.set_faults(
        {"point": "export:before", "action": "sleep", "seconds": 1, "container": container_id}
    )

    export = asyncio.ensure_future(node2.stack.berth.export(container_id, str(tmp_path / "a.tar")))
    for _ in range(100):
        if len((await node2.footprint(container_id)).mount_holders) == 2:
            break
        await asyncio.sleep(0.05)
    during = await node2.footprint(container_id)
    await export

    assert during.rootfs_mounts == 1
    assert during.mount_holders[1] == "task" and during.mount_holders[0].startswith("export:")
    after = await node2.footprint(container_id)
    assert (after.rootfs_mounts, after.mount_holders) == (1, ["task"])
    assert await node2.leaks() == []


async def test_export_during_start_keeps_one_mount_and_it_goes_with_the_last_holder(
    node2: Node2, tmp_path: Path
) -> None:
    container_id = await node2.create()
    node2.agent.set_faults(
        {"point": "spec:before", "action": "sleep", "seconds": 2, "container": container_id},
        {"point": "task:before", "action": "fail", "container": container_id},
        {"point": "export:after", "action": "sleep", "seconds": 4, "container": container_id},
    )
    start = await node2.start_workflow(container_id)
    netns = node2.settings.node_paths().netns(container_id)

    async def in_spec() -> bool:
        return await asyncio.to_thread(netns_exists, netns)

    await wait_until(in_spec)  # mounted and attached: the start stalls before its spec

    export = asyncio.ensure_future(node2.stack.berth.export(container_id, str(tmp_path / "b.tar")))
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(start.result(), RESULT_TIMEOUT)  # fails at task, unwinds
    while_export_holds = await node2.footprint(container_id)
    await export

    # The start released its holder, but the export still held the rootfs: it stayed mounted,
    # once; it went away exactly when the export released it.
    assert while_export_holds.rootfs_mounts == 1
    assert [h.split(":")[0] for h in while_export_holds.mount_holders] == ["export"]
    assert (await node2.footprint(container_id)).empty
    assert await node2.leaks() == []


async def test_export_through_a_symlinked_directory_is_refused(
    node2: Node2, tmp_path: Path
) -> None:
    container_id = await node2.create()
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)

    with pytest.raises(InvalidParameter, match="symlink"):
        await node2.stack.berth.export(container_id, str(link / "fs.tar"))

    assert list(real.iterdir()) == []
    assert (await node2.footprint(container_id)).empty


async def test_export_replaces_a_symlink_at_the_output_instead_of_following_it(
    node2: Node2, tmp_path: Path
) -> None:
    container_id = await node2.create()
    victim = tmp_path / f"victim-{uuid.uuid4().hex[:6]}"
    victim.write_text("keep me")
    output = tmp_path / "out" / "fs.tar"
    output.parent.mkdir()
    output.symlink_to(victim)

    await node2.stack.berth.export(container_id, str(output))

    assert victim.read_text() == "keep me"
    assert not os.path.islink(output) and "./bin/busybox" in members(output)
