"""``ImageLoadOnNode`` (``berth image load``) on the real stack: archives on node-1, loaded into
its containerd, confined to its imports directory."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.errors import Forbidden, InvalidParameter
from berth.image_client import ImageClient
from berth.runtime.image import build_oci_layout, busybox_rootfs_tar, file_layer
from tests.integration.conftest import ROOT, Stack


@pytest.fixture
def images(stack: Stack) -> ImageClient:
    return ImageClient(stack.berth.temporal, stack.settings.task_queue)


@pytest.fixture
def imports(stack: Stack) -> Iterator[Path]:
    """node-1's own imports directory (the one place a load may read without settings)."""
    directory = stack.settings.node_paths().imports_dir
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    yield directory


def _layers(tmp: Path) -> list[bytes]:
    rootfs = busybox_rootfs_tar(tmp / "rootfs.tar").read_bytes()
    return [rootfs, file_layer({"etc/berth-loaded": f"{uuid.uuid4()}\n".encode()})]


def docker_save(out: Path, tag: str, layers: list[bytes]) -> Path:
    """A ``docker save`` archive (manifest.json, <id>.json, <dir>/layer.tar) of ``layers``."""
    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    files = {config_name: config}
    paths = []
    for index, layer in enumerate(layers):
        paths.append(f"layer{index}/layer.tar")
        files[paths[-1]] = layer
    files["manifest.json"] = json.dumps(
        [{"Config": config_name, "RepoTags": [tag], "Layers": paths}]
    ).encode()
    with tarfile.open(out, "w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out


async def test_image_load_of_oci_layout_records_it_and_a_container_runs_from_it(
    stack: Stack, images: ImageClient, imports: Path, tmp_path: Path
) -> None:
    ref = f"loaded/oci-{uuid.uuid4().hex[:8]}:v1"
    archive = build_oci_layout(imports / f"{uuid.uuid4().hex}.tar", ref, _layers(tmp_path), "gzip")
    try:
        loaded = await images.load("node-1", str(archive))
    finally:
        archive.unlink()

    assert [image.reference for image in loaded.images] == [ref]
    container_id = await stack.create(
        image=ref, pull_policy="never", cmd=["cat", "/etc/berth-loaded"]
    )
    assert (await stack.berth.start(container_id)).pid > 0
    assert [lease for lease in await leases_of(stack) if "pull" in lease] == []


async def test_image_load_of_docker_save_archive_records_its_repo_tags(
    stack: Stack, images: ImageClient, imports: Path, tmp_path: Path
) -> None:
    tag = f"saved/busybox-{uuid.uuid4().hex[:8]}:v2"
    archive = docker_save(imports / f"{uuid.uuid4().hex}.tar", tag, _layers(tmp_path))
    try:
        loaded = await images.load("node-1", str(archive))
    finally:
        archive.unlink()

    assert [image.reference for image in loaded.images] == [tag]
    resolved = await stack.containerd.resolve_image(tag)
    assert resolved.config["Cmd"] == ["sh"]


async def test_image_load_outside_the_import_directories_is_forbidden(
    stack: Stack, images: ImageClient, tmp_path: Path
) -> None:
    outside = ROOT / "test-artifacts" / f"outside-{uuid.uuid4().hex[:8]}.tar"
    outside.parent.mkdir(parents=True, exist_ok=True)
    build_oci_layout(outside, "loaded/outside:v1", _layers(tmp_path))
    try:
        with pytest.raises(Forbidden):
            await images.load("node-1", str(outside))
    finally:
        outside.unlink()

    names = {record.name for record in await stack.containerd.list_images()}
    assert "loaded/outside:v1" not in names


async def test_image_load_of_a_file_that_is_no_image_archive_is_invalid(
    stack: Stack, images: ImageClient, imports: Path
) -> None:
    junk = imports / f"{uuid.uuid4().hex}.tar"
    junk.write_bytes(b"not a tar at all" * 100)
    try:
        with pytest.raises(InvalidParameter, match="image archive"):
            await images.load("node-1", str(junk))
    finally:
        junk.unlink()

    assert [lease for lease in await leases_of(stack) if "pull" in lease] == []


async def leases_of(stack: Stack) -> list[str]:
    return await stack.containerd.list_leases()
