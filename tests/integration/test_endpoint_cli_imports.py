"""``berth exec``, ``attach``, ``cp`` and ``export`` on the light path, as ``berth logs``: the
container and its node's endpoint read on ``berth.db.wire``, the settings from
``berth.cli.env``, the messages on ``berth.endpoint.wire``. Each verb runs in a fresh
interpreter on the real stack, which then lists what it loaded."""

from __future__ import annotations

import asyncio
import tarfile
import uuid
from pathlib import Path

from tests.integration.conftest import Stack
from tests.integration.test_cli import run
from tests.integration.test_cli_transport import SDK_ORM_AND_SETTINGS, modules_loaded_by

# Never loaded by these verbs (grpc brings asyncio, which they use).
HEAVY = (*SDK_ORM_AND_SETTINGS, "asyncpg", "pydantic", "google")
IMAGE = "local/busybox:latest"


async def started(stack: Stack, *flags: str, cmd: tuple[str, ...] = ("sleep", "600")) -> str:
    name = f"light-{uuid.uuid4().hex[:8]}"
    done = await run(
        stack, "run", "-d", "--name", name, "--node", stack.settings.node, *flags, IMAGE, *cmd
    )
    assert done.returncode == 0, done.stderr
    stack.created.append(done.stdout.strip())
    return name


async def loaded_by(stack: Stack, tmp_path: Path, *args: str) -> list[str]:
    return await asyncio.to_thread(modules_loaded_by, stack, tmp_path, *args, heavy=HEAVY)


async def test_exec_cli_loads_no_asyncpg_protobuf_sdk_orm_or_settings_model(
    stack: Stack, tmp_path: Path
) -> None:
    name = await started(stack)

    assert await loaded_by(stack, tmp_path, "exec", "-e", "A=1", name, "true") == []


async def test_attach_cli_loads_no_asyncpg_protobuf_sdk_orm_or_settings_model(
    stack: Stack, tmp_path: Path
) -> None:
    # Attach lasts until the container ends: long enough for the CLI to join it first.
    name = await started(stack, "-t", cmd=("sh", "-c", "sleep 8"))

    assert await loaded_by(stack, tmp_path, "attach", "--no-stdin", name) == []


async def test_cp_and_export_streams_load_no_asyncpg_protobuf_sdk_orm_or_settings_model(
    stack: Stack, tmp_path: Path
) -> None:
    name = await started(stack)
    exported = tmp_path / "fs.tar"

    # The streams to this host's stdout and a file (a local path's tar is extracted or written
    # by berth.runtime.rootfs_tar, which raises berth.errors' types).
    from_container = await loaded_by(stack, tmp_path, "cp", f"{name}:/etc/hostname", "-")
    export = await loaded_by(stack, tmp_path, "export", "-o", str(exported), name)

    assert (from_container, export) == ([], [])
    with tarfile.open(exported) as tar:
        assert "./etc/passwd" in tar.getnames()
