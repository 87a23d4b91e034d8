"""A named volume's directory on the node: made on first use, filled from the image without
following the image's links, and never made twice."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from berth import volumes_host
from berth.config import NodePaths
from berth.contract import VolumeMount
from berth.volumes_host import (
    data_dir,
    make_volume_dir,
    prepare_volumes,
    remove_volume_dir,
    volume_dir,
    volume_names,
)


@pytest.fixture
def paths(tmp_path: Path) -> NodePaths:
    return NodePaths(tmp_path / "state", "node-1")


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "data" / "sub").mkdir(parents=True)
    (root / "data" / "file").write_text("from the image\n")
    (root / "data" / "sub" / "deep").write_text("deep\n")
    os.symlink("/etc/passwd", root / "data" / "link")
    os.mkfifo(root / "data" / "fifo")
    os.chmod(root / "data", 0o750)
    return root


def mount(name: str, target: str) -> VolumeMount:
    return VolumeMount(name=name, target=target)


def test_prepare_volumes_first_use_copies_the_image_content_at_the_target(
    paths: NodePaths, rootfs: Path
) -> None:
    [source] = prepare_volumes(paths, "c1", [mount("data", "/data")], rootfs)

    data = Path(source)
    assert data == data_dir(paths, "data")
    assert sorted(os.listdir(data)) == ["file", "link", "sub"]  # no FIFO
    assert (data / "file").read_text() == "from the image\n"
    assert (data / "sub" / "deep").read_text() == "deep\n"
    assert os.readlink(data / "link") == "/etc/passwd"  # a link, as it was; not its target
    assert data.stat().st_mode & 0o777 == 0o750
    assert volume_dir(paths, "data").stat().st_mode & 0o777 == 0o700


def test_prepare_volumes_target_through_a_link_copies_nothing(
    paths: NodePaths, rootfs: Path
) -> None:
    os.symlink("/etc", rootfs / "escape")

    [source] = prepare_volumes(paths, "c1", [mount("esc", "/escape")], rootfs)

    assert os.listdir(source) == []


def test_prepare_volumes_missing_target_makes_an_empty_volume(
    paths: NodePaths, rootfs: Path
) -> None:
    [source] = prepare_volumes(paths, "c1", [mount("empty", "/no/such")], rootfs)

    assert os.listdir(source) == []
    assert Path(source).stat().st_mode & 0o777 == 0o755


def test_prepare_volumes_existing_data_is_used_as_is(paths: NodePaths, rootfs: Path) -> None:
    [source] = prepare_volumes(paths, "c1", [mount("data", "/data")], rootfs)
    (Path(source) / "file").write_text("changed by a container\n")
    (Path(source) / "new").write_text("new\n")

    prepare_volumes(paths, "c2", [mount("data", "/data")], rootfs)

    assert (Path(source) / "file").read_text() == "changed by a container\n"
    assert (Path(source) / "new").exists()


def test_prepare_volumes_after_a_crash_mid_copy_discards_the_partial_copy(
    paths: NodePaths, rootfs: Path
) -> None:
    partial = make_volume_dir(paths, "data") / ".init-c1"
    partial.mkdir()
    (partial / "half").write_text("x")

    [source] = prepare_volumes(paths, "c1", [mount("data", "/data")], rootfs)

    assert not partial.exists()
    assert sorted(os.listdir(source)) == ["file", "link", "sub"]


def test_prepare_volumes_second_populator_keeps_the_first_data(
    paths: NodePaths, rootfs: Path
) -> None:
    # Two starts raced: the other one's _data landed first; this one's copy is dropped.
    first = data_dir(paths, "data")
    first.mkdir(parents=True)
    (first / "mine").write_text("first\n")
    (volume_dir(paths, "data") / ".init-c2").mkdir()

    volumes_host._populate(volume_dir(paths, "data"), "c2", rootfs, "/data")

    assert os.listdir(first) == ["mine"]
    assert os.listdir(volume_dir(paths, "data")) == ["_data"]


def test_remove_volume_dir_deletes_data_without_following_links(
    paths: NodePaths, rootfs: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep\n")
    [source] = prepare_volumes(paths, "c1", [mount("data", "/data")], rootfs)
    os.symlink(outside, Path(source) / "to-outside")

    remove_volume_dir(paths, "data")
    remove_volume_dir(paths, "data")  # converges

    assert volume_names(paths) == frozenset()
    assert (outside / "keep").read_text() == "keep\n"
