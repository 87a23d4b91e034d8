"""The busybox OCI image tar and its import into a real containerd."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from berth.config import NodePaths
from berth.errors import NotFound
from berth.runtime.containerd import ContainerdClient
from berth.runtime.image import DEFAULT_REF, build_busybox_image, import_image


def _member(tar_path: Path, name: str) -> bytes:
    with tarfile.open(tar_path) as tar:
        member = tar.extractfile(name)
        assert member is not None
        return member.read()


def test_build_busybox_image_twice_same_bytes(tmp_path: Path) -> None:
    first = build_busybox_image(tmp_path / "a.tar").read_bytes()
    assert build_busybox_image(tmp_path / "b.tar").read_bytes() == first


def test_build_busybox_image_index_names_the_ref(tmp_path: Path) -> None:
    tar = build_busybox_image(tmp_path / "i.tar", "local/other:v1")
    annotations = json.loads(_member(tar, "index.json"))["manifests"][0]["annotations"]
    assert annotations["io.containerd.image.name"] == "local/other:v1"
    assert annotations["org.opencontainers.image.ref.name"] == "local/other:v1"
    assert json.loads(_member(tar, "oci-layout")) == {"imageLayoutVersion": "1.0.0"}


def test_build_busybox_image_layer_has_busybox_applets_and_users(tmp_path: Path) -> None:
    tar = build_busybox_image(tmp_path / "i.tar")
    index = json.loads(_member(tar, "index.json"))
    manifest = json.loads(_member(tar, "blobs/sha256/" + index["manifests"][0]["digest"][7:]))
    config = json.loads(_member(tar, "blobs/sha256/" + manifest["config"]["digest"][7:]))
    layer_name = "blobs/sha256/" + manifest["layers"][0]["digest"][7:]
    with tarfile.open(tar) as outer, tarfile.open(fileobj=outer.extractfile(layer_name)) as layer:
        members = {m.name: m for m in layer.getmembers()}
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "busybox"
    assert b"nobody" in _member_bytes(tar, layer_name, "etc/passwd")
    assert {"tmp", "root", "etc/group"} <= set(members)
    assert config["config"]["Cmd"] == ["sh"]
    assert config["rootfs"]["diff_ids"] == [manifest["layers"][0]["digest"]]


def _member_bytes(tar_path: Path, layer_name: str, name: str) -> bytes:
    with (
        tarfile.open(tar_path) as outer,
        tarfile.open(fileobj=outer.extractfile(layer_name)) as layer,
    ):
        member = layer.extractfile(name)
        assert member is not None
        return member.read()


async def test_import_image_into_new_namespace_resolves_unpacked(
    containerd: NodePaths, image_tar: Path
) -> None:
    namespace = "berth-test-import"
    async with ContainerdClient(containerd.containerd_socket, namespace, "test-rt") as client:
        with pytest.raises(NotFound):
            await client.resolve_image(DEFAULT_REF)
        await import_image(containerd, namespace, image_tar, DEFAULT_REF)
        image = await client.resolve_image(DEFAULT_REF)
        assert image.chain_id in await client.list_snapshots()


async def test_import_image_already_imported_keeps_the_same_image(
    containerd: NodePaths, image_tar: Path, client: ContainerdClient
) -> None:
    before = await client.resolve_image(DEFAULT_REF)
    await import_image(containerd, "berth-test", image_tar, DEFAULT_REF)
    assert await client.resolve_image(DEFAULT_REF) == before
