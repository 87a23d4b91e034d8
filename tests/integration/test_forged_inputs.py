"""Internal workflow inputs no client can forge (issue 12, items 6 and 8), on the real stack.

Each test starts a workflow by type name as any Temporal client could, with the input an
attacker would send, and shows that the container, its task in containerd and its rows in
PostgreSQL are exactly as before.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowFailureError
from temporalio.common import RawValue

from berth.activities.fleet import FleetActivities
from berth.config import node_task_queue
from berth.contract import FleetRestartInput, FleetSelector
from berth.db.models import Container, ContainerEvent, FleetItem, FleetRun, Node
from berth.errors import Conflict, NotFound
from berth.steps import BeginFleetInput, ExitOutput, exit_workflow_id
from tests.integration.conftest import Stack

RESULT_TIMEOUT = 30


def raw_json(value: Any) -> RawValue:
    data = json.dumps(value).encode()
    return RawValue(Payload(metadata={"encoding": b"json/plain"}, data=data))


@dataclass(frozen=True)
class Snapshot:
    """Everything a forged input could change about one container."""

    row: tuple[Any, ...]
    events: list[tuple[int, str]]
    task: tuple[str, int]


async def snapshot(stack: Stack, container_id: str) -> Snapshot:
    async with stack.sessions() as session:
        container = await session.get(Container, container_id)
        assert container is not None
        row = (
            container.state,
            container.pid,
            container.exit_code,
            container.operation,
            container.error,
            container.finished_at,
            container.restart_count,
        )
        events = (
            await session.execute(
                select(ContainerEvent.id, ContainerEvent.action)
                .where(ContainerEvent.container_id == container_id)
                .order_by(ContainerEvent.id)
            )
        ).all()
    task = await stack.containerd.get_task(container_id)
    return Snapshot(row=row, events=[(i, a) for i, a in events], task=(task.status, task.pid))


async def running_container(stack: Stack, **fields: object) -> tuple[str, Snapshot]:
    container_id = await stack.create(**fields)
    await stack.berth.start(container_id)
    before = await snapshot(stack, container_id)
    assert before.row[0] == "running" and before.task == ("RUNNING", before.row[1])
    return container_id, before


async def failure_type(run: Any) -> str | None:
    try:
        await asyncio.wait_for(run, RESULT_TIMEOUT)
    except WorkflowFailureError as err:
        return str(getattr(err.cause, "type", type(err.cause).__name__))
    return None


# -- ContainerExitedOnNode: a reported exit is checked against containerd and PostgreSQL ------


@pytest.mark.parametrize("pid_offset", [0, 1], ids=["its-real-pid", "a-wrong-pid"])
async def test_exit_reported_by_a_client_for_a_running_container_changes_nothing(
    stack: Stack, pid_offset: int
) -> None:
    # on-failure would restart it at once if a forged exit were taken: nothing may happen.
    container_id, before = await running_container(
        stack, restart_policy={"name": "on-failure", "maximum_retry_count": 3}
    )
    pid = before.row[1] + pid_offset

    result = await asyncio.wait_for(
        stack.berth.temporal.execute_workflow(
            "ContainerExitedOnNode",
            raw_json({"container_id": container_id, "pid": pid}),
            id=exit_workflow_id(container_id, pid),
            task_queue=node_task_queue(stack.settings.node),
            result_type=ExitOutput,
        ),
        RESULT_TIMEOUT,
    )

    assert result.recorded is False and result.error, result
    await asyncio.sleep(1.5)  # past the exit monitor's sweep: it sees nothing to report either
    assert await snapshot(stack, container_id) == before


async def test_exit_reported_with_a_made_up_exit_code_is_refused_and_changes_nothing(
    stack: Stack,
) -> None:
    container_id, before = await running_container(stack)
    pid = before.row[1]
    handle = await stack.berth.temporal.start_workflow(
        "ContainerExitedOnNode",
        raw_json(
            {"container_id": container_id, "node": stack.settings.node, "pid": pid, "exit_code": 0}
        ),
        id=f"forged-exit-{uuid.uuid4().hex[:8]}",
        task_queue=node_task_queue(stack.settings.node),
    )

    assert await failure_type(handle.result()) == "InvalidParameter"
    assert await snapshot(stack, container_id) == before


async def test_exit_reported_for_a_container_of_another_node_changes_nothing(
    stack: Stack,
) -> None:
    container_id, before = await running_container(stack)
    pid = before.row[1]
    other = f"forged-{uuid.uuid4().hex[:6]}"
    async with stack.sessions.begin() as session:
        # A node row no agent serves (seen long ago, so placement never picks it).
        session.add(
            Node(
                name=other,
                bridge="bforged0",
                subnet="10.213.250.0/24",
                last_seen_at=datetime(2000, 1, 1, tzinfo=UTC),
            )
        )
        await session.flush()
        await session.execute(
            update(Container).where(Container.id == container_id).values(node=other)
        )
    try:
        # node-1's containerd has no task of a node-2 container: not an exit to record.
        result = await asyncio.wait_for(
            stack.berth.temporal.execute_workflow(
                "ContainerExitedOnNode",
                raw_json({"container_id": container_id, "pid": pid}),
                id=f"forged-exit-{uuid.uuid4().hex[:8]}",
                task_queue=node_task_queue(stack.settings.node),
                result_type=ExitOutput,
            ),
            RESULT_TIMEOUT,
        )
    finally:
        async with stack.sessions.begin() as session:
            await session.execute(
                update(Container)
                .where(Container.id == container_id)
                .values(node=stack.settings.node)
            )
            await session.execute(delete(Node).where(Node.name == other))
    assert result.recorded is False
    assert await snapshot(stack, container_id) == before


# -- node workflows: the operation is the run's own, never an input -------------------------


async def test_node_workflow_given_an_operation_is_refused_and_changes_nothing(
    stack: Stack,
) -> None:
    container_id, before = await running_container(stack)
    handle = await stack.berth.temporal.start_workflow(
        "ContainerStopOnNode",
        raw_json({"request": {"container": container_id, "timeout": 0}, "operation": "x"}),
        id=f"forged-stop-{uuid.uuid4().hex[:8]}",
        task_queue=node_task_queue(stack.settings.node),
    )

    assert await failure_type(handle.result()) == "InvalidParameter"
    assert await snapshot(stack, container_id) == before


async def test_node_workflow_reusing_the_holders_workflow_id_is_busy_and_changes_nothing(
    stack: Stack,
) -> None:
    """A hold left by an ended run (terminated, say) names its workflow id; a client may start a
    new run under that id, but the run id differs: the container stays busy, nothing stops."""
    container_id, _ = await running_container(stack)
    holder_id = f"container-stop-{container_id}"
    ended = await stack.berth.temporal.start_workflow(
        "ContainerPauseOnNode",
        raw_json({"request": {"container": "no-such-container-xyz"}, "pause": True}),
        id=holder_id,
        task_queue=node_task_queue(stack.settings.node),
    )
    assert await failure_type(ended.result()) == "NotFound"
    async with stack.sessions.begin() as session:
        await session.execute(
            update(Container)
            .where(Container.id == container_id)
            .values(operation=f"{holder_id}@{ended.result_run_id}")
        )
    before = await snapshot(stack, container_id)
    try:
        forged = await stack.berth.temporal.start_workflow(
            "ContainerStopOnNode",
            raw_json({"request": {"container": container_id, "timeout": 0}}),
            id=holder_id,
            task_queue=node_task_queue(stack.settings.node),
        )
        assert await failure_type(forged.result()) == "Conflict"
        assert await snapshot(stack, container_id) == before
    finally:
        async with stack.sessions.begin() as session:
            await session.execute(
                update(Container).where(Container.id == container_id).values(operation=None)
            )


# -- FleetRestart: carry is the workflow's own ------------------------------------------------


async def fleet_rows(stack: Stack, name: str) -> list[tuple[Any, ...]]:
    async with stack.sessions() as session:
        runs = (await session.scalars(select(FleetRun).where(FleetRun.name == name))).all()
        rows: list[tuple[Any, ...]] = [(r.id, r.status, r.total, r.finished_at) for r in runs]
        for run in runs:
            items = await session.scalars(select(FleetItem).where(FleetItem.run_id == run.id))
            rows += [(i.seq, i.container_id, i.outcome, i.pid, i.finished_at) for i in items]
    return rows


@pytest.mark.parametrize(
    "carry",
    [
        {"acknowledged_failures": 1000, "canary_checked": True},
        {"cancelled": False, "paused": False, "runs": 2},
    ],
    ids=["budget-and-canary", "innocent-looking"],
)
async def test_fleet_restart_with_a_forged_carry_is_refused_and_restarts_nothing(
    stack: Stack, carry: dict[str, Any]
) -> None:
    container_id, before = await running_container(stack)
    name = f"forged-{uuid.uuid4().hex[:8]}"
    handle = await stack.berth.temporal.start_workflow(
        "FleetRestart",
        raw_json(
            {
                "name": name,
                "selector": {"ids": [container_id]},
                "canary": 1,
                "stop_timeout": 0,
                "carry": carry,
            }
        ),
        id=f"fleet-restart-{name}",
        task_queue=stack.settings.task_queue,
    )

    assert await failure_type(handle.result()) == "InvalidParameter"
    assert await snapshot(stack, container_id) == before
    assert await fleet_rows(stack, name) == []


async def test_fleet_restart_with_another_runs_id_is_refused_and_its_rows_unchanged(
    stack: Stack,
) -> None:
    container_id, _ = await running_container(stack)
    victim = f"victim-{uuid.uuid4().hex[:8]}"
    done = await (
        await stack.berth.fleet.restart(
            FleetRestartInput.model_validate(
                {"name": victim, "selector": {"ids": [container_id]}, "stop_timeout": 0}
            )
        )
    ).result()
    assert (done.status, done.counts.restarted) == ("completed", 1)
    rows = await fleet_rows(stack, victim)
    after_victim = await snapshot(stack, container_id)
    name = f"forged-{uuid.uuid4().hex[:8]}"

    handle = await stack.berth.temporal.start_workflow(
        "FleetRestart",
        raw_json(
            {
                "name": name,
                "selector": {"ids": [container_id]},
                "stop_timeout": 0,
                "carry": {"run_id": done.run_id},
            }
        ),
        id=f"fleet-restart-{name}",
        task_queue=stack.settings.task_queue,
    )

    assert await failure_type(handle.result()) == "InvalidParameter"
    assert await fleet_rows(stack, victim) == rows
    assert await fleet_rows(stack, name) == []
    assert await snapshot(stack, container_id) == after_victim
    # Below the workflow too: a run recorded under another fleet's name is not attached to.
    activities = FleetActivities(stack.sessions, stack.berth.temporal)
    with pytest.raises(Conflict, match=victim):
        await activities.begin_fleet_run(
            BeginFleetInput(
                run_id=done.run_id, name=name, selector=FleetSelector(ids=[container_id]), spec={}
            )
        )
    assert await fleet_rows(stack, victim) == rows


# -- prefix matching: '%' and '_' are not wildcards ------------------------------------------


@pytest.mark.parametrize(
    "pattern", ["____________", "%%%%%%%%%%%%", "%", "0_%_%_%_%_%_%", "{id6}______", "{id6}%%%%%%"]
)
async def test_wildcard_reference_matches_no_container(stack: Stack, pattern: str) -> None:
    container_id, before = await running_container(stack)
    # "{id6}" is this container's first 6 hex digits: as a LIKE pattern it matched it alone.
    ref = pattern.format(id6=container_id[:6])

    with pytest.raises(NotFound):
        await stack.berth.get(ref)
    outcome = await failure_type(
        stack.berth.temporal.execute_workflow(
            "ContainerStop",
            raw_json({"container": ref, "timeout": 0}),
            id=f"wildcard-stop-{uuid.uuid4().hex[:8]}",
            task_queue=stack.settings.task_queue,
        )
    )
    assert outcome == "NotFound"
    assert await snapshot(stack, container_id) == before


async def test_hex_prefix_still_finds_the_container(stack: Stack) -> None:
    container_id = await stack.create()

    assert (await stack.berth.get(container_id[:12])).id == container_id
