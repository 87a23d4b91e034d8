"""HealthRepository against the real PostgreSQL: a record belongs to one task pid."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from berth.contract import ContainerState
from berth.db.health_repository import HealthRepository
from berth.db.models import ContainerHealth
from tests.berth.db.conftest import MakeContainer

Sessions = async_sessionmaker[AsyncSession]


async def _record(sessions: Sessions, container_id: str) -> ContainerHealth:
    async with sessions() as session:
        record = await HealthRepository(session).get(container_id)
    assert record is not None
    return record


async def _begin(sessions: Sessions, container_id: str, node: str, pid: int) -> None:
    async with sessions.begin() as session:
        await HealthRepository(session).begin(container_id, node, pid, "starting")


async def _fail_three_times(sessions: Sessions, container_id: str) -> None:
    """Leave the record ``unhealthy`` with a streak of 3, as three failed probes would."""
    async with sessions.begin() as session:
        record = await HealthRepository(session).get(container_id, for_update=True)
        assert record is not None
        record.status, record.failing_streak = "unhealthy", 3


async def test_health_repository_begin_new_container_records_starting(
    db_sessions: Sessions, make_container: MakeContainer, node: str
) -> None:
    container = await make_container(ContainerState.RUNNING, pid=10)

    await _begin(db_sessions, container.id, node, 10)

    record = await _record(db_sessions, container.id)
    assert (record.pid, record.node, record.status, record.failing_streak) == (
        10,
        node,
        "starting",
        0,
    )


async def test_health_repository_begin_same_pid_keeps_streak(
    db_sessions: Sessions, make_container: MakeContainer, node: str
) -> None:
    container = await make_container(ContainerState.RUNNING, pid=10)
    await _begin(db_sessions, container.id, node, 10)
    await _fail_three_times(db_sessions, container.id)

    await _begin(db_sessions, container.id, node, 10)

    record = await _record(db_sessions, container.id)
    assert (record.status, record.failing_streak) == ("unhealthy", 3)


async def test_health_repository_begin_new_pid_starts_over(
    db_sessions: Sessions, make_container: MakeContainer, node: str
) -> None:
    container = await make_container(ContainerState.RUNNING, pid=11)
    await _begin(db_sessions, container.id, node, 10)
    await _fail_three_times(db_sessions, container.id)

    await _begin(db_sessions, container.id, node, 11)

    record = await _record(db_sessions, container.id)
    assert (record.pid, record.status, record.failing_streak) == (11, "starting", 0)


async def test_health_repository_clear_exec_other_id_keeps_recorded_exec(
    db_sessions: Sessions, make_container: MakeContainer, node: str
) -> None:
    container = await make_container(ContainerState.RUNNING, pid=10)
    await _begin(db_sessions, container.id, node, 10)
    async with db_sessions.begin() as session:
        await HealthRepository(session).set_exec(container.id, "berth-health-new")
    async with db_sessions.begin() as session:
        await HealthRepository(session).clear_exec(container.id, "berth-health-old")
    assert (await _record(db_sessions, container.id)).exec_id == "berth-health-new"

    async with db_sessions.begin() as session:
        await HealthRepository(session).clear_exec(container.id, "berth-health-new")

    assert (await _record(db_sessions, container.id)).exec_id is None


async def test_health_repository_execs_on_lists_recorded_execs_of_that_node_only(
    db_sessions: Sessions, make_container: MakeContainer, node: str, other_node: str
) -> None:
    probing = await make_container(ContainerState.RUNNING, pid=10)
    idle = await make_container(ContainerState.RUNNING, pid=11)
    elsewhere = await make_container(ContainerState.RUNNING, pid=12, on=other_node)
    for container, on in ((probing, node), (idle, node), (elsewhere, other_node)):
        await _begin(db_sessions, container.id, on, container.pid or 0)
    async with db_sessions.begin() as session:
        await HealthRepository(session).set_exec(probing.id, "berth-health-a")
        await HealthRepository(session).set_exec(elsewhere.id, "berth-health-b")

    async with db_sessions() as session:
        found = await HealthRepository(session).execs_on(node)

    assert found == [(probing.id, "berth-health-a")]


async def test_health_repository_current_statuses_skips_records_of_earlier_tasks(
    db_sessions: Sessions, make_container: MakeContainer, node: str
) -> None:
    current = await make_container(ContainerState.RUNNING, pid=10)
    replaced = await make_container(ContainerState.RUNNING, pid=21)
    await _begin(db_sessions, current.id, node, 10)
    await _begin(db_sessions, replaced.id, node, 20)

    async with db_sessions() as session:
        statuses = await HealthRepository(session).current_statuses()

    assert statuses.get(current.id) == "starting"
    assert replaced.id not in statuses


async def test_health_repository_declared_and_probed_reports_config_check_and_record(
    db_sessions: Sessions, make_container: MakeContainer, node: str
) -> None:
    check = {"test": ["CMD", "true"]}
    declared = await make_container(healthcheck=check)
    probed = await make_container(ContainerState.RUNNING, pid=10)
    neither = await make_container()
    await _begin(db_sessions, probed.id, node, 10)

    async with db_sessions() as session:
        rows = await HealthRepository(session).declared_and_probed(
            [declared.id, probed.id, neither.id]
        )

    assert sorted(rows) == sorted(
        [(declared.id, check, False), (probed.id, None, True), (neither.id, None, False)]
    )


async def test_health_repository_declared_and_probed_no_ids_returns_empty(
    db_sessions: Sessions,
) -> None:
    async with db_sessions() as session:
        assert await HealthRepository(session).declared_and_probed([]) == []
