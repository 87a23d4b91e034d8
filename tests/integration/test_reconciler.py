"""The reconciler repairs what terminated sagas and lost agents left on node-2."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import uuid

from sqlalchemy import select
from temporalio.client import Client

from berth.activities.mount import MountActivities
from berth.activities.network import NetworkActivities
from berth.activities.shim import ShimActivities
from berth.activities.spec import SpecActivities
from berth.activities.task import TaskActivities
from berth.contract import ContainerConfig
from berth.db.models import ContainerEvent
from berth.leaks import LeakKind, node_shims
from berth.reconciler import Reconciler, Undo, temporal_workflow_running
from berth.runtime.cgroups import CGROUP_ROOT, container_cgroups
from berth.runtime.containerd_daemon import start_containerd, stop_containerd
from berth.runtime.image import DEFAULT_REF
from berth.runtime.mounts import is_mounted, mount_rootfs
from berth.runtime.netns import create_netns, netns_exists
from berth.runtime.oci_spec import CGROUP_PARENT, build_spec
from berth.runtime.shims import shim_alive
from tests.integration.node_agent import (
    Node2,
)
from tests.integration.test_crash_safety import RESULT_TIMEOUT, wait_until
from tests.support.shims import fake_shim
from tests.support.stack import SuiteStack


def reconciler(node2: Node2, temporal: Client) -> Reconciler:
    paths = node2.settings.node_paths()
    runtime = node2.runtime
    undo = Undo(
        mount=MountActivities(node2.sessions, runtime.containerd, paths),
        network=NetworkActivities(node2.sessions, runtime.cni, paths),
        spec=SpecActivities(paths),
        shim=ShimActivities(runtime.containerd, paths),
        task=TaskActivities(runtime.containerd),
    )
    return Reconciler(
        "node-2",
        paths,
        runtime.containerd,
        runtime.cni,
        node2.sessions,
        undo,
        temporal_workflow_running(temporal),
    )


async def repair_events(node2: Node2, container_id: str) -> list[str]:
    async with node2.sessions() as session:
        events = await session.scalars(
            select(ContainerEvent).where(
                ContainerEvent.container_id == container_id, ContainerEvent.action == "reconcile"
            )
        )
        return [e.attributes["repair"] for e in events]


async def test_reconciler_unmounts_a_mount_without_holder(node2: Node2, temporal: Client) -> None:
    container_id = await node2.create()
    containerd = node2.runtime.containerd
    image = await containerd.resolve_image(DEFAULT_REF)
    mounts = await containerd.prepare_snapshot(container_id, image.chain_id)
    target = node2.settings.node_paths().rootfs(container_id)
    await asyncio.to_thread(mount_rootfs, mounts, target)
    assert LeakKind.MOUNT_WITHOUT_HOLDER in {f.kind for f in await node2.leaks()}

    repairs = await reconciler(node2, temporal).reconcile()

    assert [r.kind for r in repairs] == ["mount-without-holder"]
    assert not is_mounted(target)
    assert await repair_events(node2, container_id) == ["mount-without-holder"]
    assert await node2.leaks() == []


async def test_reconciler_removes_a_netns_without_container(node2: Node2, temporal: Client) -> None:
    container_id = await node2.create()
    netns = node2.settings.node_paths().netns(container_id)
    await asyncio.to_thread(create_netns, netns)
    await asyncio.to_thread(node2.runtime.cni.attach, container_id, netns)
    kinds = {f.kind for f in await node2.leaks()}
    assert {LeakKind.NETNS_WITHOUT_ATTACHMENT, LeakKind.IP_WITHOUT_ATTACHMENT} <= kinds

    repairs = await reconciler(node2, temporal).reconcile()

    assert [r.kind for r in repairs] == ["network-leftover"]
    assert not netns_exists(netns) and not netns.exists()
    assert container_id not in node2.runtime.cni.reservations().values()
    assert await node2.leaks() == []


async def test_reconciler_deletes_a_containerd_container_postgres_does_not_know(
    node2: Node2, temporal: Client
) -> None:
    container_id = await node2.create()
    containerd = node2.runtime.containerd
    image = await containerd.resolve_image(DEFAULT_REF)
    config = ContainerConfig(name="ghost", image=DEFAULT_REF, cmd=["sleep", "60"])
    spec = build_spec(
        container_id, config, image.config, node2.settings.node_paths().rootfs(container_id), None
    )
    await containerd.prepare_snapshot(container_id, image.chain_id)
    await containerd.create_container(
        container_id, DEFAULT_REF, snapshot_key=container_id, spec=spec, labels={}
    )
    assert LeakKind.CONTAINERD_CONTAINER_UNKNOWN in {f.kind for f in await node2.leaks()}

    repairs = await reconciler(node2, temporal).reconcile()

    assert [r.kind for r in repairs] == ["containerd-leftover"]
    assert container_id not in await containerd.list_containers()
    assert await node2.leaks() == []


async def test_reconciler_undoes_a_terminated_start_and_resets_the_state(
    node2: Node2, temporal: Client
) -> None:
    container_id = await node2.create()
    node2.agent.set_faults(
        {"point": "task:before", "action": "sleep", "seconds": 30, "container": container_id}
    )
    handle = await node2.start_workflow(container_id)

    async def shim_created() -> bool:
        return container_id in await node2.runtime.containerd.list_containers()

    await wait_until(shim_created)  # the saga stalls before starting the task
    await handle.terminate("test: a terminated saga runs no compensation")
    # Local activities already running in the agent's workflow task would go on after a
    # terminate (the agent learns of it only when it completes the task); the node is lost
    # too here, so nothing of the saga runs any more.
    node2.agent.kill()
    await node2.agent.wait_dead()
    node2.agent.clear_faults()
    record = await node2.record(container_id)
    assert (record.state, record.operation) == ("starting", f"{handle.id}@{handle.result_run_id}")
    assert (await node2.footprint(container_id)).rootfs_mounts == 1

    repairs = await asyncio.wait_for(reconciler(node2, temporal).reconcile(), RESULT_TIMEOUT)

    assert [r.kind for r in repairs] == ["terminated-operation"]
    record = await node2.record(container_id)
    assert (record.state, record.operation) == ("created", None)
    assert (await node2.footprint(container_id)).empty
    assert await repair_events(node2, container_id) == ["terminated-operation"]
    assert await node2.leaks() == []


async def test_agent_reconciles_at_start(node2: Node2) -> None:
    container_id = await node2.create()
    netns = node2.settings.node_paths().netns(container_id)
    await asyncio.to_thread(create_netns, netns)

    node2.agent.stop()
    await node2.agent.start()

    for _ in range(100):
        if not netns.exists():
            break
        await asyncio.sleep(0.1)
    assert not netns.exists()
    assert await node2.leaks() == []
    log = node2.agent.tail()
    assert "reconciler on node-2 repaired network-leftover" in log, json.dumps(log[-2000:])


async def lose_task_record(node2: Node2, container_id: str) -> None:
    """Restart node-2's containerd without the task's bundle: the shim runs on, unknown to it."""
    paths = node2.settings.node_paths()
    await stop_containerd(paths)
    bundles = paths.containerd_dir / "state" / "io.containerd.runtime.v2.task"
    shutil.rmtree(bundles / node2.runtime.containerd.namespace / container_id)
    await start_containerd(paths)


async def test_reconciler_reaps_a_shim_whose_task_record_is_gone(
    node2: Node2, temporal: Client, suite_stack: SuiteStack
) -> None:
    container_id = await node2.create()
    handle = await node2.start_workflow(container_id)
    await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)
    containerd = node2.runtime.containerd
    (shim,) = node_shims(containerd)[container_id]
    node3_socket = suite_stack.suite.node_paths("node-3").containerd_socket
    decoys = [
        fake_shim("other-namespace", container_id, containerd.socket),
        fake_shim(containerd.namespace, container_id, node3_socket),
    ]
    try:
        await lose_task_record(node2, container_id)
        assert container_id not in {task.id for task in await containerd.list_tasks()}

        async def exit_recorded() -> bool:
            record = await node2.record(container_id)
            return record.state == "exited" and record.operation is None

        # The agent's exit monitor sees the task gone and records the exit.
        await wait_until(exit_recorded, RESULT_TIMEOUT)
        findings = await node2.leaks()
        assert {(f.kind, f.container_id) for f in findings} == {
            (LeakKind.SHIM_WITHOUT_TASK, container_id),
            (LeakKind.CGROUP_WITHOUT_TASK, container_id),
        }
        assert [f.subject for f in findings if f.kind is LeakKind.SHIM_WITHOUT_TASK] == [
            f"pid {shim.pid}"
        ]

        repairs = await reconciler(node2, temporal).reconcile()

        assert {r.kind for r in repairs} == {"shim-leftover", "cgroup-leftover"}
        assert not shim_alive(shim)
        assert container_id not in container_cgroups()
        assert await node2.leaks() == []
        assert all(decoy.poll() is None for decoy in decoys)
    finally:
        for decoy in decoys:
            decoy.kill()
            decoy.wait()


async def test_reconciler_removes_an_empty_leftover_cgroup(node2: Node2, temporal: Client) -> None:
    container_id = await node2.create()
    stranger = uuid.uuid4().hex * 2  # a container of another deployment: not node-2's
    made = []
    for controller in ("memory", "pids"):
        for cid in (container_id, stranger):
            directory = CGROUP_ROOT / controller / CGROUP_PARENT.strip("/") / cid
            directory.mkdir(parents=True)
            made.append(directory)
    try:
        findings = await node2.leaks()
        assert [(f.kind, f.container_id) for f in findings] == [
            (LeakKind.CGROUP_WITHOUT_TASK, container_id)
        ]

        repairs = await reconciler(node2, temporal).reconcile()

        assert [r.kind for r in repairs] == ["cgroup-leftover"]
        assert container_id not in container_cgroups()
        assert len(container_cgroups()[stranger]) == 2
        assert await repair_events(node2, container_id) == ["cgroup-leftover"]
        assert await node2.leaks() == []
    finally:
        for directory in made:
            with contextlib.suppress(FileNotFoundError):
                directory.rmdir()
