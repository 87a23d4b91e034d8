"""``berth export``: a second mount holder beside start; its output confined, its walk untrusting.

Node-2's agent (a subprocess) writes only to its own ``<state>/nodes/node-2/exports``; the
in-process node also to the operator-listed ``test-artifacts/exports`` (see conftest).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import stat
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError

from berth.errors import Forbidden
from berth.runtime.netns import netns_exists
from tests.integration.conftest import EXPORT_ROOT, Stack
from tests.integration.node_agent import (
    Node2,
)
from tests.integration.test_crash_safety import RESULT_TIMEOUT, wait_until


def members(path: Path) -> set[str]:
    with tarfile.open(path) as tar:
        return set(tar.getnames())


def private_dir(parent: Path) -> Iterator[Path]:
    """A fresh directory of this test under ``parent`` (an allowed export directory)."""
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory = parent / f"t-{uuid.uuid4().hex[:8]}"
    directory.mkdir()
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def exports(node2: Node2) -> Iterator[Path]:
    """A directory under node-2's own export directory."""
    yield from private_dir(node2.settings.node_paths().exports_dir)


@pytest.fixture
def node1_exports() -> Iterator[Path]:
    """A directory under the operator-listed export directory of the in-process node."""
    yield from private_dir(EXPORT_ROOT)


@pytest.fixture
def decoy() -> Iterator[tuple[Path, bytes]]:
    """A host file in /etc with a unique marker; removed afterwards."""
    marker = f"berth-host-marker-{uuid.uuid4().hex}".encode()
    path = Path(f"/etc/berth-decoy-{uuid.uuid4().hex[:12]}")
    path.write_bytes(marker)
    yield path, marker
    path.unlink(missing_ok=True)


def snapshot(path: Path) -> tuple[bytes, int, int]:
    info = path.stat()
    return path.read_bytes(), info.st_mtime_ns, info.st_ino


async def test_export_of_created_container_mounts_then_unmounts(
    node2: Node2, exports: Path
) -> None:
    container_id = await node2.create()
    output = exports / "fs.tar"

    exported = await node2.stack.berth.export(container_id, str(output))

    assert exported.size_bytes == output.stat().st_size > 0
    assert "./bin/busybox" in members(output)
    trace = await node2.footprint(container_id)
    assert (trace.rootfs_mounts, trace.mount_holders) == (0, [])
    assert await node2.leaks() == []


async def test_export_of_running_container_reuses_its_mount(node2: Node2, exports: Path) -> None:
    container_id = await node2.create()
    await node2.stack.berth.start(container_id)
    node2.agent.set_faults(
        {"point": "export:before", "action": "sleep", "seconds": 1, "container": container_id}
    )

    export = asyncio.ensure_future(node2.stack.berth.export(container_id, str(exports / "a.tar")))
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
    node2: Node2, exports: Path
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

    export = asyncio.ensure_future(node2.stack.berth.export(container_id, str(exports / "b.tar")))
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


async def test_export_over_a_host_file_outside_the_allowed_directories_is_forbidden(
    node2: Node2, decoy: tuple[Path, bytes]
) -> None:
    container_id = await node2.create()
    path, _ = decoy
    before = snapshot(path)
    etc_before = set(os.listdir("/etc"))

    with pytest.raises(Forbidden, match=f"output: {path} is not in an allowed export directory"):
        await node2.stack.berth.export(container_id, str(path))

    assert snapshot(path) == before
    assert set(os.listdir("/etc")) == etc_before  # no temporary file either
    assert (await node2.footprint(container_id)).empty


async def test_export_to_a_new_path_outside_the_allowed_directories_is_forbidden(
    node2: Node2, tmp_path: Path
) -> None:
    container_id = await node2.create()
    output = tmp_path / "fs.tar"

    with pytest.raises(Forbidden, match="output: "):
        await node2.stack.berth.export(container_id, str(output))

    assert list(tmp_path.iterdir()) == []
    assert (await node2.footprint(container_id)).empty


async def test_export_through_a_symlinked_directory_is_forbidden(
    node2: Node2, exports: Path, tmp_path: Path
) -> None:
    container_id = await node2.create()
    (exports / "link").symlink_to(tmp_path)  # inside the allowed directory, pointing out

    with pytest.raises(Forbidden, match=r"output: directory .*link is reached through a symlink"):
        await node2.stack.berth.export(container_id, str(exports / "link" / "fs.tar"))

    assert list(tmp_path.iterdir()) == []
    assert (await node2.footprint(container_id)).empty


async def test_export_replaces_a_symlink_at_the_output_instead_of_following_it(
    node2: Node2, exports: Path, decoy: tuple[Path, bytes]
) -> None:
    container_id = await node2.create()
    path, _ = decoy
    before = snapshot(path)
    output = exports / "fs.tar"
    output.symlink_to(path)

    await node2.stack.berth.export(container_id, str(output))

    assert snapshot(path) == before
    assert not output.is_symlink() and "./bin/busybox" in members(output)


async def test_export_over_a_fifo_or_directory_is_forbidden_and_leaves_it(
    node2: Node2, exports: Path
) -> None:
    container_id = await node2.create()
    os.mkfifo(exports / "pipe")
    (exports / "dir").mkdir()

    for name, kind in (("pipe", "a FIFO"), ("dir", "a directory")):
        with pytest.raises(Forbidden, match=f"output: .*{name} exists and is {kind}"):
            await node2.stack.berth.export(container_id, str(exports / name))

    assert stat.S_ISFIFO((exports / "pipe").lstat().st_mode)
    assert sorted(os.listdir(exports)) == ["dir", "pipe"]
    assert list((exports / "dir").iterdir()) == []


async def test_export_to_an_operator_listed_directory_writes_the_tar(
    stack: Stack, node1_exports: Path
) -> None:
    container_id = await stack.create()
    output = node1_exports / "fs.tar"

    exported = await stack.berth.export(container_id, str(output))

    assert exported.size_bytes == output.stat().st_size
    assert {"./bin/busybox", "./bin/sh", "./etc/passwd"} <= members(output)
    with tarfile.open(output) as tar:
        assert tar.getmember("./bin/sh").issym() and tar.getmember("./bin/sh").linkname == "busybox"


def swapping_command(decoy: Path) -> list[str]:
    """A container that races exports (CVE-2018-15664): files and directories become host links.

    ``/swap`` alternates between a regular file and a symlink to the host's ``decoy``; ``/d``
    alternates between a directory and a symlink to ``/etc``. ``/d`` holds files named as the
    host's ``/etc`` files and the decoy's name last, so a walk that lists ``/d`` and then opens
    its entries by path after the swap reads the host's files.
    """
    names = sorted(
        name
        for name in os.listdir("/etc")
        if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) and (Path("/etc") / name).is_file()
    )[:150]
    files = " ".join([*names, decoy.name])
    script = (
        f"mkdir /d && for n in {files}; do echo container > /d/$n; done; "
        "while :; do "
        "echo container > /s.tmp; mv -f /s.tmp /swap; "
        f"ln -sf {decoy} /s.lnk; mv -f /s.lnk /swap; "
        "mv /d /d2; ln -s /etc /d; rm /d; mv /d2 /d; "
        "done"
    )
    return ["sh", "-c", script]


async def test_export_of_a_container_swapping_files_for_host_symlinks_gets_no_host_bytes(
    stack: Stack, node1_exports: Path, decoy: tuple[Path, bytes]
) -> None:
    path, marker = decoy
    container_id = await stack.create(cmd=swapping_command(path))
    await stack.berth.start(container_id)
    rootfs = stack.settings.node_paths().rootfs(container_id)

    async def populated() -> bool:
        return (rootfs / "swap").exists() or (rootfs / "swap").is_symlink()

    await wait_until(populated)
    swaps: set[str] = set()
    for index in range(8):
        output = node1_exports / f"{index}.tar"
        await stack.berth.export(container_id, str(output))
        assert marker not in output.read_bytes()
        with tarfile.open(output) as tar:
            if "./swap" in tar.getnames():
                swaps.add("link" if tar.getmember("./swap").issym() else "file")
            for member in tar.getmembers():
                assert not member.issym() or member.linkname in ("busybox", str(path), "/etc")

    assert swaps  # the race ran: the container's file was there to export
    assert snapshot(path)[0] == marker
