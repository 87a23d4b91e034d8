"""A private containerd with the busybox image imported, and rootfs snapshots mounted for tests.

containerd runs under the session's suite state dir (tests/support/stack.py: a short /tmp path,
as unix socket paths are limited to 108 bytes) and is stopped when the session ends; the suite's
teardown then ends whatever is left, unmounts everything under the dir and removes it.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from berth.config import NodePaths
from berth.runtime.containerd import ContainerdClient, ImageInfo
from berth.runtime.containerd_daemon import start_containerd, stop_containerd
from berth.runtime.image import DEFAULT_REF, build_busybox_image, import_image
from berth.runtime.types import Mount
from tests.support.stack import Suite

NODE = "test-rt"
NAMESPACE = "berth-test"


def mounts_under(directory: Path) -> list[Path]:
    """Kernel mount points at or below ``directory``, deepest first."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = Path(line.split()[4].encode().decode("unicode_escape"))
        if point == directory or directory in point.parents:
            points.append(point)
    return sorted(points, key=lambda p: len(p.parts), reverse=True)


def mount_snapshot(mounts: list[Mount], target: Path) -> None:
    """Mount a snapshot's mounts at ``target`` (tests only; Berth's own is runtime/mounts.py)."""
    target.mkdir(parents=True, exist_ok=True)
    for mount in mounts:
        subprocess.run(
            ["mount", "-t", mount.type, "-o", ",".join(mount.options), mount.source, str(target)],
            check=True,
            capture_output=True,
        )


def unmount(target: Path) -> None:
    """Unmount ``target`` if it is a mount point."""
    if target in mounts_under(target):
        subprocess.run(["umount", str(target)], check=True, capture_output=True)


@pytest.fixture(scope="session")
def state_dir(suite: Suite) -> Path:
    """The suite's short-pathed state dir, cleared by the suite's teardown."""
    return suite.state_dir


@pytest.fixture(scope="session")
def node_paths(state_dir: Path) -> NodePaths:
    return NodePaths(state_dir, NODE)


@pytest.fixture(scope="session")
def image_tar(state_dir: Path) -> Path:
    return build_busybox_image(state_dir / "busybox.tar", DEFAULT_REF)


@pytest.fixture(scope="session")
async def containerd(node_paths: NodePaths, image_tar: Path) -> AsyncIterator[NodePaths]:
    """A running containerd for the session, with the busybox image imported and unpacked."""
    try:
        await start_containerd(node_paths)
        await import_image(node_paths, NAMESPACE, image_tar, DEFAULT_REF)
        yield node_paths
    finally:
        try:
            async with ContainerdClient(node_paths.containerd_socket, NAMESPACE, NODE) as client:
                for task in await client.list_tasks():
                    await client.delete_task(task.id)
                for container_id in await client.list_containers():
                    await client.delete_container(container_id)
        finally:
            await stop_containerd(node_paths)
        with contextlib.suppress(OSError):
            Path("/run/containerd/runc", NAMESPACE).rmdir()


@pytest.fixture
def node_name() -> str:
    return NODE


@pytest.fixture(name="mount_snapshot")
def mount_snapshot_fixture() -> Callable[[list[Mount], Path], None]:
    return mount_snapshot


@pytest.fixture(name="unmount")
def unmount_fixture() -> Callable[[Path], None]:
    return unmount


@pytest.fixture
async def client(containerd: NodePaths) -> AsyncIterator[ContainerdClient]:
    async with ContainerdClient(containerd.containerd_socket, NAMESPACE, NODE) as c:
        yield c


@pytest.fixture
async def image(client: ContainerdClient) -> ImageInfo:
    return await client.resolve_image(DEFAULT_REF)


@dataclass(frozen=True)
class Rootfs:
    """A container id with its snapshot prepared and mounted."""

    container_id: str
    snapshot_key: str
    path: Path
    log: Path


@pytest.fixture
async def rootfs(
    client: ContainerdClient, image: ImageInfo, containerd: NodePaths
) -> AsyncIterator[Rootfs]:
    """A fresh container id whose rootfs is mounted; task, container, mount, snapshot undone."""
    container_id = uuid.uuid4().hex + uuid.uuid4().hex
    key = f"berth-test-{container_id}"
    path = containerd.rootfs(container_id)
    mount_snapshot(await client.prepare_snapshot(key, image.chain_id), path)
    try:
        yield Rootfs(container_id, key, path, containerd.log(container_id))
    finally:
        await client.delete_task(container_id)
        await client.delete_container(container_id)
        unmount(path)
        await client.remove_snapshot(key)
