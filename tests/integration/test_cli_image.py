"""``berth image pull|ls|rm`` on the real stack (the suite's registry, node-1's agent)."""

from __future__ import annotations

import uuid
from pathlib import Path

from berth.runtime.image import build_oci_layout, busybox_rootfs_tar
from dev.registry import LocalRegistry
from tests.integration.conftest import Stack
from tests.integration.test_cli import run
from tests.integration.test_image_pull import push_image
from tests.support.stack import SuiteStack


async def test_cli_image_pull_ls_rm_round_trip(
    stack: Stack, suite_stack: SuiteStack, tmp_path: Path
) -> None:
    registry: LocalRegistry = suite_stack.registry
    image = push_image(registry, tmp_path, layers=2)
    repository, tag = image.ref.rsplit(":", 1)

    pulled = await run(stack, "image", "pull", "--node", "node-1", image.ref)
    listed = await run(stack, "image", "ls")  # every live node
    removed = await run(stack, "image", "rm", "--node", "node-1", image.ref)
    after = await run(stack, "image", "ls", "--node", "node-1", "-q")

    assert pulled.returncode == 0, pulled.stderr
    assert f"node-1: Downloaded newer image for {image.ref}" in pulled.stdout
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split() == [
        "NODE",
        "REPOSITORY",
        "TAG",
        "DIGEST",
        "CREATED",
        "SIZE",
    ]
    row = next(line.split() for line in listed.stdout.splitlines() if repository in line)
    assert row[:3] == ["node-1", repository, tag]
    assert removed.returncode == 0 and f"node-1: Untagged: {image.ref}" in removed.stdout
    assert image.ref not in after.stdout.splitlines()


async def test_cli_image_pull_of_unknown_image_prints_daemon_error_and_exits_1(
    stack: Stack, suite_stack: SuiteStack
) -> None:
    ref = f"{suite_stack.registry.address}/berth/nothing-here:v1"

    result = await run(stack, "image", "pull", "--node", "node-1", ref)

    assert result.returncode == 1
    assert result.stderr.startswith("Error response from daemon:")
    assert "berth/nothing-here" in result.stderr


async def test_cli_image_rm_of_image_in_use_is_refused(
    stack: Stack, suite_stack: SuiteStack, tmp_path: Path
) -> None:
    image = push_image(suite_stack.registry, tmp_path, layers=1)
    await stack.create(image=image.ref)

    result = await run(stack, "image", "rm", "--node", "node-1", image.ref)

    assert result.returncode == 1
    assert "use it" in result.stderr


async def test_cli_image_load_of_an_archive_in_the_nodes_imports_dir(
    stack: Stack, tmp_path: Path
) -> None:
    imports = stack.settings.node_paths().imports_dir
    imports.mkdir(mode=0o700, parents=True, exist_ok=True)
    ref = f"loaded/cli-{uuid.uuid4().hex[:8]}:v1"
    rootfs = busybox_rootfs_tar(tmp_path / "rootfs.tar").read_bytes()
    archive = build_oci_layout(imports / f"{uuid.uuid4().hex}.tar", ref, [rootfs], "gzip")
    try:
        result = await run(stack, "image", "load", "-i", str(archive), "--node", "node-1")
    finally:
        archive.unlink()

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"node-1: Loaded image: {ref}"
