"""The real stack for integration tests: PostgreSQL, Temporal, containerd, CNI.

The session runs a stack of its own (tests/support/stack.py): its Temporal dev server, node-1..3
containerds and PostgreSQL database, apart from a developer's stack and from any other session;
the control worker and node-1's agent run in this process against it, node-2's and node-3's as
subprocesses. While it runs, this process's ``BERTH_*`` environment names that stack, so a
subprocess a test starts (the CLI, an agent) reaches it and never a developer's.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from berth.client import BerthClient, connect
from berth.config import Settings
from berth.contract import ContainerConfig
from berth.db.session import make_engine, make_sessionmaker
from berth.errors import BerthError, Conflict
from berth.runtime.containerd import ContainerdClient
from berth.runtime.image import DEFAULT_REF
from berth.worker import NodeRuntime, node_runtime, running
from dev.teardown import tear_down_host
from tests.support.footprint import Footprint, footprint
from tests.support.stack import (
    NAMESPACE,
    Suite,
    SuiteStack,
    environment,
    free_port,
    start_stack,
)

ROOT = Path(__file__).resolve().parents[2]
TEST_NAMESPACE = NAMESPACE
# A fixed, test-only key, handed to the CLI and agent subprocesses too.
TEST_CODEC_KEYS = (
    '{"active": "test-1", "keys": {"test-1": "QmVydGgtdGVzdC1rZXktMzItYnl0ZXMtbG9uZyEhIT0="}}'
)
# The only host paths test containers may bind-mount.
BIND_ROOT = ROOT / "test-artifacts" / "binds"
# The only directory test containers may name seccomp profiles in.
SECCOMP_ROOT = ROOT / "test-artifacts" / "seccomp"
# An operator-listed export directory of the in-process node (node-2 uses its own default).
EXPORT_ROOT = ROOT / "test-artifacts" / "exports"


@pytest.fixture(scope="session")
async def suite_stack(suite: Suite) -> AsyncIterator[SuiteStack]:
    """The session's own Temporal, containerds and database (cleared with the suite claim)."""
    stack = await start_stack(suite)
    with environment(stack.environ()):
        yield stack


@pytest.fixture(scope="session")
def settings(suite_stack: SuiteStack) -> Settings:
    """node-1's settings: the in-process agent's, and the clients' and control worker's."""
    base = Settings(
        state_dir=suite_stack.suite.state_dir,
        database_url=suite_stack.database_url,
        temporal_address=suite_stack.temporal.address,
        temporal_namespace=TEST_NAMESPACE,
        containerd_namespace=TEST_NAMESPACE,
        metrics_address=f"127.0.0.1:{free_port()}",
        # The whole suite runs with encrypted payloads, as a security-minded operator would.
        codec_keys=TEST_CODEC_KEYS,
        allowed_host_paths=[BIND_ROOT],
        allowed_seccomp_paths=[SECCOMP_ROOT],
        allowed_export_paths=[EXPORT_ROOT],
    )
    return suite_stack.node_settings(base, "node-1")


@pytest.fixture(scope="session")
def sessions(settings: Settings) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(make_engine(settings.database_url))


@pytest.fixture(scope="session")
async def runtime(settings: Settings) -> AsyncIterator[NodeRuntime]:
    node = node_runtime(settings)  # the suite's stack imported the test image on every node
    yield node
    await node.containerd.close()


@pytest.fixture(scope="session")
async def temporal(settings: Settings) -> Client:
    return await connect(settings)


@pytest.fixture(scope="session")
async def workers(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    runtime: NodeRuntime,
    temporal: Client,
) -> AsyncIterator[None]:
    async with running("control", settings, temporal), running("node", settings, temporal):
        yield


@pytest.fixture(scope="session")
async def berth(settings: Settings, workers: None, temporal: Client) -> AsyncIterator[BerthClient]:
    client = BerthClient(temporal, make_engine(settings.database_url), settings)
    async with client:
        yield client


@dataclass
class Stack:
    """What a test needs to act on the real stack and look at its effects."""

    berth: BerthClient
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    runtime: NodeRuntime
    created: list[str]

    @property
    def containerd(self) -> ContainerdClient:
        return self.runtime.containerd

    async def create(self, **fields: object) -> str:
        """Create a container with a unique name; returns its id."""
        fields.setdefault("image", DEFAULT_REF)
        # On this session's in-process node (its paths, containerd and metrics are the ones
        # the tests look at), not wherever placement would put it.
        fields.setdefault("node", self.settings.node)
        fields.setdefault("cmd", ["sleep", "3600"])
        name = f"t-{uuid.uuid4().hex[:10]}"
        created = await self.berth.create(ContainerConfig.model_validate({"name": name, **fields}))
        self.created.append(created.id)
        return created.id

    async def footprint(self, container_id: str) -> Footprint:
        return await footprint(
            container_id,
            self.settings.node_paths(),
            self.runtime.containerd,
            self.runtime.cni,
            self.sessions,
        )


@pytest.fixture
def bind_dir() -> Iterator[Path]:
    """A fresh path under the allowed bind root (not yet created), removed afterwards.

    Removed without following links: attack tests leave a link to ``/`` in it, and nothing of a
    test may stay under the repository (setuptools and other tree walkers would follow it).
    """
    directory = BIND_ROOT / uuid.uuid4().hex[:8]
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


Cleanup = Callable[[str], Awaitable[None]]


@pytest.fixture
async def stack(
    berth: BerthClient,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    runtime: NodeRuntime,
) -> AsyncIterator[Stack]:
    stack = Stack(berth, settings, sessions, runtime, [])
    yield stack
    for container_id in stack.created:
        await force_remove(stack, container_id)


async def force_remove(stack: Stack, container_id: str) -> None:
    """Remove the container as ``berth rm -f`` does, then tear down whatever is left.

    An operation still holding it (a policy restart, an exit being recorded) is waited out.
    """
    for _ in range(100):
        try:
            # Bounded: a test that broke its node's agent must not hang the whole session.
            await asyncio.wait_for(stack.berth.remove(container_id, force=True), 30)
        except Conflict:
            await asyncio.sleep(0.2)
            continue
        except (BerthError, TimeoutError):
            pass
        break
    await tear_down_host(
        container_id, stack.settings.node_paths(), stack.containerd, stack.runtime.cni
    )


# The node-2 agent fixtures live beside their helper; registering them here, once, makes each
# session-scoped fixture one instance for the whole session (imported into several test
# modules, pytest would start one node-2 agent per module, and they would race for tasks).
from tests.integration.node_agent import (  # noqa: E402, F401
    node2,
    node2_agent,
    node2_runtime,
    node2_settings,
)
