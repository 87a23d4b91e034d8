"""Kernel rootfs mounts on the real kernel: overlay and bind, idempotence, busy unmounts."""

from __future__ import annotations

import errno
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.errors import System
from berth.runtime.mounts import (
    is_mounted,
    mount_rootfs,
    mount_table,
    mounts_under,
    unmount_rootfs,
)
from berth.runtime.types import Mount


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short temp dir; every mount left under it is undone before it is removed."""
    directory = Path(tempfile.mkdtemp(prefix="bt", dir="/tmp"))
    yield directory
    leaked = mounts_under(directory)
    for point in reversed(leaked):
        subprocess.run(["umount", "-l", str(point)], check=False)
    shutil.rmtree(directory)
    assert leaked == [], "test left mounts behind"


def make_overlay(root: Path, lowers: int = 1, name: str = "lower") -> Mount:
    """An overlay over fresh lower dirs (each with a marker file) and fresh upper and work dirs."""
    lower_dirs = []
    for index in range(lowers):
        lower = root / f"{name}{index}"
        lower.mkdir()
        (lower / f"marker{index}").write_text("lower")
        lower_dirs.append(str(lower))
    (root / "upper").mkdir()
    (root / "work").mkdir()
    return Mount(
        type="overlay",
        source="overlay",
        options=(
            f"lowerdir={':'.join(reversed(lower_dirs))}",
            f"upperdir={root / 'upper'}",
            f"workdir={root / 'work'}",
        ),
    )


def entries_at(target: Path) -> int:
    return sum(1 for entry in mount_table() if entry.mount_point == target)


def test_mount_rootfs_overlay_shows_lower_and_writes_to_upper(workdir: Path) -> None:
    target = workdir / "rootfs"
    mount_rootfs([make_overlay(workdir)], target)
    (target / "new").write_text("x")
    assert (target / "marker0").read_text() == "lower"
    assert (workdir / "upper" / "new").read_text() == "x"
    assert not (workdir / "lower0" / "new").exists()
    unmount_rootfs(target)


def test_mount_rootfs_twice_leaves_one_mount(workdir: Path) -> None:
    target = workdir / "rootfs"
    mount = make_overlay(workdir)
    mount_rootfs([mount], target)
    mount_rootfs([mount], target)
    assert entries_at(target) == 1
    unmount_rootfs(target)


def test_mount_rootfs_missing_lowerdir_raises_system(workdir: Path) -> None:
    mount = Mount("overlay", "overlay", (f"lowerdir={workdir / 'absent'}",))
    with pytest.raises(System, match="No such file or directory"):
        mount_rootfs([mount], workdir / "rootfs")
    assert not is_mounted(workdir / "rootfs")


def test_mount_rootfs_options_longer_than_a_page_mounts(workdir: Path) -> None:
    layers = workdir / "snapshots-with-a-rather-long-directory-name"
    layers.mkdir()
    mount = make_overlay(layers, lowers=60, name="layer-with-a-long-name-to-fill-the-page-")
    assert len(",".join(mount.options)) > 4096
    target = workdir / "rootfs"
    mount_rootfs([mount], target)
    assert (target / "marker0").exists()
    assert (target / "marker59").exists()
    unmount_rootfs(target)


def test_mount_rootfs_bind_ro_is_read_only(workdir: Path) -> None:
    source = workdir / "source"
    source.mkdir()
    target = workdir / "rootfs"
    mount_rootfs([Mount("bind", str(source), ("rbind", "ro"))], target)
    with pytest.raises(OSError) as raised:
        (target / "file").write_text("x")
    assert raised.value.errno == errno.EROFS
    unmount_rootfs(target)


def test_is_mounted_path_with_space_true(workdir: Path) -> None:
    target = workdir / "root fs"
    mount_rootfs([make_overlay(workdir)], target)
    assert is_mounted(target)
    unmount_rootfs(target)


def test_is_mounted_plain_directory_false(workdir: Path) -> None:
    assert not is_mounted(workdir)


def test_unmount_rootfs_mounted_removes_mount_and_directory(workdir: Path) -> None:
    target = workdir / "rootfs"
    mount_rootfs([make_overlay(workdir)], target)
    unmount_rootfs(target)
    assert entries_at(target) == 0
    assert not target.exists()


def test_unmount_rootfs_missing_target_succeeds(workdir: Path) -> None:
    unmount_rootfs(workdir / "never-mounted")
    unmount_rootfs(workdir / "never-mounted")


def test_unmount_rootfs_busy_ends_unmounted(workdir: Path) -> None:
    target = workdir / "rootfs"
    mount_rootfs([make_overlay(workdir)], target)
    holder = subprocess.Popen(["sleep", "60"], cwd=target)
    try:
        unmount_rootfs(target)
        assert not is_mounted(target)
        assert not target.exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_unmount_rootfs_nested_mounts_removes_all(workdir: Path) -> None:
    target = workdir / "rootfs"
    mount_rootfs([make_overlay(workdir)], target)
    nested = workdir / "nested"
    nested.mkdir()
    mount_rootfs([make_overlay(nested)], target / "inner")
    unmount_rootfs(target)
    assert mounts_under(workdir) == []


def test_mounts_under_nested_mounts_finds_all(workdir: Path) -> None:
    target = workdir / "rootfs"
    mount_rootfs([make_overlay(workdir)], target)
    nested = workdir / "nested"
    nested.mkdir()
    mount_rootfs([make_overlay(nested)], target / "inner")
    assert mounts_under(workdir) == [target, target / "inner"]
    unmount_rootfs(target)
