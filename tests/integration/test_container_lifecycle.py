"""Exits, restart policies, restart, pause, remove and wait on the real stack."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import update

from berth.db.models import Container
from berth.errors import Conflict, NotFound
from tests.integration.conftest import Stack

EXITS_ON_TERM = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.1)


async def actions(stack: Stack, container_id: str) -> list[str]:
    # Every event, filtered here: a removed container's events outlive its record.
    return [e.action for e in await stack.berth.events() if e.container_id == container_id]


async def settled(stack: Stack, container_id: str, state: str) -> bool:
    record = await stack.berth.get(container_id)
    return record.state == state and record.operation is None


async def test_exit_of_command_by_itself_is_recorded_and_releases_resources(
    stack: Stack,
) -> None:
    container_id = await stack.create(cmd=["sh", "-c", "sleep 0.5; exit 7"])
    await stack.berth.start(container_id)

    assert await asyncio.wait_for(stack.berth.wait(container_id), 30) == 7

    await eventually(lambda: settled(stack, container_id, "exited"))
    record = await stack.berth.get(container_id)
    assert (record.exit_code, record.pid, record.restart_count) == (7, None, 0)
    assert record.finished_at is not None and not record.has_been_manually_stopped
    assert (await stack.footprint(container_id)).empty
    die = [e for e in await stack.berth.events(container_id) if e.action == "die"]
    assert [e.attributes["exitCode"] for e in die] == [7]


async def test_exit_of_task_killed_outside_berth_is_recorded(stack: Stack) -> None:
    container_id = await stack.create()
    await stack.berth.start(container_id)

    await stack.containerd.kill_task(container_id, 9)

    await eventually(lambda: settled(stack, container_id, "exited"))
    assert (await stack.berth.get(container_id)).exit_code == 137
    assert (await stack.footprint(container_id)).empty


async def test_restart_policy_on_failure_2_restarts_exactly_twice(stack: Stack) -> None:
    container_id = await stack.create(
        cmd=["sh", "-c", "exit 3"],
        restart_policy={"name": "on-failure", "maximum_retry_count": 2},
    )
    await stack.berth.start(container_id)

    async def restarted_twice() -> bool:
        record = await stack.berth.get(container_id)
        return record.restart_count == 2 and await settled(stack, container_id, "exited")

    await eventually(restarted_twice)
    await asyncio.sleep(2.5)  # longer than the next back-off (400 ms) and a sweep
    record = await stack.berth.get(container_id)
    assert (record.state, record.exit_code, record.restart_count) == ("exited", 3, 2)
    events = await actions(stack, container_id)
    assert (events.count("start"), events.count("die")) == (3, 3)
    assert (await stack.footprint(container_id)).empty


async def test_restart_policy_always_restarts_after_exit(stack: Stack) -> None:
    container_id = await stack.create(
        cmd=["sh", "-c", "sleep 0.3; exit 0"], restart_policy={"name": "always"}
    )
    first = await stack.berth.start(container_id)

    async def restarted() -> bool:
        record = await stack.berth.get(container_id)
        return record.restart_count >= 1 and record.state == "running"

    await eventually(restarted)
    record = await stack.berth.get(container_id)
    assert record.pid != first.pid
    assert "die" in await actions(stack, container_id)


async def test_restart_policy_always_after_manual_stop_does_not_restart(stack: Stack) -> None:
    container_id = await stack.create(cmd=EXITS_ON_TERM, restart_policy={"name": "always"})
    await stack.berth.start(container_id)

    await stack.berth.stop(container_id)
    await asyncio.sleep(2)

    record = await stack.berth.get(container_id)
    assert (record.state, record.restart_count) == ("exited", 0)
    assert (await actions(stack, container_id)).count("start") == 1


async def test_restart_of_running_container_runs_a_new_task(stack: Stack) -> None:
    container_id = await stack.create(cmd=EXITS_ON_TERM)
    first = await stack.berth.start(container_id)

    again = await stack.berth.restart(container_id, timeout=5)

    assert again.pid != first.pid
    assert (await stack.containerd.get_task(container_id)).pid == again.pid
    record = await stack.berth.get(container_id)
    assert (record.state, record.operation, record.pid) == ("running", None, again.pid)
    assert (await actions(stack, container_id))[-3:] == ["die", "stop", "start"]
    assert (await stack.footprint(container_id)).mount_holders == ["task"]


async def test_restart_of_created_container_starts_it(stack: Stack) -> None:
    container_id = await stack.create()

    started = await stack.berth.restart(container_id)

    assert (await stack.containerd.get_task(container_id)).pid == started.pid
    assert (await stack.berth.get(container_id)).state == "running"


async def test_pause_then_start_is_conflict_and_unpause_runs_again(stack: Stack) -> None:
    container_id = await stack.create()
    await stack.berth.start(container_id)

    paused = await stack.berth.pause(container_id)

    assert paused.state == "paused"
    assert (await stack.containerd.get_task(container_id)).status == "PAUSED"
    with pytest.raises(Conflict, match="cannot start a paused container, try unpause instead"):
        await stack.berth.start(container_id)

    unpaused = await stack.berth.unpause(container_id)

    assert unpaused.state == "running"
    assert (await stack.containerd.get_task(container_id)).status == "RUNNING"
    assert (await stack.berth.get(container_id)).state == "running"
    assert (await actions(stack, container_id))[-2:] == ["pause", "unpause"]


async def test_unpause_of_running_container_is_conflict(stack: Stack) -> None:
    container_id = await stack.create()
    await stack.berth.start(container_id)

    with pytest.raises(Conflict, match="is not paused"):
        await stack.berth.unpause(container_id)

    assert (await stack.berth.get(container_id)).operation is None


async def test_rm_without_force_of_running_container_is_refused(stack: Stack) -> None:
    container_id = await stack.create()
    await stack.berth.start(container_id)

    with pytest.raises(Conflict, match="stop the container before removing or force remove"):
        await stack.berth.remove(container_id)

    record = await stack.berth.get(container_id)
    assert (record.state, record.operation) == ("running", None)


async def test_rm_force_of_running_container_leaves_nothing(stack: Stack) -> None:
    container_id = await stack.create()
    await stack.berth.start(container_id)

    await stack.berth.remove(container_id, force=True)

    with pytest.raises(NotFound):
        await stack.berth.get(container_id)
    assert (await stack.footprint(container_id)).empty
    assert container_id not in await stack.containerd.list_snapshots()
    assert (await actions(stack, container_id))[-2:] == ["die", "destroy"]


async def test_rm_of_exited_container_removes_record_and_snapshot(stack: Stack) -> None:
    container_id = await stack.create(cmd=EXITS_ON_TERM)
    await stack.berth.start(container_id)
    await stack.berth.stop(container_id)

    await stack.berth.remove(container_id)

    with pytest.raises(NotFound):
        await stack.berth.get(container_id)
    assert container_id not in await stack.containerd.list_snapshots()


async def test_start_of_container_marked_for_removal_is_conflict(stack: Stack) -> None:
    container_id = await stack.create()
    async with stack.sessions.begin() as session:
        await session.execute(
            update(Container).where(Container.id == container_id).values(state="removing")
        )

    with pytest.raises(Conflict, match="container is marked for removal and cannot be started"):
        await stack.berth.start(container_id)


async def test_auto_remove_container_is_removed_after_it_exits(stack: Stack) -> None:
    container_id = await stack.create(cmd=["sh", "-c", "exit 5"], auto_remove=True)
    await stack.berth.start(container_id)

    assert await asyncio.wait_for(stack.berth.wait(container_id), 30) == 5

    async def gone() -> bool:
        try:
            await stack.berth.get(container_id)
        except NotFound:
            return True
        return False

    await eventually(gone)
    assert (await stack.footprint(container_id)).empty
    assert container_id not in await stack.containerd.list_snapshots()
