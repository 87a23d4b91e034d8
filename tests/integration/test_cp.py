"""``berth cp`` through the node endpoint: tar streams in and out of a container's rootfs.

The CLI runs as a subprocess that reaches node-1's endpoint (this process's agent) by the address
its agent records. Each copy holds the rootfs as a mount holder of its own while it streams;
nothing a container's symlinks say lets a copy read or write the host's files.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import stat
import subprocess
import tarfile
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import update
from temporalio.client import Client

from berth.db.models import Container
from berth.leaks import check_node
from berth.reconciler import Repair
from berth.worker import node_reconciler
from tests.integration.conftest import Stack
from tests.integration.test_cli import BERTH, cli_env
from tests.integration.test_crash_safety import wait_until

BIG_BYTES = 64 << 20


def berth(
    stack: Stack, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(BERTH), *args], input=stdin, capture_output=True, env=cli_env(stack), timeout=120
    )


async def run(
    stack: Stack, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    # In a thread: the agent that serves the CLI runs on this test's event loop.
    done = await asyncio.to_thread(berth, stack, *args, stdin=stdin)
    return done


async def ok(stack: Stack, *args: str, stdin: bytes | None = None) -> bytes:
    done = await run(stack, *args, stdin=stdin)
    assert done.returncode == 0, (args, done.stderr.decode())
    return done.stdout


def tree_of(root: Path) -> dict[str, tuple[str, int, bytes | str | None]]:
    """Every entry under ``root``: kind, permission bits, and contents or link target."""
    found: dict[str, tuple[str, int, bytes | str | None]] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            info = path.lstat()
            mode = stat.S_IMODE(info.st_mode)
            relative = str(path.relative_to(root))
            if path.is_symlink():
                found[relative] = ("link", 0, os.readlink(path))
            elif path.is_dir():
                found[relative] = ("dir", mode, None)
            else:
                found[relative] = ("file", mode, path.read_bytes())
    return found


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A directory tree with modes, nested and empty directories, symlinks and a hard link."""
    root = tmp_path / "tree"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    (root / "secret").write_bytes(b"\x00\x01binary\xff" * 1000)
    (root / "secret").chmod(0o640)
    (root / "sub" / "deeper" / "note.txt").write_text("deep\n")
    (root / "sub").chmod(0o750)
    (root / "link-rel").symlink_to("sub/deeper/note.txt")
    (root / "link-abs").symlink_to("/etc/passwd")
    os.link(root / "run.sh", root / "sub" / "hard.sh")
    return root


@pytest.fixture
def decoy() -> Iterator[tuple[Path, bytes]]:
    """A host file in /etc with a unique marker; removed afterwards."""
    marker = f"berth-cp-marker-{uuid.uuid4().hex}".encode()
    path = Path(f"/etc/berth-cp-decoy-{uuid.uuid4().hex[:12]}")
    path.write_bytes(marker)
    yield path, marker
    path.unlink(missing_ok=True)


def rootfs(stack: Stack, container_id: str) -> Path:
    return stack.settings.node_paths().rootfs(container_id)


async def running(stack: Stack) -> str:
    container_id = await stack.create()
    await stack.berth.start(container_id)
    return container_id


async def holders(stack: Stack, container_id: str) -> list[str]:
    return (await stack.footprint(container_id)).mount_holders


async def leaks(stack: Stack) -> list[object]:
    runtime = stack.runtime
    paths = stack.settings.node_paths()
    return list(
        await check_node(
            stack.settings.node, paths, runtime.containerd, runtime.cni, stack.sessions
        )
    )


async def test_cp_in_and_out_round_trips_a_directory_tree(
    stack: Stack, tree: Path, tmp_path: Path
) -> None:
    container_id = await running(stack)

    await ok(stack, "cp", str(tree), f"{container_id}:/copied")
    await ok(stack, "cp", f"{container_id}:/copied", str(tmp_path / "back"))

    assert tree_of(tmp_path / "back") == tree_of(tree)
    inside = rootfs(stack, container_id) / "copied"
    assert tree_of(inside) == tree_of(tree)
    owners = {(p.lstat().st_uid, p.lstat().st_gid) for p in [inside, *inside.rglob("*")]}
    assert owners == {(0, 0)}  # the container's root owns what cp writes in
    copied = rootfs(stack, container_id) / "copied"
    assert (copied / "sub" / "hard.sh").stat().st_ino == (copied / "run.sh").stat().st_ino


async def test_cp_into_an_existing_directory_puts_the_source_under_it(
    stack: Stack, tree: Path
) -> None:
    container_id = await running(stack)

    await ok(stack, "cp", str(tree), f"{container_id}:/tmp")
    await ok(stack, "cp", f"{tree}/.", f"{container_id}:/contents")
    await ok(stack, "cp", str(tree / "run.sh"), f"{container_id}:/tmp/renamed.sh")

    root = rootfs(stack, container_id)
    assert tree_of(root / "tmp" / "tree") == tree_of(tree)
    assert tree_of(root / "contents") == tree_of(tree)
    assert (root / "tmp" / "renamed.sh").read_bytes() == (tree / "run.sh").read_bytes()


async def test_cp_out_places_files_and_directories_as_docker(stack: Stack, tmp_path: Path) -> None:
    container_id = await running(stack)
    (tmp_path / "existing").mkdir()
    (tmp_path / "contents").mkdir()
    passwd = (rootfs(stack, container_id) / "etc" / "passwd").read_bytes()

    await ok(stack, "cp", f"{container_id}:/etc/passwd", str(tmp_path / "existing"))
    await ok(stack, "cp", f"{container_id}:/etc/passwd", str(tmp_path / "renamed"))
    await ok(stack, "cp", f"{container_id}:/etc/.", str(tmp_path / "contents"))
    await ok(stack, "cp", f"{container_id}:/etc", str(tmp_path / "new-dir"))
    onto_file = await run(stack, "cp", f"{container_id}:/etc", str(tmp_path / "renamed"))

    assert (tmp_path / "existing" / "passwd").read_bytes() == passwd
    assert (tmp_path / "renamed").read_bytes() == passwd
    assert (tmp_path / "contents" / "passwd").read_bytes() == passwd
    assert (tmp_path / "new-dir" / "passwd").read_bytes() == passwd
    assert onto_file.returncode == 1 and b"cannot copy a directory to a file" in onto_file.stderr


async def test_cp_follow_link_copies_what_the_link_names_under_its_name(
    stack: Stack, tmp_path: Path, decoy: tuple[Path, bytes]
) -> None:
    path, marker = decoy
    container_id = await running(stack)
    root = rootfs(stack, container_id)
    (root / "pw").symlink_to("/etc/passwd")
    (root / "host-decoy").symlink_to(path)
    (tmp_path / "target.txt").write_text("local\n")
    (tmp_path / "local-link").symlink_to(tmp_path / "target.txt")

    await ok(stack, "cp", "-L", f"{container_id}:/pw", str(tmp_path / "pw"))
    stolen = await run(stack, "cp", "-L", f"{container_id}:/host-decoy", "-")
    await ok(stack, "cp", "-L", str(tmp_path / "local-link"), f"{container_id}:/tmp/")

    assert not (tmp_path / "pw").is_symlink()
    assert (tmp_path / "pw").read_bytes() == (root / "etc" / "passwd").read_bytes()
    assert stolen.returncode == 1 and marker not in stolen.stdout
    copied = root / "tmp" / "local-link"
    assert not copied.is_symlink() and copied.read_text() == "local\n"


async def test_cp_to_stdout_writes_a_tar_named_by_the_basename(stack: Stack) -> None:
    container_id = await running(stack)

    out = await ok(stack, "cp", f"{container_id}:/etc", "-")

    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        names = tar.getnames()
        passwd = tar.extractfile("etc/passwd")
        assert passwd is not None and b"root:" in passwd.read()
    assert names[0] == "etc" and all(n == "etc" or n.startswith("etc/") for n in names)


async def test_cp_from_stdin_extracts_a_tar_into_a_directory(stack: Stack) -> None:
    container_id = await running(stack)
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        member = tarfile.TarInfo("a/b.txt")
        member.size, member.mode = 3, 0o600
        tar.addfile(member, io.BytesIO(b"abc"))

    await ok(stack, "cp", "-", f"{container_id}:/tmp", stdin=data.getvalue())

    written = rootfs(stack, container_id) / "tmp" / "a" / "b.txt"
    assert written.read_bytes() == b"abc" and stat.S_IMODE(written.stat().st_mode) == 0o600


async def test_cp_of_a_missing_path_is_a_daemon_error(stack: Stack, tmp_path: Path) -> None:
    container_id = await running(stack)

    done = await run(stack, "cp", f"{container_id}:/no/such/file", str(tmp_path / "x"))

    assert done.returncode == 1
    assert b"Error response from daemon: Could not find the file /no/such/file" in done.stderr
    assert list(tmp_path.iterdir()) == []


async def test_cp_through_container_symlinks_to_host_paths_reads_no_host_file(
    stack: Stack, decoy: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, marker = decoy
    container_id = await running(stack)
    root = rootfs(stack, container_id)
    (root / "escape").symlink_to("/")
    (root / "hostetc").symlink_to("/etc")

    for source in (f"/escape/etc/{path.name}", f"/hostetc/{path.name}", f"/escape{path}"):
        done = await run(stack, "cp", f"{container_id}:{source}", "-")
        assert done.returncode == 1 and b"Could not find the file" in done.stderr, source
        assert marker not in done.stdout
    whole = await ok(stack, "cp", f"{container_id}:/escape/", "-")  # the container's / it is
    assert marker not in whole
    link = await ok(stack, "cp", f"{container_id}:/escape", "-")
    with tarfile.open(fileobj=io.BytesIO(link)) as tar:
        assert [(m.name, m.issym(), m.linkname) for m in tar.getmembers()] == [
            ("escape", True, "/")
        ]


async def test_cp_through_container_symlinks_to_host_paths_writes_no_host_file(
    stack: Stack, tmp_path: Path
) -> None:
    container_id = await running(stack)
    root = rootfs(stack, container_id)
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    (root / "escape").symlink_to("/")
    (root / "hostdir").symlink_to(host_dir)
    name = f"berth-cp-{uuid.uuid4().hex[:8]}"
    source = tmp_path / name
    source.write_text("from cp\n")
    etc_before = set(os.listdir("/etc"))

    await ok(stack, "cp", str(source), f"{container_id}:/escape/etc/")
    done = await run(stack, "cp", str(source), f"{container_id}:/hostdir/")
    # A tar whose own members would climb out or write through the container's link.
    attack = io.BytesIO()
    with tarfile.open(fileobj=attack, mode="w") as tar:
        for member_name in ("escape/etc/" + name, "../" + name, "/etc/" + name):
            member = tarfile.TarInfo(member_name)
            member.size = 4
            tar.addfile(member, io.BytesIO(b"evil"))
    refused = await run(stack, "cp", "-", f"{container_id}:/", stdin=attack.getvalue())

    assert (root / "etc" / name).read_text() == "from cp\n"  # the container's /etc
    # /hostdir/ resolves inside the container, where that host path does not exist.
    assert done.returncode == 1 and b"must exist" in done.stderr
    assert refused.returncode == 1 and b"not followed" in refused.stderr
    assert set(os.listdir("/etc")) == etc_before
    assert list(host_dir.iterdir()) == []


@pytest.mark.parametrize(
    "member_name", ["../outside", "/etc/absolute", "a/../../outside"], ids=["dotdot", "abs", "deep"]
)
async def test_cp_from_stdin_refuses_names_leaving_the_target(
    stack: Stack, member_name: str
) -> None:
    container_id = await running(stack)
    attack = io.BytesIO()
    with tarfile.open(fileobj=attack, mode="w") as tar:
        member = tarfile.TarInfo(member_name)
        member.size = 4
        tar.addfile(member, io.BytesIO(b"evil"))

    done = await run(stack, "cp", "-", f"{container_id}:/tmp", stdin=attack.getvalue())

    assert done.returncode == 1 and b"refused" in done.stderr
    assert not (rootfs(stack, container_id) / "outside").exists()
    assert not Path("/etc/absolute").exists()


def streaming_cp(stack: Stack, container_id: str) -> subprocess.Popen[bytes]:
    """``berth cp C:/big -`` into a pipe nobody reads: the stream stalls mid-file."""
    return subprocess.Popen(
        [str(BERTH), "cp", f"{container_id}:/big", "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=cli_env(stack),
    )


async def endpoint_holder(stack: Stack, container_id: str) -> None:
    async def held() -> bool:
        return any(h.startswith("endpoint:") for h in await holders(stack, container_id))

    await wait_until(held)


async def finish(process: subprocess.Popen[bytes]) -> bytes:
    out, _ = await asyncio.to_thread(process.communicate, timeout=120)
    assert process.returncode == 0
    return out


T = TypeVar("T")


async def while_streaming(
    stack: Stack, container_id: str, look: Callable[[], Awaitable[T]]
) -> tuple[T, bytes]:
    """What ``look`` finds while ``berth cp C:/big -`` stalls mid-stream holding the rootfs,
    and all the copy wrote once read to its end."""
    process = streaming_cp(stack, container_id)
    try:
        await endpoint_holder(stack, container_id)
        seen = await look()
    finally:
        out = await finish(process)
    return seen, out


async def test_cp_of_a_running_container_adds_a_holder_to_its_mount(stack: Stack) -> None:
    container_id = await running(stack)
    (rootfs(stack, container_id) / "big").write_bytes(os.urandom(1 << 20) * (BIG_BYTES >> 20))
    before = await stack.footprint(container_id)

    during, out = await while_streaming(stack, container_id, lambda: stack.footprint(container_id))

    assert (before.rootfs_mounts, before.mount_holders) == (1, ["task"])
    assert during.rootfs_mounts == 1
    assert during.mount_holders[0].startswith("endpoint:") and during.mount_holders[1] == "task"
    after = await stack.footprint(container_id)
    assert (after.rootfs_mounts, after.mount_holders) == (1, ["task"])
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        assert tar.getmember("big").size == BIG_BYTES
    assert await leaks(stack) == []


async def test_cp_of_a_stopped_container_mounts_and_unmounts(stack: Stack, tmp_path: Path) -> None:
    container_id = await stack.create()
    big = tmp_path / "big"
    big.write_bytes(os.urandom(1 << 20) * (BIG_BYTES >> 20))

    await ok(stack, "cp", str(big), f"{container_id}:/big")
    after_in = await stack.footprint(container_id)
    during, out = await while_streaming(stack, container_id, lambda: stack.footprint(container_id))

    assert (after_in.rootfs_mounts, after_in.mount_holders) == (0, [])
    assert during.rootfs_mounts == 1 and len(during.mount_holders) == 1
    after = await stack.footprint(container_id)
    assert (after.rootfs_mounts, after.mount_holders) == (0, [])
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        data = tar.extractfile("big")
        assert data is not None and data.read() == big.read_bytes()
    assert await leaks(stack) == []


async def test_reconciler_keeps_the_holder_of_a_copy_in_progress(
    stack: Stack, temporal: Client
) -> None:
    container_id = await running(stack)
    (rootfs(stack, container_id) / "big").write_bytes(b"\x5a" * BIG_BYTES)
    reconciler = node_reconciler(temporal, stack.settings, stack.sessions, stack.runtime)

    async def reconcile() -> tuple[list[Repair], list[str]]:
        return await reconciler.reconcile(), await holders(stack, container_id)

    (repairs, during), out = await while_streaming(stack, container_id, reconcile)

    assert [r for r in repairs if r.container_id == container_id] == []
    assert during[0].startswith("endpoint:") and during[1] == "task"
    assert len(out) > BIG_BYTES


async def test_cp_client_killed_mid_stream_releases_its_holder(stack: Stack) -> None:
    container_id = await running(stack)
    (rootfs(stack, container_id) / "big").write_bytes(b"\x5a" * BIG_BYTES)
    process = streaming_cp(stack, container_id)
    try:
        await endpoint_holder(stack, container_id)
    finally:
        process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait)

    async def released() -> bool:
        return await holders(stack, container_id) == ["task"]

    await wait_until(released, timeout=10)
    assert (await stack.footprint(container_id)).rootfs_mounts == 1
    assert await leaks(stack) == []


async def test_cp_client_killed_mid_copy_in_releases_its_holder(stack: Stack) -> None:
    container_id = await stack.create()
    process = subprocess.Popen(
        [str(BERTH), "cp", "-", f"{container_id}:/"],
        stdin=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=cli_env(stack),
    )
    assert process.stdin is not None
    header = tarfile.TarInfo("half.bin")
    header.size = BIG_BYTES
    process.stdin.write(header.tobuf(tarfile.PAX_FORMAT) + b"\0" * (1 << 20))
    process.stdin.flush()
    try:
        await endpoint_holder(stack, container_id)
    finally:
        process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait)
        process.stdin.close()

    async def unmounted() -> bool:
        footprint = await stack.footprint(container_id)
        return (footprint.rootfs_mounts, footprint.mount_holders) == (0, [])

    await wait_until(unmounted, timeout=10)
    assert await leaks(stack) == []


async def test_cp_of_a_container_being_removed_is_refused(stack: Stack, tmp_path: Path) -> None:
    container_id = await stack.create()
    async with stack.sessions.begin() as session:
        await session.execute(
            update(Container).where(Container.id == container_id).values(state="removing")
        )
    try:
        done = await run(stack, "cp", f"{container_id}:/etc", str(tmp_path / "etc"))
    finally:
        async with stack.sessions.begin() as session:
            await session.execute(
                update(Container).where(Container.id == container_id).values(state="created")
            )

    assert done.returncode == 1 and b"marked for removal" in done.stderr
    assert (await stack.footprint(container_id)).mount_holders == []
    assert not (tmp_path / "etc").exists()


async def test_cp_on_the_containers_own_mounts_is_refused(stack: Stack, tmp_path: Path) -> None:
    container_id = await stack.create(tmpfs={"/scratch": ""})
    await stack.berth.start(container_id)
    (rootfs(stack, container_id) / "via-link").symlink_to("/scratch")
    source = tmp_path / "f"
    source.write_text("x")

    reads = [
        await run(stack, "cp", f"{container_id}:{path}", "-")
        for path in ("/scratch", "/via-link/", "/proc")
    ]
    write = await run(stack, "cp", str(source), f"{container_id}:/scratch/")

    for done in [*reads, write]:
        assert done.returncode == 1 and b"is on the container's mount" in done.stderr, done
    assert await holders(stack, container_id) == ["task"]
