"""ContainerRepository's node and selector queries against the real PostgreSQL."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from berth.contract import ContainerState, FleetSelector
from berth.db.repository import ContainerRepository
from tests.berth.db.conftest import MakeContainer

Sessions = async_sessionmaker[AsyncSession]


async def test_container_repository_by_id_name_given_returns_none(
    db_sessions: Sessions, make_container: MakeContainer
) -> None:
    made = await make_container()
    async with db_sessions() as session:
        containers = ContainerRepository(session)
        found = await containers.by_id(made.id)
        by_name = await containers.by_id(made.name)
    assert found is not None and found.name == made.name
    assert by_name is None


async def test_container_repository_on_node_returns_only_that_nodes_containers(
    db_sessions: Sessions, make_container: MakeContainer, node: str, other_node: str
) -> None:
    here = {(await make_container(s)).id for s in (ContainerState.CREATED, ContainerState.DEAD)}
    await make_container(on=other_node)
    async with db_sessions() as session:
        found = {c.id for c in await ContainerRepository(session).on_node(node)}
    assert found == here


async def test_container_repository_running_on_skips_other_states_nodes_and_missing_pids(
    db_sessions: Sessions, make_container: MakeContainer, node: str, other_node: str
) -> None:
    running = await make_container(ContainerState.RUNNING, pid=10)
    await make_container(ContainerState.RUNNING, pid=None)
    await make_container(ContainerState.PAUSED, pid=11)
    await make_container(ContainerState.EXITED)
    await make_container(ContainerState.RUNNING, pid=12, on=other_node)
    async with db_sessions() as session:
        found = [c.id for c in await ContainerRepository(session).running_on(node)]
    assert found == [running.id]


async def test_container_repository_live_unheld_on_skips_held_and_stopped_containers(
    db_sessions: Sessions, make_container: MakeContainer, node: str
) -> None:
    running = await make_container(ContainerState.RUNNING, pid=10)
    paused = await make_container(ContainerState.PAUSED, pid=11)
    await make_container(ContainerState.RUNNING, pid=12, operation="container-stop-x@run")
    await make_container(ContainerState.EXITED)
    await make_container(ContainerState.STOPPING, pid=13)
    async with db_sessions() as session:
        found = {c.id for c in await ContainerRepository(session).live_unheld_on(node)}
    assert found == {running.id, paused.id}


async def test_container_repository_selected_by_node_returns_id_name_node(
    db_sessions: Sessions, make_container: MakeContainer, node: str
) -> None:
    made = await make_container()
    async with db_sessions() as session:
        found = await ContainerRepository(session).selected(FleetSelector(node=node))
    assert found == [(made.id, made.name, node)]


async def test_container_repository_selected_by_ids_matches_ids_and_names(
    db_sessions: Sessions, make_container: MakeContainer, node: str
) -> None:
    by_id, by_name, _ = [await make_container() for _ in range(3)]
    selector = FleetSelector(ids=[by_id.id, "/" + by_name.name], node=node)
    async with db_sessions() as session:
        found = {row[0] for row in await ContainerRepository(session).selected(selector)}
    assert found == {by_id.id, by_name.id}


async def test_container_repository_selected_by_labels_needs_every_label(
    db_sessions: Sessions, make_container: MakeContainer, node: str
) -> None:
    both = await make_container(labels={"app": "web", "tier": "front"})
    await make_container(labels={"app": "web"})
    await make_container(labels={"app": "db", "tier": "front"})
    selector = FleetSelector(labels={"app": "web", "tier": "front"}, node=node)
    async with db_sessions() as session:
        found = [row[0] for row in await ContainerRepository(session).selected(selector)]
    assert found == [both.id]


async def test_container_repository_selected_by_state_and_node_needs_both(
    db_sessions: Sessions, make_container: MakeContainer, node: str, other_node: str
) -> None:
    running = await make_container(ContainerState.RUNNING, pid=10)
    exited = await make_container(ContainerState.EXITED)
    elsewhere = await make_container(ContainerState.RUNNING, pid=11, on=other_node)
    selector = FleetSelector(
        state=ContainerState.RUNNING, node=node, ids=[running.id, exited.id, elsewhere.id]
    )
    async with db_sessions() as session:
        found = {row[0] for row in await ContainerRepository(session).selected(selector)}
    assert found == {running.id}


async def test_container_repository_selected_without_criteria_returns_every_container(
    db_sessions: Sessions, make_container: MakeContainer, node: str, other_node: str
) -> None:
    made = {(await make_container(on=n)).id for n in (node, other_node)}
    async with db_sessions() as session:
        found = {row[0] for row in await ContainerRepository(session).selected(FleetSelector())}
    assert made <= found
