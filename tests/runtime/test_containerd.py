"""ContainerdClient against a real containerd and runc."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf import any_pb2

from berth._containerd_api.events import task_pb2 as task_events_pb2
from berth._containerd_api.services.events.v1 import events_pb2, events_pb2_grpc
from berth.config import NodePaths
from berth.contract import ContainerConfig
from berth.errors import (
    BerthError,
    Conflict,
    Forbidden,
    InvalidParameter,
    NotFound,
    System,
    Unavailable,
)
from berth.runtime.containerd import (
    NAMESPACE_HEADER,
    ContainerdClient,
    ImageInfo,
    chain_id,
    translate_error,
)
from berth.runtime.image import DEFAULT_REF
from berth.runtime.oci_spec import build_spec
from berth.runtime.types import Mount

if TYPE_CHECKING:
    from tests.runtime.conftest import Rootfs


def _config(*cmd: str) -> ContainerConfig:
    return ContainerConfig(name="web-1", image=DEFAULT_REF, cmd=list(cmd) if cmd else None)


async def _create(client: ContainerdClient, image: ImageInfo, rootfs: Rootfs, *cmd: str) -> int:
    spec = build_spec(rootfs.container_id, _config(*cmd), image.config, rootfs.path, None)
    await client.create_container(
        rootfs.container_id, image.ref, rootfs.snapshot_key, spec, {"berth.test": "1"}
    )
    return await client.create_task(rootfs.container_id, rootfs.log, rootfs.log)


async def _wait_for_text(path: Path, text: str, timeout: float = 15.0) -> str:
    async with asyncio.timeout(timeout):
        while text not in (content := path.read_text() if path.exists() else ""):
            await asyncio.sleep(0.05)
    return content


def test_chain_id_two_layers_hashes_parent_and_diff() -> None:
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    import hashlib

    assert chain_id([a]) == a
    assert chain_id([a, b]) == "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()


async def test_version_running_daemon_returns_version(client: ContainerdClient) -> None:
    assert (await client.version()).startswith("1.6")


async def test_resolve_image_imported_returns_unpacked_chain_and_config(
    client: ContainerdClient,
) -> None:
    image = await client.resolve_image(DEFAULT_REF)
    assert image.chain_id in await client.list_snapshots()
    assert image.config["Cmd"] == ["sh"]


async def test_resolve_image_missing_raises_not_found_naming_image_and_node(
    client: ContainerdClient, node_name: str
) -> None:
    with pytest.raises(NotFound) as caught:
        await client.resolve_image("local/missing:latest")
    assert "local/missing:latest" in caught.value.message
    assert node_name in caught.value.message
    assert caught.value.type == "NotFound"


async def test_prepare_snapshot_existing_key_returns_its_mounts(
    client: ContainerdClient, image: ImageInfo
) -> None:
    key = f"berth-test-{uuid.uuid4().hex}"
    try:
        first = await client.prepare_snapshot(key, image.chain_id)
        again = await client.prepare_snapshot(key, image.chain_id)
        assert first == again
        assert first[0].type == "overlay"
    finally:
        await client.remove_snapshot(key)
    assert key not in await client.list_snapshots()


async def test_remove_snapshot_unknown_key_succeeds(client: ContainerdClient) -> None:
    await client.remove_snapshot("berth-test-never-prepared")


async def test_snapshot_mounts_unknown_key_raises_not_found(client: ContainerdClient) -> None:
    with pytest.raises(NotFound):
        await client.snapshot_mounts("berth-test-never-prepared")


async def test_task_lifecycle_from_snapshot_runs_and_tears_down(
    client: ContainerdClient,
    image: ImageInfo,
    containerd: NodePaths,
    mount_snapshot: Callable[[list[Mount], Path], None],
    unmount: Callable[[Path], None],
) -> None:
    container_id = uuid.uuid4().hex * 2
    key = f"berth-test-{container_id}"
    path = containerd.rootfs(container_id)
    mount_snapshot(await client.prepare_snapshot(key, image.chain_id), path)
    spec = build_spec(container_id, _config("sleep", "60"), image.config, path, None)
    await client.create_container(container_id, image.ref, key, spec, {"berth.test": "1"})
    created_pid = await client.create_task(
        container_id, path.parent / "x.log", path.parent / "x.log"
    )
    assert (await client.get_task(container_id)).status == "CREATED"

    pid = await client.start_task(container_id)
    task = await client.get_task(container_id)

    assert pid == created_pid
    assert (task.status, task.pid) == ("RUNNING", pid)
    # Start returns once runc has released its init; the exec of `sleep` follows a moment later.
    async with asyncio.timeout(5):
        while Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] != [b"sleep", b"60"]:
            await asyncio.sleep(0.01)
    assert await client.delete_task(container_id) == 128 + signal.SIGKILL
    await client.delete_container(container_id)
    unmount(path)
    await client.remove_snapshot(key)
    assert container_id not in await client.list_containers()
    assert container_id not in [t.id for t in await client.list_tasks()]
    assert key not in await client.list_snapshots()


async def test_create_task_missing_executable_fails_at_create_with_runc_reason(
    client: ContainerdClient, image: ImageInfo, rootfs: Rootfs
) -> None:
    # runc resolves the executable during `runc create`, so the error surfaces at task create,
    # as gRPC UNKNOWN (a System error): the saga reads the exit code from the message.
    with pytest.raises(System) as caught:
        await _create(client, image, rootfs, "/no/such/binary")
    assert "no such file or directory" in caught.value.message
    with pytest.raises(NotFound):
        await client.get_task(rootfs.container_id)


async def test_create_task_command_not_on_path_fails_with_executable_not_found(
    client: ContainerdClient, image: ImageInfo, rootfs: Rootfs, node_name: str
) -> None:
    with pytest.raises(System) as caught:
        await _create(client, image, rootfs, "no-such-command")
    assert "executable file not found" in caught.value.message
    assert node_name in caught.value.message


async def test_create_task_existing_created_task_returns_its_pid(
    client: ContainerdClient, image: ImageInfo, rootfs: Rootfs
) -> None:
    pid = await _create(client, image, rootfs, "sleep", "60")
    assert await client.create_task(rootfs.container_id, rootfs.log, rootfs.log) == pid


async def test_create_task_stopped_task_creates_a_new_one(
    client: ContainerdClient, image: ImageInfo, rootfs: Rootfs
) -> None:
    await _create(client, image, rootfs, "true")
    await client.start_task(rootfs.container_id)
    assert await client.wait_task(rootfs.container_id) == 0
    pid = await client.create_task(rootfs.container_id, rootfs.log, rootfs.log)
    task = await client.get_task(rootfs.container_id)
    assert (task.status, task.pid) == ("CREATED", pid)


async def test_start_task_running_task_returns_its_pid(
    client: ContainerdClient, image: ImageInfo, rootfs: Rootfs
) -> None:
    await _create(client, image, rootfs, "sleep", "60")
    pid = await client.start_task(rootfs.container_id)
    assert await client.start_task(rootfs.container_id) == pid


async def test_create_container_existing_id_replaces_it_and_its_task(
    client: ContainerdClient, image: ImageInfo, rootfs: Rootfs
) -> None:
    await _create(client, image, rootfs, "sleep", "60")
    await client.start_task(rootfs.container_id)
    spec = build_spec(rootfs.container_id, _config("true"), image.config, rootfs.path, None)
    await client.create_container(rootfs.container_id, image.ref, rootfs.snapshot_key, spec, {})
    assert rootfs.container_id in await client.list_containers()
    with pytest.raises(NotFound):
        await client.get_task(rootfs.container_id)


async def test_create_container_twice_keeps_one(
    client: ContainerdClient, image: ImageInfo, rootfs: Rootfs
) -> None:
    spec = build_spec(rootfs.container_id, _config("true"), image.config, rootfs.path, None)
    for _ in range(2):
        await client.create_container(rootfs.container_id, image.ref, rootfs.snapshot_key, spec, {})
    assert (await client.list_containers()).count(rootfs.container_id) == 1


async def test_delete_container_unknown_id_succeeds(client: ContainerdClient) -> None:
    await client.delete_container("berth-test-unknown")


async def test_delete_task_unknown_id_returns_none(client: ContainerdClient) -> None:
    assert await client.delete_task("berth-test-unknown") is None


async def test_kill_task_unknown_id_succeeds(client: ContainerdClient) -> None:
    await client.kill_task("berth-test-unknown", signal.SIGTERM)


async def test_get_task_unknown_id_raises_not_found(client: ContainerdClient) -> None:
    with pytest.raises(NotFound):
        await client.get_task("berth-test-unknown")


async def test_delete_task_created_task_deletes_it(
    client: ContainerdClient, image: ImageInfo, rootfs: Rootfs
) -> None:
    await _create(client, image, rootfs, "sleep", "60")
    await client.delete_task(rootfs.container_id)
    with pytest.raises(NotFound):
        await client.get_task(rootfs.container_id)


async def test_delete_task_paused_task_kills_and_deletes_it(
    client: ContainerdClient, image: ImageInfo, rootfs: Rootfs
) -> None:
    await _create(client, image, rootfs, "sleep", "60")
    await client.start_task(rootfs.container_id)
    await client.pause_task(rootfs.container_id)
    assert (await client.get_task(rootfs.container_id)).status == "PAUSED"
    assert await client.delete_task(rootfs.container_id) == 128 + signal.SIGKILL


async def test_resume_task_paused_task_runs_again(
    client: ContainerdClient, image: ImageInfo, rootfs: Rootfs
) -> None:
    await _create(client, image, rootfs, "sleep", "60")
    await client.start_task(rootfs.container_id)
    await client.pause_task(rootfs.container_id)
    await client.resume_task(rootfs.container_id)
    assert (await client.get_task(rootfs.container_id)).status == "RUNNING"


async def test_pause_task_unknown_id_raises_not_found(client: ContainerdClient) -> None:
    with pytest.raises(NotFound):
        await client.pause_task("berth-test-unknown")


async def test_start_task_without_container_raises_not_found(client: ContainerdClient) -> None:
    with pytest.raises(NotFound):
        await client.start_task("berth-test-unknown")


async def test_create_task_without_container_raises_not_found(
    client: ContainerdClient, tmp_path: Path
) -> None:
    with pytest.raises(NotFound):
        await client.create_task("berth-test-unknown", tmp_path / "o", tmp_path / "o")


async def test_create_task_file_stdio_writes_stdout_and_stderr_to_the_stdout_file(
    client: ContainerdClient, image: ImageInfo, rootfs: Rootfs
) -> None:
    stderr_file = rootfs.log.with_suffix(".err")
    spec = build_spec(
        rootfs.container_id,
        _config("sh", "-c", "echo to-stdout; echo to-stderr >&2"),
        image.config,
        rootfs.path,
        None,
    )
    await client.create_container(rootfs.container_id, image.ref, rootfs.snapshot_key, spec, {})
    await client.create_task(rootfs.container_id, rootfs.log, stderr_file)
    await client.start_task(rootfs.container_id)
    assert await client.wait_task(rootfs.container_id) == 0
    content = await _wait_for_text(rootfs.log, "to-stderr")
    assert "to-stdout" in content
    assert not stderr_file.exists() or stderr_file.read_text() == ""


async def _publish_probe_exit(socket: Path, container_id: str) -> None:
    """Publish a synthetic /tasks/exit on containerd's real event bus."""
    event = task_events_pb2.TaskExit(container_id=container_id, id=container_id, pid=1)
    envelope = any_pb2.Any(type_url="containerd.events.TaskExit", value=event.SerializeToString())
    async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
        await events_pb2_grpc.EventsStub(channel).Publish(
            events_pb2.PublishRequest(topic="/tasks/exit", event=envelope),
            metadata=((NAMESPACE_HEADER, "berth-test"),),
        )


async def test_subscribe_task_exits_task_exit_yields_its_status(
    client: ContainerdClient, image: ImageInfo, rootfs: Rootfs, containerd: NodePaths
) -> None:
    exits = client.subscribe_task_exits()
    try:
        async with asyncio.timeout(10):
            # containerd does not acknowledge a subscription: publish probes until one arrives.
            probe = f"probe-{uuid.uuid4().hex}"
            first = asyncio.ensure_future(anext(exits))
            while not first.done():
                await _publish_probe_exit(containerd.containerd_socket, probe)
                await asyncio.wait([first], timeout=0.1)
            assert first.result().container_id == probe
            await _create(client, image, rootfs, "sh", "-c", "exit 7")
            pid = await client.start_task(rootfs.container_id)
            event = await anext(exits)
            while event.container_id == probe:
                event = await anext(exits)
    finally:
        await exits.aclose()
    assert (event.container_id, event.pid, event.exit_status) == (rootfs.container_id, pid, 7)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (grpc.StatusCode.NOT_FOUND, NotFound),
        (grpc.StatusCode.ALREADY_EXISTS, Conflict),
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidParameter),
        (grpc.StatusCode.FAILED_PRECONDITION, Conflict),
        (grpc.StatusCode.UNAVAILABLE, Unavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, Unavailable),
        (grpc.StatusCode.PERMISSION_DENIED, Forbidden),
        (grpc.StatusCode.UNKNOWN, System),
        (grpc.StatusCode.INTERNAL, System),
    ],
)
def test_translate_error_grpc_code_maps_to_berth_error_keeping_text(
    code: grpc.StatusCode, error: type[BerthError]
) -> None:
    rpc_error = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "boom")
    translated = translate_error(rpc_error, "n1", "start task x")
    assert type(translated).type_name == error.type_name
    assert isinstance(translated, error)
    assert translated.message == "start task x on node 'n1': boom"


async def test_version_stopped_daemon_raises_unavailable(tmp_path: Path) -> None:
    async with ContainerdClient(tmp_path / "none.sock", "berth-test", "n1") as client:
        with pytest.raises(Unavailable, match="n1"):
            await client.version()
