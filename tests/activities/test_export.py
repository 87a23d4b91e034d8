"""export_to: the output confined to allowed directories; the tar built without trusting the rootfs.

Plain directories stand in for a rootfs here; the real stack's attacks are in
tests/integration/test_container_export.py.
"""

from __future__ import annotations

import asyncio
import os
import stat
import tarfile
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from berth.activities import export
from berth.activities.export import ExportActivities, ExportDirectories, export_to
from berth.config import NodePaths
from berth.errors import Forbidden, InvalidParameter
from berth.steps import ExportRootfsInput


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0::/:/bin/sh\n")
    return root


@pytest.fixture
def own(tmp_path: Path) -> Path:
    return tmp_path / "node" / "exports"


def test_export_to_own_directory_creates_it_private_and_writes_the_tar(
    rootfs: Path, own: Path
) -> None:
    size = export_to(rootfs, own / "fs.tar", ExportDirectories(own))

    assert stat.S_IMODE(own.stat().st_mode) == 0o700
    assert size == (own / "fs.tar").stat().st_size
    with tarfile.open(own / "fs.tar") as tar:
        assert tar.getnames() == [".", "./etc", "./etc/passwd"]
        assert tar.extractfile("./etc/passwd").read() == b"root:x:0:0::/:/bin/sh\n"  # type: ignore[union-attr]


def test_export_outside_the_allowed_directories_is_forbidden(
    rootfs: Path, own: Path, tmp_path: Path
) -> None:
    with pytest.raises(Forbidden, match=r"output: .* not in an allowed export directory"):
        export_to(rootfs, tmp_path / "fs.tar", ExportDirectories(own))
    assert not (tmp_path / "fs.tar").exists()


def test_export_to_an_operator_directory_reached_via_symlink_uses_the_resolved_path(
    rootfs: Path, own: Path, tmp_path: Path
) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    directories = ExportDirectories(own, [tmp_path / "alias"])

    export_to(rootfs, tmp_path / "real" / "fs.tar", directories)
    with pytest.raises(Forbidden):  # the unresolved spelling is not what is allowed
        export_to(rootfs, tmp_path / "alias" / "other.tar", directories)

    assert os.listdir(tmp_path / "real") == ["fs.tar"]


def test_export_into_a_missing_subdirectory_raises_invalid_parameter(
    rootfs: Path, own: Path
) -> None:
    with pytest.raises(InvalidParameter, match="does not exist"):
        export_to(rootfs, own / "missing" / "fs.tar", ExportDirectories(own))


def test_export_relative_or_dotdot_output_raises_invalid_parameter(rootfs: Path, own: Path) -> None:
    for output in (Path("fs.tar"), own / ".." / "fs.tar"):
        with pytest.raises(InvalidParameter, match="output: "):
            export_to(rootfs, output, ExportDirectories(own))


def test_export_stores_device_nodes_and_fifos_as_headers_without_opening_them(
    rootfs: Path, own: Path
) -> None:
    zero = os.stat("/dev/zero").st_rdev  # opened and read, it would never end
    os.mknod(rootfs / "zero", stat.S_IFCHR | 0o600, zero)
    os.mkfifo(rootfs / "pipe")  # opened for reading without a writer, it would block

    export_to(rootfs, own / "fs.tar", ExportDirectories(own))

    with tarfile.open(own / "fs.tar") as tar:
        device, pipe = tar.getmember("./zero"), tar.getmember("./pipe")
    assert device.ischr() and (device.devmajor, device.devminor) == (os.major(zero), os.minor(zero))
    assert pipe.isfifo() and pipe.size == 0


def test_export_keeps_symlinks_as_links_and_hard_links_once(rootfs: Path, own: Path) -> None:
    (rootfs / "etc/shadow").symlink_to("/etc/shadow")  # the host's, if it were followed
    os.link(rootfs / "etc/passwd", rootfs / "etc/passwd-")

    export_to(rootfs, own / "fs.tar", ExportDirectories(own))

    with tarfile.open(own / "fs.tar") as tar:
        link, hard = tar.getmember("./etc/shadow"), tar.getmember("./etc/passwd-")
    assert link.issym() and link.linkname == "/etc/shadow"
    assert hard.islnk() and hard.linkname == "./etc/passwd"


@pytest.fixture
def node(tmp_path: Path) -> tuple[ExportActivities, NodePaths, str]:
    paths = NodePaths(tmp_path / "state", "node-t")
    container_id = "c" * 64
    for index in range(2000):  # enough entries for the walk to outlast a few heartbeats
        directory = paths.rootfs(container_id) / f"d{index % 20}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"f{index}").write_bytes(b"x" * 512)
    return ExportActivities(None, paths), paths, container_id  # type: ignore[arg-type]


async def test_export_rootfs_heartbeats_while_the_walk_runs(
    node: tuple[ExportActivities, NodePaths, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    activities, paths, container_id = node
    monkeypatch.setattr(export, "HEARTBEAT_SECONDS", 0.001)
    beats: list[object] = []
    environment = ActivityEnvironment()
    environment.on_heartbeat = lambda *details: beats.append(details)
    output = paths.exports_dir / "fs.tar"

    written = await environment.run(
        activities.export_rootfs,
        ExportRootfsInput(container_id=container_id, node="node-t", output=str(output)),
    )

    assert written.size_bytes == output.stat().st_size
    assert beats


async def test_export_rootfs_cancelled_stops_the_walk_and_leaves_no_file(
    node: tuple[ExportActivities, NodePaths, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    activities, paths, container_id = node
    monkeypatch.setattr(export, "HEARTBEAT_SECONDS", 0.001)
    environment = ActivityEnvironment()
    started = asyncio.Event()
    environment.on_heartbeat = lambda *details: started.set()
    request = ExportRootfsInput(
        container_id=container_id, node="node-t", output=str(paths.exports_dir / "fs.tar")
    )

    running = asyncio.ensure_future(environment.run(activities.export_rootfs, request))
    await asyncio.wait_for(started.wait(), 10)
    environment.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running

    assert os.listdir(paths.exports_dir) == []
