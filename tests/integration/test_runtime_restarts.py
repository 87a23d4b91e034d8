"""Operations ride out a containerd restart on their node (issue 15), on the suite's own stack.

node-2's agent (a subprocess with failure injection) holds a step at a fault point while the test
SIGKILLs node-2's containerd by its pidfile's pid and starts it again 5 s later: the operation
succeeds and nothing is left. containerd frozen (SIGSTOP) for 20 s: the operation succeeds or
fails with ``Unavailable``, and nothing is left either way. A containerd SIGKILLed while it
creates a task leaves that task's shim behind, on which the next create used to hang: the retried
step ends it. On node-3, an agent with a 10 s grace: containerd down for longer fails the start
with ``Unavailable`` after the grace, the saga's current details saying what it waited for, and
every step is undone once containerd is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from berth.config import NodePaths, Settings, node_task_queue
from berth.contract import ContainerConfig, ContainerStartInput, ContainerStartOutput
from berth.errors import as_berth_error
from berth.leaks import check_node
from berth.runtime.containerd_daemon import pid_path, start_containerd, task_bundle
from berth.runtime.image import DEFAULT_REF
from berth.runtime.shims import list_shims
from berth.runtime.types import TaskStatus
from berth.steps import NodeStartInput, start_workflow_id
from berth.worker import NodeRuntime, node_runtime
from tests.integration.conftest import Stack, force_remove
from tests.integration.node_agent import TASK_TIMEOUT, Node2, NodeAgent, serving
from tests.support.stack import SuiteStack

DOWN_SECONDS = 5.0
FROZEN_SECONDS = 20.0
SHORT_GRACE_SECONDS = 10.0
# Bounds each wait of a test; the default grace is 60 s.
RESULT_TIMEOUT = 90.0


def containerd_pid(paths: NodePaths) -> int:
    return int(pid_path(paths).read_text().strip())


def kill_containerd(paths: NodePaths) -> None:
    """SIGKILL the node's containerd by its pidfile's pid and reap it (this process started it)."""
    pid = containerd_pid(paths)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            reaped, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            if not Path(f"/proc/{pid}").exists():
                return
        else:
            if reaped == pid:
                return
        time.sleep(0.02)
    raise AssertionError(f"containerd {pid} did not die")


@contextlib.asynccontextmanager
async def containerd_back_at_the_end(paths: NodePaths) -> AsyncIterator[None]:
    """Whatever the test did to the node's containerd, it runs again afterwards."""
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError, FileNotFoundError, ValueError):
            os.kill(containerd_pid(paths), signal.SIGCONT)
        await start_containerd(paths)


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.002)


def fault_hit(agent: NodeAgent) -> bool:
    """Whether the agent reached the fault point (counted for a fault with ``times``)."""
    return Path(str(agent.fault_file) + ".hits").exists()


async def current_details(handle: WorkflowHandle[Any, Any]) -> str:
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return str(metadata.current_details)


async def wait_for_details(handle: WorkflowHandle[Any, Any], text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            seen = await asyncio.wait_for(current_details(handle), 5)
            if text in seen:
                return seen
        await asyncio.sleep(0.5)
    raise AssertionError(f"current details never said {text!r}; last: {seen!r}")


async def assert_nothing_left(node: Node2, container_id: str) -> None:
    """No leak on node-2, and at most the one shim of the container's live task."""
    assert await node.leaks() == []
    shims = list_shims(
        node.settings.node_paths().containerd_socket, node.settings.containerd_namespace
    )
    ours = [shim for shim in shims if shim.container_id == container_id]
    try:
        task = await node.runtime.containerd.get_task(container_id)
    except Exception:
        task = None
    assert len(ours) == (1 if task is not None else 0), ours


# --- containerd SIGKILLed and back after 5 s, during each step ------------------------------------


@pytest.mark.parametrize("step", ["mount", "network", "spec", "shim", "task"])
async def test_start_containerd_killed_during_step_and_back_after_5s_succeeds(
    node2: Node2, step: str
) -> None:
    paths = node2.settings.node_paths()
    cid = await node2.create()
    node2.agent.set_faults(
        {"point": f"{step}:before", "action": "sleep", "seconds": 0.3, "times": 1000}
    )
    async with containerd_back_at_the_end(paths):
        handle = await node2.start_workflow(cid)
        await until(lambda: fault_hit(node2.agent), 30, f"{step} reached")
        kill_containerd(paths)
        if step == "shim":
            # The step finds containerd gone; the saga says so while it waits.
            await wait_for_details(handle, "waiting for containerd on node-2", 15)
        await asyncio.sleep(DOWN_SECONDS)
        await start_containerd(paths)
        started = await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)
    assert started.pid > 0
    task = await node2.runtime.containerd.get_task(cid)
    assert task.status is TaskStatus.RUNNING and task.pid == started.pid
    await assert_nothing_left(node2, cid)


async def test_stop_containerd_killed_during_release_and_back_after_5s_succeeds(
    node2: Node2,
) -> None:
    paths = node2.settings.node_paths()
    cid = await node2.create()
    await asyncio.wait_for((await node2.start_workflow(cid)).result(), RESULT_TIMEOUT)
    node2.agent.set_faults(
        {"point": "undo-shim:before", "action": "sleep", "seconds": 0.3, "times": 1000}
    )
    async with containerd_back_at_the_end(paths):
        stopping = asyncio.ensure_future(node2.stack.berth.stop(cid, timeout=0))
        await until(lambda: fault_hit(node2.agent), 30, "the stop's shim release reached")
        kill_containerd(paths)
        await asyncio.sleep(DOWN_SECONDS)
        await start_containerd(paths)
        stopped = await asyncio.wait_for(stopping, RESULT_TIMEOUT)
    assert not stopped.not_modified
    assert not await node2.runtime.containerd.has_container(cid)
    await assert_nothing_left(node2, cid)


async def test_restart_containerd_killed_during_task_replace_and_back_after_5s_succeeds(
    node2: Node2,
) -> None:
    paths = node2.settings.node_paths()
    cid = await node2.create()
    first = await asyncio.wait_for((await node2.start_workflow(cid)).result(), RESULT_TIMEOUT)
    node2.agent.set_faults(
        {"point": "task:before", "action": "sleep", "seconds": 0.3, "times": 1000}
    )
    async with containerd_back_at_the_end(paths):
        restarting = asyncio.ensure_future(node2.stack.berth.restart(cid, timeout=0))
        await until(lambda: fault_hit(node2.agent), 30, "the restart's task replace reached")
        kill_containerd(paths)
        await asyncio.sleep(DOWN_SECONDS)
        await start_containerd(paths)
        restarted = await asyncio.wait_for(restarting, RESULT_TIMEOUT)
    assert restarted.pid not in (0, first.pid)
    task = await node2.runtime.containerd.get_task(cid)
    assert task.status is TaskStatus.RUNNING and task.pid == restarted.pid
    await assert_nothing_left(node2, cid)


# --- what a containerd killed inside the task create leaves ---------------------------------------


async def test_start_containerd_killed_inside_task_create_ends_the_stale_shim_and_succeeds(
    node2: Node2,
) -> None:
    paths = node2.settings.node_paths()
    cid = await node2.create()
    bundle = task_bundle(paths, node2.settings.containerd_namespace, cid)
    async with containerd_back_at_the_end(paths):
        handle = await node2.start_workflow(cid)
        # containerd makes the bundle, then starts the shim, then runc creates the task.
        await until(bundle.exists, 30, "the task's bundle made")
        await asyncio.sleep(0.03)
        kill_containerd(paths)
        await asyncio.sleep(DOWN_SECONDS)
        await start_containerd(paths)
        started = await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)
    task = await node2.runtime.containerd.get_task(cid)
    assert task.status is TaskStatus.RUNNING and task.pid == started.pid
    await assert_nothing_left(node2, cid)


# --- containerd frozen for 20 s -------------------------------------------------------------------


async def test_start_containerd_frozen_20s_succeeds_or_is_unavailable_leaving_nothing(
    node2: Node2,
) -> None:
    paths = node2.settings.node_paths()
    cid = await node2.create()
    node2.agent.set_faults(
        {"point": "shim:before", "action": "sleep", "seconds": 0.3, "times": 1000}
    )
    async with containerd_back_at_the_end(paths):
        handle = await node2.start_workflow(cid)
        await until(lambda: fault_hit(node2.agent), 30, "shim reached")
        began = time.monotonic()
        os.kill(containerd_pid(paths), signal.SIGSTOP)
        try:
            await asyncio.sleep(FROZEN_SECONDS)
        finally:
            os.kill(containerd_pid(paths), signal.SIGCONT)
        try:
            await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)
        except WorkflowFailureError as err:
            error = as_berth_error(err.cause)
            assert error.type_name == "Unavailable", error.message
            assert time.monotonic() - began < FROZEN_SECONDS + 60 + 15
    await assert_nothing_left(node2, cid)


# --- containerd down longer than the grace --------------------------------------------------------


class ShortGraceAgent(NodeAgent):
    """node-3's agent, waiting at most 10 s for containerd."""

    def env(self) -> dict[str, str]:
        return {**super().env(), "BERTH_RUNTIME_GRACE_SECONDS": str(SHORT_GRACE_SECONDS)}


@pytest.fixture(scope="module")
def node3_settings(settings: Settings, suite_stack: SuiteStack) -> Settings:
    return suite_stack.node_settings(settings, "node-3").model_copy(
        update={"runtime_grace_seconds": SHORT_GRACE_SECONDS}
    )


@pytest.fixture(scope="module")
async def node3(
    node3_settings: Settings, workers: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[ShortGraceAgent, NodeRuntime]]:
    agent = ShortGraceAgent(node3_settings, tmp_path_factory.mktemp("node3-grace"))
    runtime = node_runtime(node3_settings)
    async with serving(agent):
        yield agent, runtime
    await runtime.containerd.close()


async def test_start_containerd_down_longer_than_the_grace_is_unavailable_and_unwound(
    stack: Stack,
    node3: tuple[ShortGraceAgent, NodeRuntime],
    node3_settings: Settings,
    temporal: Client,
) -> None:
    agent, runtime = node3
    paths = node3_settings.node_paths()
    created = await stack.berth.create(
        ContainerConfig(
            name=f"g-{uuid.uuid4().hex[:10]}", image=DEFAULT_REF, node="node-3", cmd=["sleep", "60"]
        )
    )
    cid = created.id
    stack.created.append(cid)
    agent.set_faults({"point": "shim:before", "action": "sleep", "seconds": 0.3, "times": 1000})
    try:
        async with containerd_back_at_the_end(paths):
            handle = await temporal.start_workflow(
                "ContainerStartOnNode",
                NodeStartInput(request=ContainerStartInput(container=cid)),
                id=start_workflow_id(cid),
                task_queue=node_task_queue("node-3"),
                task_timeout=TASK_TIMEOUT,
                result_type=ContainerStartOutput,
            )
            await until(lambda: fault_hit(agent), 30, "shim reached")
            kill_containerd(paths)
            began = time.monotonic()
            await wait_for_details(handle, "waiting for containerd on node-3", 15)
            # Down past the grace: the start gives up and starts undoing; then containerd is back.
            await asyncio.sleep(SHORT_GRACE_SECONDS + 8)
            await start_containerd(paths)
            with pytest.raises(WorkflowFailureError) as failed:
                await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)
        error = as_berth_error(failed.value.cause)
        assert error.type_name == "Unavailable"
        assert "node-3" in error.message
        assert time.monotonic() - began < RESULT_TIMEOUT
        findings = await check_node(
            "node-3", paths, runtime.containerd, runtime.cni, stack.sessions
        )
        assert findings == []
        assert [s for s in list_shims(paths.containerd_socket, None) if s.container_id == cid] == []
    finally:
        agent.clear_faults()
        await force_remove(stack, cid)
