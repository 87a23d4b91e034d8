"""A migrated PostgreSQL database of the session's own, for the repositories' tests.

It is made under the session's suite claim (``berth_test_<k>_repositories_<random>``), so the
claim's teardown drops it with the suite's other databases; no Temporal or containerd is started.
Each test makes its own node (and containers on it) with unique names, so tests share the
database without seeing each other's rows.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from berth.contract import ContainerState
from berth.db.models import Container, Node
from berth.db.session import make_engine, make_sessionmaker
from tests.support.stack import POSTGRES_URL, Suite, _create_database


@pytest.fixture(scope="session")
async def db_sessions(suite: Suite) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    name = f"{suite.database_prefix}repositories_{secrets.token_hex(4)}"
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(False)
    await asyncio.to_thread(_create_database, name, url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def _new_node(sessions: async_sessionmaker[AsyncSession]) -> str:
    name = f"node-{uuid.uuid4().hex[:8]}"
    async with sessions.begin() as session:
        session.add(Node(name=name, bridge="br-test", subnet="10.0.0.0/24"))
    return name


@pytest.fixture
async def node(db_sessions: async_sessionmaker[AsyncSession]) -> str:
    """A node of this test's own."""
    return await _new_node(db_sessions)


@pytest.fixture
async def other_node(db_sessions: async_sessionmaker[AsyncSession]) -> str:
    """A second node of this test's own."""
    return await _new_node(db_sessions)


MakeContainer = Callable[..., Awaitable[Container]]


@pytest.fixture
def make_container(db_sessions: async_sessionmaker[AsyncSession], node: str) -> MakeContainer:
    """Insert a container on the test's node (or ``on``) with the given columns."""

    async def make(
        state: ContainerState = ContainerState.CREATED,
        *,
        on: str | None = None,
        labels: dict[str, str] | None = None,
        healthcheck: dict[str, object] | None = None,
        **columns: object,
    ) -> Container:
        suffix = uuid.uuid4().hex
        config: dict[str, object] = {"labels": labels or {}}
        if healthcheck is not None:
            config["healthcheck"] = healthcheck
        container = Container(
            id=suffix + suffix,
            name=f"c-{suffix[:12]}",
            image="local/busybox:latest",
            node=on or node,
            config=config,
            state=state,
            **columns,
        )
        async with db_sessions.begin() as session:
            session.add(container)
        return container

    return make
