"""A second node agent (``node-2``) run as a real subprocess, with failure injection enabled.

Crash tests kill it with SIGKILL (or let an injected ``crash`` fault kill it), restart it, and
check what the saga and the leak checker say. The fixture that owns it always stops it by its
pid, also when a test fails; the pid is also recorded under the suite's state dir, so the suite's
teardown (tests/support/stack.py) ends an agent that a crashed session left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowHandle

from berth.config import Settings, node_task_queue
from berth.contract import ContainerConfig, ContainerStartInput, ContainerStartOutput
from berth.db.models import Container, MountHolder, NetworkAttachment
from berth.faults import ENABLE_VALUE, ENABLE_VARIABLE, FILE_VARIABLE
from berth.leaks import Finding, check_node
from berth.runtime.image import DEFAULT_REF
from berth.steps import NodeStartInput, start_workflow_id
from berth.worker import NodeRuntime, node_runtime
from dev.stack import StackPaths
from dev.teardown import tear_down_host
from tests.integration.conftest import ROOT, TEST_CODEC_KEYS, Stack
from tests.support.footprint import Footprint, footprint
from tests.support.stack import SuiteStack

NODE = "node-2"
READY_LINE = "worker running"
# A short workflow-task timeout: a task on a killed agent is retried elsewhere after this long.
TASK_TIMEOUT = timedelta(seconds=2)


class NodeAgent:
    """``python -m berth.worker node`` for the node of ``settings``, with a fault file."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.settings = settings
        self.fault_file = workdir / "faults.json"
        self.log = workdir / "agent.log"
        self.pid_file = StackPaths(settings.state_dir).pid_file(f"agent-{settings.node}")
        self.process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "BERTH_NODE": self.settings.node,
            "BERTH_BRIDGE": self.settings.bridge,
            "BERTH_SUBNET": self.settings.subnet,
            "BERTH_STATE_DIR": str(self.settings.state_dir),
            "BERTH_DATABASE_URL": self.settings.database_url.get_secret_value(),
            "BERTH_TEMPORAL_ADDRESS": self.settings.temporal_address,
            "BERTH_TEMPORAL_NAMESPACE": self.settings.temporal_namespace,
            "BERTH_CONTAINERD_NAMESPACE": self.settings.containerd_namespace,
            "BERTH_RECONCILE_INTERVAL_SECONDS": "3600",
            # The same payload encryption keys as this test session's clients and workers.
            "BERTH_CODEC_KEYS": TEST_CODEC_KEYS,
            ENABLE_VARIABLE: ENABLE_VALUE,
            FILE_VARIABLE: str(self.fault_file),
        }

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def start(self, timeout: float = 30.0) -> None:
        assert not self.alive
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "berth.worker", "node"],
                cwd=ROOT,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.pid_file.write_text(f"{self.process.pid}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise AssertionError(f"{self.name} agent died at start: {self.tail(offset)}")
            if READY_LINE in self.tail(offset):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} agent not ready after {timeout}s: {self.tail(offset)}")

    @property
    def name(self) -> str:
        return self.settings.node

    def tail(self, offset: int = 0) -> str:
        try:
            with self.log.open("rb") as stream:
                stream.seek(offset)
                return stream.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        """SIGKILL the agent by its pid."""
        if self.process is not None and self.alive:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    async def wait_dead(self, timeout: float = 30.0) -> int:
        """Wait for the agent to die (an injected crash); its return code."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                return code
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.name} agent did not die")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers; only this agent's own pid."""
        if self.process is None or not self.alive:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()
        self.pid_file.unlink(missing_ok=True)

    def set_faults(self, *faults: dict[str, Any]) -> None:
        """Replace the fault file and reset its hit counts (the agent re-reads it)."""
        Path(str(self.fault_file) + ".hits").unlink(missing_ok=True)
        self.fault_file.write_text(json.dumps({"faults": list(faults)}))

    def clear_faults(self) -> None:
        self.set_faults()


@dataclass
class Node2:
    """What a node-2 test needs: the agent, the node's runtime, and the shared stack."""

    stack: Stack
    agent: NodeAgent
    settings: Settings
    runtime: NodeRuntime
    sessions: async_sessionmaker[AsyncSession]
    temporal: Client
    created: list[str] = field(default_factory=list)

    async def create(self, **fields: object) -> str:
        fields.setdefault("image", DEFAULT_REF)
        fields.setdefault("cmd", ["sleep", "3600"])
        name = f"n2-{uuid.uuid4().hex[:10]}"
        created = await self.stack.berth.create(
            ContainerConfig.model_validate({"name": name, "node": NODE, **fields})
        )
        self.created.append(created.id)
        return created.id

    async def start_workflow(
        self, container_id: str, workflow_id: str | None = None
    ) -> WorkflowHandle[Any, ContainerStartOutput]:
        """The start saga on node-2, as the Berth client starts it (short task timeout)."""
        return await self.temporal.start_workflow(
            "ContainerStartOnNode",
            NodeStartInput(request=ContainerStartInput(container=container_id)),
            id=workflow_id or start_workflow_id(container_id),
            task_queue=node_task_queue(NODE),
            task_timeout=TASK_TIMEOUT,
            result_type=ContainerStartOutput,
        )

    async def footprint(self, container_id: str) -> Footprint:
        return await footprint(
            container_id,
            self.settings.node_paths(),
            self.runtime.containerd,
            self.runtime.cni,
            self.sessions,
        )

    async def leaks(self) -> list[Finding]:
        return await check_node(
            NODE,
            self.settings.node_paths(),
            self.runtime.containerd,
            self.runtime.cni,
            self.sessions,
        )

    async def record(self, container_id: str) -> Container:
        async with self.sessions() as session:
            found = await session.get(Container, container_id)
            assert found is not None
            return found

    async def forget(self, container_id: str) -> None:
        """Tear down the container's host state and drop its records (test cleanup)."""
        await tear_down_host(
            container_id, self.settings.node_paths(), self.runtime.containerd, self.runtime.cni
        )
        async with self.sessions.begin() as session:
            await session.execute(
                delete(MountHolder).where(MountHolder.container_id == container_id)
            )
            await session.execute(
                delete(NetworkAttachment).where(NetworkAttachment.container_id == container_id)
            )
            await session.execute(delete(Container).where(Container.id == container_id))


@pytest.fixture(scope="session")
def node2_settings(settings: Settings, suite_stack: SuiteStack) -> Settings:
    return suite_stack.node_settings(settings, NODE)


@pytest.fixture(scope="session")
async def node2_agent(
    node2_settings: Settings,
    workers: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[NodeAgent]:
    agent = NodeAgent(node2_settings, tmp_path_factory.mktemp("node2"))
    async with serving(agent):
        yield agent


@contextlib.asynccontextmanager
async def serving(agent: NodeAgent) -> AsyncIterator[None]:
    """Run ``agent`` (no faults; the suite imported the test image on its node); stop it after."""
    agent.clear_faults()
    try:
        await agent.start()
        yield
    finally:
        agent.stop()


@pytest.fixture(scope="session")
async def node2_runtime(node2_settings: Settings) -> AsyncIterator[NodeRuntime]:
    runtime = node_runtime(node2_settings)
    yield runtime
    await runtime.containerd.close()


@pytest.fixture
async def node2(
    stack: Stack,
    node2_agent: NodeAgent,
    node2_runtime: NodeRuntime,
    sessions: async_sessionmaker[AsyncSession],
    temporal: Client,
    node2_settings: Settings,
) -> AsyncIterator[Node2]:
    node2_agent.clear_faults()
    if not node2_agent.alive:
        await node2_agent.start()
    helper = Node2(stack, node2_agent, node2_settings, node2_runtime, sessions, temporal)
    try:
        yield helper
    finally:
        node2_agent.clear_faults()
        if not node2_agent.alive:
            await node2_agent.start()
        for container_id in helper.created:
            await helper.forget(container_id)
