"""Bind mounts on the real stack: allowed host paths appear in the container, others never do."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import pytest

from berth.activities.mount import MountActivities
from berth.activities.shim import ShimActivities
from berth.activities.spec import SpecActivities
from berth.contract import BindMount, ContainerConfig, NetworkMode
from berth.errors import Forbidden
from berth.runtime.image import DEFAULT_REF
from berth.runtime.mounts import mounts_under
from berth.steps import CreateShimInput, MountRootfsInput, WriteSpecInput
from tests.integration.conftest import BIND_ROOT, Stack
from tests.integration.test_idempotent_steps import steps_release


async def test_bind_under_the_allowed_root_is_visible_read_only_in_the_container(
    bind_dir: Path,
    stack: Stack,
) -> None:
    shared = bind_dir
    shared.mkdir(parents=True)
    (shared / "hello").write_text("from the host\n")
    script = "cat /data/hello; touch /data/new 2>/dev/null || echo read-only; sleep 60"
    container_id = await stack.create(
        cmd=["sh", "-c", script],
        binds=[{"source": str(shared), "target": "/data", "read_only": True}],
    )

    await stack.berth.start(container_id)

    for _ in range(50):
        if (await stack.berth.logs(container_id)).count(b"\n") >= 2:
            break
        await asyncio.sleep(0.1)
    assert await stack.berth.logs(container_id) == b"from the host\nread-only\n"
    assert not (shared / "new").exists()


async def test_bind_outside_the_allowed_roots_is_forbidden_and_nothing_is_written(
    stack: Stack,
) -> None:
    with pytest.raises(Forbidden, match=r"config\.binds\[0\]\.source"):
        await stack.create(binds=[{"source": "/etc", "target": "/host-etc"}])


async def _wait_for_log(stack: Stack, container_id: str, text: bytes) -> bytes:
    for _ in range(100):
        logs = await stack.berth.logs(container_id)
        if text in logs:
            return logs
        await asyncio.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in the logs: {logs!r}")


async def test_bind_source_swapped_for_a_link_to_root_refuses_the_restart_and_host_is_untouched(
    bind_dir: Path,
    stack: Stack,
) -> None:
    # Issue 12 item 3: a writable bind of the root's directory lets the container replace the
    # source of its second bind with a link to the host's "/"; the restart must not mount it.
    shared = bind_dir
    (shared / "a").mkdir(parents=True)
    marker = Path("/tmp") / f"berth-escape-{shared.name}"
    script = (
        f"if [ -e /mnt/a/etc/os-release ]; then echo ESCAPED; touch /mnt/a/tmp/{marker.name}; "
        "fi; rm -rf /data/a && ln -s / /data/a && echo swapped; sleep 3600"
    )
    container_id = await stack.create(
        cmd=["sh", "-c", script],
        binds=[
            {"source": str(shared), "target": "/data"},
            {"source": f"{shared}/a", "target": "/mnt/a"},
        ],
    )
    await stack.berth.start(container_id)
    await _wait_for_log(stack, container_id, b"swapped\n")
    assert (shared / "a").resolve() == Path("/")

    try:
        with pytest.raises(
            Forbidden, match=r"config\.binds\[1\]\.source: host path .* \(resolved to /\)"
        ):
            await stack.berth.restart(container_id, timeout=0)

        described = await stack.berth.inspect(container_id)
        assert described["State"]["Running"] is False
        assert "config.binds[1].source" in described["State"]["Error"]
        assert b"ESCAPED" not in await stack.berth.logs(container_id)
        assert not marker.exists()
        trace = await stack.footprint(container_id)
        assert (trace.rootfs_mounts, trace.netns, trace.task_status) == (0, False, None)
    finally:
        marker.unlink(missing_ok=True)


async def test_bind_sources_reach_runc_as_pins_of_the_checked_directory_gone_after_start(
    bind_dir: Path,
    stack: Stack,
) -> None:
    shared = bind_dir
    shared.mkdir(parents=True)
    (shared / "hello").write_text("pinned\n")
    container_id = await stack.create(
        cmd=["sh", "-c", "cat /data/hello; sleep 3600"],
        binds=[{"source": str(shared), "target": "/data", "read_only": True}],
    )

    await stack.berth.start(container_id)

    await _wait_for_log(stack, container_id, b"pinned\n")
    paths = stack.settings.node_paths()
    spec = await stack.containerd.container_spec(container_id)
    (mount,) = [m for m in spec["mounts"] if m["destination"] == "/data"]
    assert mount["source"] == str(paths.bind_pins(container_id) / "0")
    assert mounts_under(paths.bind_pins(container_id)) == []
    assert not paths.bind_pins(container_id).exists()
    persisted = json.loads(paths.spec(container_id).read_text())
    (mount,) = [m for m in persisted["mounts"] if m["destination"] == "/data"]
    assert mount["source"] == str(shared.resolve())


async def test_bind_restart_in_place_checks_again_and_mounts_the_same_directory(
    bind_dir: Path,
    stack: Stack,
) -> None:
    shared = bind_dir
    shared.mkdir(parents=True)
    (shared / "hello").write_text("again\n")
    container_id = await stack.create(
        cmd=["sh", "-c", "cat /data/hello; sleep 3600"],
        binds=[{"source": str(shared), "target": "/data", "read_only": True}],
    )
    first = await stack.berth.start(container_id)
    await _wait_for_log(stack, container_id, b"again\n")

    second = await stack.berth.restart(container_id, timeout=0)

    assert second.pid != first.pid
    assert second.ip == first.ip  # in place: the network namespace stayed
    logs = await _wait_for_log(stack, container_id, b"again\nagain\n")
    assert logs == b"again\nagain\n"


async def test_bind_source_swapped_after_the_spec_step_refuses_the_task_creation(
    bind_dir: Path,
    stack: Stack,
) -> None:
    shared = bind_dir
    (shared / "a").mkdir(parents=True)
    paths, runtime = stack.settings.node_paths(), stack.runtime
    container_id, node = secrets.token_hex(32), stack.settings.node
    mount = MountActivities(stack.sessions, runtime.containerd, paths)
    spec = SpecActivities(paths, allowed_host_paths=[BIND_ROOT])
    shim = ShimActivities(runtime.containerd, paths, allowed_host_paths=[BIND_ROOT])
    config = ContainerConfig(
        name="swap",
        image=DEFAULT_REF,
        cmd=["sleep", "3600"],
        network_mode=NetworkMode.NONE,
        binds=[BindMount(source=f"{shared}/a", target="/mnt/a")],
    )
    try:
        mounted = await mount.mount_rootfs(
            MountRootfsInput(container_id=container_id, node=node, image=DEFAULT_REF)
        )
        written = await spec.write_spec(
            WriteSpecInput(
                container_id=container_id,
                node=node,
                config=config,
                image_config=mounted.image_config,
                rootfs=mounted.target,
                netns=None,
            )
        )
        # Between the spec step and the shim step, the directory becomes a link to "/".
        (shared / "a").rmdir()
        (shared / "a").symlink_to("/")

        with pytest.raises(Forbidden, match=r"config\.binds\[0\]\.source"):
            await shim.create_shim(
                CreateShimInput(
                    container_id=container_id,
                    node=node,
                    image=DEFAULT_REF,
                    spec=written.spec,
                    labels={},
                    binds=config.binds,
                )
            )

        assert not await runtime.containerd.has_container(container_id)
        assert not paths.bind_pins(container_id).exists()
    finally:
        await steps_release(stack, container_id)
