"""FleetRepository against the real PostgreSQL: a run, its items in order, their outcomes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from berth.db.fleet_repository import FleetRepository

Sessions = async_sessionmaker[AsyncSession]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def _run(sessions: Sessions, selection: list[tuple[str, str, str]], name: str = "web") -> str:
    run_id = uuid.uuid4().hex
    async with sessions.begin() as session:
        await FleetRepository(session).create_run(run_id, name, {"max_parallel": 2}, selection)
    return run_id


def _selection(count: int, node: str = "node-a") -> list[tuple[str, str, str]]:
    return [(f"id-{i}", f"name-{i}", node) for i in range(count)]


async def _record(
    sessions: Sessions, run_id: str, seq: int, outcome: str, error: str | None, minute: int
) -> None:
    async with sessions.begin() as session:
        await FleetRepository(session).record_item(
            run_id, seq, outcome, error, 42, T0, T0 + timedelta(minutes=minute)
        )


async def test_fleet_repository_create_run_numbers_items_in_given_order(
    db_sessions: Sessions,
) -> None:
    selection = [("b", "web-b", "node-2"), ("a", "web-a", "node-1")]
    run_id = await _run(db_sessions, selection)

    async with db_sessions() as session:
        fleet = FleetRepository(session)
        run = await fleet.run(run_id)
        items = await fleet.items(run_id)

    assert run is not None and (run.status, run.total, run.spec) == (
        "running",
        2,
        {"max_parallel": 2},
    )
    assert [(i.seq, i.container_id, i.container_name, i.node, i.outcome) for i in items] == [
        (1, "b", "web-b", "node-2", "pending"),
        (2, "a", "web-a", "node-1", "pending"),
    ]


async def test_fleet_repository_create_run_empty_selection_records_run_without_items(
    db_sessions: Sessions,
) -> None:
    run_id = await _run(db_sessions, [])

    async with db_sessions() as session:
        fleet = FleetRepository(session)
        run = await fleet.run(run_id)
        items = await fleet.items(run_id)

    assert run is not None and run.total == 0
    assert items == []


async def test_fleet_repository_pending_items_pages_after_seq_skipping_finished(
    db_sessions: Sessions,
) -> None:
    run_id = await _run(db_sessions, _selection(6))
    await _record(db_sessions, run_id, 3, "restarted", None, 1)

    async with db_sessions() as session:
        page = await FleetRepository(session).pending_items(run_id, after_seq=1, limit=3)

    assert [i.seq for i in page] == [2, 4, 5]


async def test_fleet_repository_record_item_writes_outcome_and_timings(
    db_sessions: Sessions,
) -> None:
    run_id = await _run(db_sessions, _selection(1))

    await _record(db_sessions, run_id, 1, "failed", "boom", 5)

    async with db_sessions() as session:
        (item,) = await FleetRepository(session).items(run_id)
    assert (item.outcome, item.error, item.pid, item.started_at, item.finished_at) == (
        "failed",
        "boom",
        42,
        T0,
        T0 + timedelta(minutes=5),
    )


async def test_fleet_repository_outcome_counts_groups_by_node_and_outcome(
    db_sessions: Sessions,
) -> None:
    run_id = await _run(db_sessions, _selection(3, "node-a") + _selection(1, "node-b"))
    await _record(db_sessions, run_id, 1, "restarted", None, 1)
    await _record(db_sessions, run_id, 2, "failed", "x", 2)

    async with db_sessions() as session:
        counts = await FleetRepository(session).outcome_counts(run_id)

    assert counts == {
        "node-a": {"restarted": 1, "failed": 1, "pending": 1},
        "node-b": {"pending": 1},
    }


async def test_fleet_repository_recent_errors_newest_failures_first_without_empty(
    db_sessions: Sessions,
) -> None:
    run_id = await _run(db_sessions, _selection(5))
    await _record(db_sessions, run_id, 1, "failed", "first", 1)
    await _record(db_sessions, run_id, 2, "failed", "second", 2)
    await _record(db_sessions, run_id, 3, "failed", None, 3)
    await _record(db_sessions, run_id, 4, "busy", "not a failure", 4)
    await _record(db_sessions, run_id, 5, "failed", "third", 5)

    async with db_sessions() as session:
        newest = await FleetRepository(session).recent_errors(run_id, limit=3)

    assert newest == ["third", "second"]


async def test_fleet_repository_set_status_without_finish_keeps_finished_at(
    db_sessions: Sessions,
) -> None:
    run_id = await _run(db_sessions, [])
    async with db_sessions.begin() as session:
        await FleetRepository(session).set_status(run_id, "completed", None, T0)

    async with db_sessions.begin() as session:
        await FleetRepository(session).set_status(run_id, "paused", "operator")

    async with db_sessions() as session:
        run = await FleetRepository(session).run(run_id)
    assert run is not None
    assert (run.status, run.reason, run.finished_at) == ("paused", "operator", T0)


async def test_fleet_repository_latest_run_returns_newest_of_that_name(
    db_sessions: Sessions,
) -> None:
    name = f"fleet-{uuid.uuid4().hex[:8]}"
    await _run(db_sessions, [], name)
    newest = await _run(db_sessions, [], name)
    await _run(db_sessions, [], f"{name}-other")

    async with db_sessions() as session:
        fleet = FleetRepository(session)
        latest = await fleet.latest_run(name)
        missing = await fleet.latest_run(f"{name}-none")

    assert latest is not None and latest.id == newest
    assert missing is None
