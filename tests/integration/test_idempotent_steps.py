"""Every saga step and compensation, run twice with the real dependencies, converges."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from berth.activities.mount import MountActivities
from berth.activities.network import NetworkActivities
from berth.activities.shim import ShimActivities
from berth.activities.spec import SpecActivities
from berth.activities.task import TaskActivities
from berth.contract import ContainerConfig, NetworkMode
from berth.runtime.image import DEFAULT_REF
from berth.runtime.mounts import is_mounted
from berth.runtime.netns import delete_netns, netns_exists
from berth.steps import (
    ContainerRef,
    CreateShimInput,
    MountRootfsInput,
    NetworkInput,
    ReleaseRootfsInput,
    ReplaceTaskInput,
    WriteSpecInput,
)
from tests.integration.conftest import Stack, force_remove


@dataclass
class Steps:
    stack: Stack
    container_id: str
    mount: MountActivities
    network: NetworkActivities
    spec: SpecActivities
    shim: ShimActivities
    task: TaskActivities

    @property
    def node(self) -> str:
        return self.stack.settings.node

    @property
    def ref(self) -> ContainerRef:
        return ContainerRef(container_id=self.container_id, node=self.node)

    def mount_input(self) -> MountRootfsInput:
        return MountRootfsInput(container_id=self.container_id, node=self.node, image=DEFAULT_REF)

    def release_input(self) -> ReleaseRootfsInput:
        return ReleaseRootfsInput(container_id=self.container_id, node=self.node)

    def network_input(self) -> NetworkInput:
        return NetworkInput(container_id=self.container_id, node=self.node, mode=NetworkMode.BRIDGE)

    async def spec_and_shim(self) -> CreateShimInput:
        mounted = await self.mount.mount_rootfs(self.mount_input())
        attached = await self.network.attach_network(self.network_input())
        config = ContainerConfig(name="twice", image=DEFAULT_REF, cmd=["sleep", "3600"])
        spec = await self.spec.write_spec(
            WriteSpecInput(
                container_id=self.container_id,
                node=self.node,
                config=config,
                image_config=mounted.image_config,
                rootfs=mounted.target,
                netns=attached.netns,
            )
        )
        return CreateShimInput(
            container_id=self.container_id,
            node=self.node,
            image=DEFAULT_REF,
            spec=spec.spec,
            labels={},
        )


@pytest.fixture
async def steps(stack: Stack) -> AsyncIterator[Steps]:
    paths = stack.settings.node_paths()
    runtime = stack.runtime
    container_id = secrets.token_hex(32)
    yield Steps(
        stack,
        container_id,
        MountActivities(stack.sessions, runtime.containerd, paths),
        NetworkActivities(stack.sessions, runtime.cni, paths),
        SpecActivities(paths),
        ShimActivities(runtime.containerd, paths),
        TaskActivities(runtime.containerd),
    )
    await steps_release(stack, container_id)


async def steps_release(stack: Stack, container_id: str) -> None:
    await force_remove(stack, container_id)
    paths = stack.settings.node_paths()
    mount = MountActivities(stack.sessions, stack.runtime.containerd, paths)
    await mount.release_rootfs(ReleaseRootfsInput(container_id=container_id, node="node-1"))
    network = NetworkActivities(stack.sessions, stack.runtime.cni, paths)
    await network.detach_network(
        NetworkInput(container_id=container_id, node="node-1", mode=NetworkMode.BRIDGE)
    )


async def test_mount_twice_mounts_once_and_release_twice_unmounts(steps: Steps) -> None:
    first = await steps.mount.mount_rootfs(steps.mount_input())
    second = await steps.mount.mount_rootfs(steps.mount_input())
    assert first == second
    trace = await steps.stack.footprint(steps.container_id)
    assert (trace.rootfs_mounts, trace.mount_holders) == (1, ["task"])

    await steps.mount.release_rootfs(steps.release_input())
    await steps.mount.release_rootfs(steps.release_input())

    trace = await steps.stack.footprint(steps.container_id)
    assert (trace.rootfs_mounts, trace.mount_holders) == (0, [])


async def test_release_under_ebusy_detaches_and_forgets_the_holder(steps: Steps) -> None:
    mounted = await steps.mount.mount_rootfs(steps.mount_input())
    # A process whose working directory is inside the rootfs keeps the mount busy.
    busy = subprocess.Popen(["sleep", "30"], cwd=f"{mounted.target}/bin")
    try:
        await steps.mount.release_rootfs(steps.release_input())
        assert not is_mounted(steps.stack.settings.node_paths().rootfs(steps.container_id))
        assert (await steps.stack.footprint(steps.container_id)).mount_holders == []
    finally:
        busy.kill()
        busy.wait()


async def test_attach_twice_keeps_one_ip_and_detach_twice_frees_it(steps: Steps) -> None:
    first = await steps.network.attach_network(steps.network_input())
    second = await steps.network.attach_network(steps.network_input())
    assert first == second and first.ip is not None
    assert (await steps.stack.footprint(steps.container_id)).ips == [first.ip]

    await steps.network.detach_network(steps.network_input())
    await steps.network.detach_network(steps.network_input())

    trace = await steps.stack.footprint(steps.container_id)
    assert (trace.netns, trace.ips, trace.network_attachment) == (False, [], False)


async def test_detach_frees_the_ip_when_the_netns_is_already_gone(steps: Steps) -> None:
    attached = await steps.network.attach_network(steps.network_input())
    netns = steps.stack.settings.node_paths().netns(steps.container_id)
    await asyncio.to_thread(delete_netns, netns)
    assert (await steps.stack.footprint(steps.container_id)).ips == [attached.ip]

    await steps.network.detach_network(steps.network_input())

    assert not netns_exists(netns)
    assert (await steps.stack.footprint(steps.container_id)).ips == []


async def test_spec_and_drop_twice_converge(steps: Steps) -> None:
    await steps.spec_and_shim()
    await steps.spec_and_shim()
    path = steps.stack.settings.node_paths().spec(steps.container_id)
    assert path.exists()

    await steps.spec.drop_spec(steps.ref)
    await steps.spec.drop_spec(steps.ref)

    assert not path.exists()


async def test_shim_twice_makes_one_container_and_task(steps: Steps) -> None:
    shim = await steps.spec_and_shim()
    first = await steps.shim.create_shim(shim)
    second = await steps.shim.create_shim(shim)

    containerd = steps.stack.containerd
    assert (await containerd.list_containers()).count(steps.container_id) == 1
    task = await containerd.get_task(steps.container_id)
    # The second run replaced the first run's container and task (a retry starts clean).
    assert task.status == "CREATED" and task.pid == second.pid
    assert first.pid > 0

    await steps.shim.delete_shim(steps.ref)
    await steps.shim.delete_shim(steps.ref)

    assert steps.container_id not in await containerd.list_containers()


async def test_shim_replaces_a_stale_container_and_task_of_a_crashed_attempt(
    steps: Steps,
) -> None:
    shim = await steps.spec_and_shim()
    await steps.shim.create_shim(shim)
    await steps.task.start_task(steps.ref)
    containerd = steps.stack.containerd
    # The attempt "crashed": its task ran and stopped, its container stays behind.
    await containerd.kill_task(steps.container_id, 9)
    await containerd.wait_task(steps.container_id)

    created = await steps.shim.create_shim(shim)
    started = await steps.task.start_task(steps.ref)

    task = await containerd.get_task(steps.container_id)
    assert (task.status, task.pid) == ("RUNNING", started.pid)
    assert created.pid == started.pid
    assert (await containerd.list_containers()).count(steps.container_id) == 1


async def test_task_start_twice_runs_one_task_and_stop_twice_removes_it(steps: Steps) -> None:
    await steps.shim.create_shim(await steps.spec_and_shim())
    first = await steps.task.start_task(steps.ref)
    second = await steps.task.start_task(steps.ref)
    assert first.pid == second.pid

    await steps.task.stop_task(steps.ref)
    await steps.task.stop_task(steps.ref)

    assert (await steps.stack.footprint(steps.container_id)).task_status is None


async def test_replace_task_twice_starts_one_new_task(steps: Steps) -> None:
    shim = await steps.spec_and_shim()
    old = (await steps.shim.create_shim(shim)).pid
    await steps.task.start_task(steps.ref)
    replace = ReplaceTaskInput(container_id=steps.container_id, node=steps.node, old_pid=old)

    first = await steps.shim.replace_task(replace)
    second = await steps.shim.replace_task(replace)

    task = await steps.stack.containerd.get_task(steps.container_id)
    assert first.pid is not None and first.pid != old
    assert (task.status, task.pid, second.pid) == ("RUNNING", first.pid, first.pid)
    await steps.shim.delete_shim(steps.ref)


async def test_replace_task_without_containerd_container_says_start_from_scratch(
    steps: Steps,
) -> None:
    replace = ReplaceTaskInput(container_id=steps.container_id, node=steps.node, old_pid=None)

    replaced = await steps.shim.replace_task(replace)

    assert replaced.pid is None
    assert steps.container_id not in await steps.stack.containerd.list_containers()
