"""``berth export`` through the node endpoint: the tar is written on the client's host.

The workflow's export (by type name) still writes on the node; the streamed one holds the rootfs
as a holder of its own call, and a holder left by an agent that died mid-stream is reported by
the leak checker and released by the agent's next start.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import uuid
from pathlib import Path

from berth.leaks import LeakKind
from tests.integration.conftest import EXPORT_ROOT, Stack
from tests.integration.node_agent import Node2
from tests.integration.test_cli import BERTH, cli_env
from tests.integration.test_cp import holders, leaks, ok, run, running
from tests.integration.test_crash_safety import wait_until

BIG_BYTES = 64 << 20


async def test_export_o_writes_on_the_client_the_members_of_the_workflow_export(
    stack: Stack, tmp_path: Path
) -> None:
    container_id = await running(stack)
    EXPORT_ROOT.mkdir(parents=True, exist_ok=True)
    on_node = EXPORT_ROOT / f"endpoint-{uuid.uuid4().hex[:8]}.tar"
    try:
        await stack.berth.export(container_id, str(on_node))
        await ok(stack, "export", container_id, "-o", str(tmp_path / "here.tar"))
        piped = await ok(stack, "export", container_id)
        with tarfile.open(on_node) as tar:
            expected = sorted(tar.getnames())
    finally:
        on_node.unlink(missing_ok=True)

    with tarfile.open(tmp_path / "here.tar") as tar:
        assert sorted(tar.getnames()) == expected
    with tarfile.open(fileobj=io.BytesIO(piped)) as tar:
        assert sorted(tar.getnames()) == expected
    assert "./bin/busybox" in expected
    assert await holders(stack, container_id) == ["task"]
    assert await leaks(stack) == []


async def test_export_of_a_created_container_mounts_then_unmounts(
    stack: Stack, tmp_path: Path
) -> None:
    container_id = await stack.create()

    await ok(stack, "export", container_id, "-o", str(tmp_path / "fs.tar"))

    with tarfile.open(tmp_path / "fs.tar") as tar:
        assert "./etc/passwd" in tar.getnames()
    footprint = await stack.footprint(container_id)
    assert (footprint.rootfs_mounts, footprint.mount_holders) == (0, [])


async def test_export_of_a_missing_container_is_a_daemon_error(
    stack: Stack, tmp_path: Path
) -> None:
    done = await run(stack, "export", "no-such-container", "-o", str(tmp_path / "fs.tar"))

    assert done.returncode == 1
    assert b"No such container: no-such-container" in done.stderr
    assert not (tmp_path / "fs.tar").exists()


async def test_agent_killed_mid_export_leaves_a_holder_its_restart_releases(
    node2: Node2,
) -> None:
    container_id = await node2.create()
    await node2.stack.berth.start(container_id)
    rootfs = node2.settings.node_paths().rootfs(container_id)
    (rootfs / "big").write_bytes(os.urandom(1 << 20) * (BIG_BYTES >> 20))
    client = subprocess.Popen(
        [str(BERTH), "export", container_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=cli_env(node2.stack),
    )
    try:

        async def held() -> bool:
            return any(
                h.startswith("endpoint:")
                for h in (await node2.footprint(container_id)).mount_holders
            )

        await wait_until(held)
        node2.agent.kill()
    finally:
        client.kill()
        client.wait()

    left = await node2.leaks()
    assert [f.kind for f in left] == [LeakKind.HOLDER_OF_ENDED_CALL], left
    await node2.agent.start()

    async def released() -> bool:
        return (await node2.footprint(container_id)).mount_holders == ["task"]

    await wait_until(released)
    assert (await node2.footprint(container_id)).rootfs_mounts == 1
    assert await node2.leaks() == []


async def test_export_into_a_missing_directory_is_one_line_error(
    stack: Stack, tmp_path: Path
) -> None:
    container_id = await stack.create()

    done = await run(stack, "export", container_id, "-o", str(tmp_path / "no" / "fs.tar"))

    assert done.returncode == 1
    assert done.stderr.decode().splitlines() == [
        f"Error response from daemon: {tmp_path / 'no' / 'fs.tar'}: No such file or directory"
    ]
    assert (await stack.footprint(container_id)).mount_holders == []
