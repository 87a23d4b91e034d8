"""The node agent's health prober: Docker's ``HEALTHCHECK`` probes, run inside each task.

Every ``sweep_interval`` it reads which containers PostgreSQL says run on this node and keeps one
monitor per (container, task pid) that has a check (the container config's, else its image's):
a new task gets a monitor, a stopped or replaced task loses its own. A monitor waits the check's
interval, runs the probe as an exec process in the task through containerd (never a host shell;
``CMD-SHELL`` is ``/bin/sh -c`` inside the container), cuts it at the timeout with SIGKILL, and
folds the result into ``container_health`` (``berth.health``). A status change is an event
``health_status: <status>``.

Durability: the status, streak and log live in PostgreSQL and belong to a task pid, so a
restarted agent resumes the same task's streak, and a new task starts over at ``starting``.
Bounded output: a probe writes through the node's log driver in ``head`` mode, which keeps
the first 4 KiB (and a byte, to tell it was cut) and discards the rest, so a probe that prints
gigabytes leaves 4 KiB on disk, not gigabytes (the shim's ``file://`` copy had no bound).

No stray execs: each probe's exec id (prefix ``berth-health-``) is written to PostgreSQL before
the exec is created, and the exec is deleted after every probe, also when the monitor is
cancelled. An agent that starts deletes what a killed one left: the recorded exec ids, and any
live exec with the prefix that containerd lists in this node's tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import signal
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from berth.config import NodePaths
from berth.container_logs import LogPolicy, prepare_log
from berth.contract import ContainerConfig, ContainerState, HealthCheck
from berth.db.health_repository import HealthRepository
from berth.db.models import Container
from berth.db.repository import ContainerRepository
from berth.endpoint.exec_owners import running_execs
from berth.errors import BerthError, NotFound
from berth.health import (
    MAX_OUTPUT_BYTES,
    PROBE_ERROR_EXIT_CODE,
    STARTING,
    ProbeResult,
    apply_result,
    effective_healthcheck,
    probe_args,
    truncate_output,
)
from berth.runtime.containerd import ContainerdClient
from berth.runtime.types import TaskStatus

log = logging.getLogger("berth.health_prober")

EXEC_PREFIX = "berth-health-"
_OUTPUT_READ = MAX_OUTPUT_BYTES + 1
# What the log driver keeps of a probe's output: as much as is stored, and a byte to tell a cut.
PROBE_OUTPUT_POLICY = LogPolicy(max_bytes=_OUTPUT_READ, max_files=1, head=True)


@dataclass(frozen=True)
class Target:
    """One container's task to probe, and the check that applies to it."""

    container_id: str
    name: str
    pid: int
    started_at: datetime | None
    check: HealthCheck


def _shielded(cleanup: Awaitable[None]) -> Awaitable[None]:
    """Run ``cleanup`` to completion even when the awaiting task is cancelled."""
    task = asyncio.ensure_future(cleanup)

    async def wait() -> None:
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            await task
            raise

    return wait()


class HealthProber:
    """Runs the health checks of one node's containers and records them in PostgreSQL."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        containerd: ContainerdClient,
        paths: NodePaths,
        node: str,
        sweep_interval: float = 0.5,
    ) -> None:
        self._sessions = sessions
        self._containerd = containerd
        self._paths = paths
        self._node = node
        self._sweep_interval = sweep_interval
        self._monitors: dict[str, tuple[int, asyncio.Task[None]]] = {}
        self._image_checks: dict[str, HealthCheck | None] = {}

    @property
    def _output_dir(self) -> Path:
        return self._paths.health_dir

    async def run(self) -> None:
        """Clean up after a crashed agent, then keep monitors in step with the tasks."""
        try:
            while True:
                try:
                    await self.clean_up_strays()
                    break
                except Exception:
                    log.exception("health exec clean-up on node %s failed; retrying", self._node)
                    await asyncio.sleep(self._sweep_interval)
            while True:
                try:
                    await self.sweep()
                except Exception:
                    log.exception("health sweep on node %s failed; trying again", self._node)
                await asyncio.sleep(self._sweep_interval)
        finally:
            monitors = [task for _, task in self._monitors.values()]
            for task in monitors:
                task.cancel()
            await asyncio.gather(*monitors, return_exceptions=True)
            self._monitors.clear()

    async def clean_up_strays(self) -> None:
        """Delete every health exec an earlier agent of this node left in a task."""
        async with self._sessions() as session:
            recorded = await HealthRepository(session).execs_on(self._node)
        for container_id, exec_id in recorded:
            await self._delete_exec(container_id, exec_id)
        for container_id, exec_id in await running_execs(self._containerd, EXEC_PREFIX):
            await self._delete_exec(container_id, exec_id)

    async def sweep(self) -> None:
        """Start a monitor for each running task with a check; end those of tasks gone."""
        async with self._sessions() as session:
            containers = await ContainerRepository(session).running_on(self._node)
        wanted: dict[str, Target] = {}
        for container in containers:
            check = await self._check_of(container)
            if check is not None and container.pid:
                wanted[container.id] = Target(
                    container.id, container.name, container.pid, container.started_at, check
                )
        for container_id, (pid, task) in list(self._monitors.items()):
            target = wanted.get(container_id)
            if task.done() or target is None or target.pid != pid:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                del self._monitors[container_id]
        for container_id, target in wanted.items():
            if container_id not in self._monitors:
                monitor = asyncio.create_task(self._monitor(target))
                self._monitors[container_id] = (target.pid, monitor)

    async def _check_of(self, container: Container) -> HealthCheck | None:
        config = ContainerConfig.model_validate(container.config)
        if config.healthcheck is not None:
            return effective_healthcheck(config, None)
        if container.image not in self._image_checks:
            image = await self._containerd.resolve_image(container.image)
            self._image_checks[container.image] = effective_healthcheck(config, image.config)
        return self._image_checks[container.image]

    # -- one container's monitor -----------------------------------------------------------------

    async def _monitor(self, target: Target) -> None:
        await self._begin(target)
        process = await asyncio.to_thread(self._process_spec, target)
        while True:
            await asyncio.sleep(target.check.interval)
            try:
                result = await self._probe(target, process)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("health probe of %s failed to run", target.name)
                continue
            if result is None:
                return  # the task is gone: the sweep starts a new monitor for a new task
            await self._record(target, result)

    async def _begin(self, target: Target) -> None:
        """Make the record this task's: keep its streak, or start over for a new task."""
        async with self._sessions.begin() as session:
            await HealthRepository(session).begin(
                target.container_id, self._node, target.pid, STARTING
            )

    def _process_spec(self, target: Target) -> dict[str, Any]:
        """The task's own process spec (user, env, cwd, capabilities) with the probe's argv."""
        spec = json.loads(self._paths.spec(target.container_id).read_text())
        process = dict(spec.get("process") or {})
        process.pop("consoleSize", None)
        process["terminal"] = False
        process["args"] = probe_args(target.check)
        return process

    async def _probe(self, target: Target, process: dict[str, Any]) -> ProbeResult | None:
        """Run one probe; None when the task is gone (nothing to record)."""
        cid = target.container_id
        exec_id = EXEC_PREFIX + secrets.token_hex(8)
        await self._set_exec_id(cid, exec_id)
        output = self._output_dir / f"{cid}-{exec_id}.out"
        uri = await asyncio.to_thread(
            prepare_log, self._paths.log_driver, output, PROBE_OUTPUT_POLICY
        )
        start = datetime.now(UTC)
        try:
            try:
                await self._containerd.exec_process(cid, exec_id, process, uri)
                await self._containerd.start_process(cid, exec_id)
            except BerthError as error:
                if not await self._task_running(cid):
                    return None
                return ProbeResult(start, datetime.now(UTC), PROBE_ERROR_EXIT_CODE, str(error))
            try:
                code = await asyncio.wait_for(
                    self._containerd.wait_process(cid, exec_id), target.check.timeout
                )
            except TimeoutError:
                await self._containerd.kill_process(cid, exec_id, signal.SIGKILL)
                return ProbeResult(
                    start,
                    datetime.now(UTC),
                    PROBE_ERROR_EXIT_CODE,
                    f"Health check exceeded timeout ({target.check.timeout:g}s)",
                )
            except NotFound:
                return None
            end = datetime.now(UTC)
            # The shim finishes copying the output when the process is deleted.
            await self._containerd.delete_process(cid, exec_id)
            raw = await asyncio.to_thread(_read_head, output)
            return ProbeResult(start, end, code, truncate_output(raw))
        finally:
            await _shielded(self._delete_exec(cid, exec_id))

    async def _task_running(self, container_id: str) -> bool:
        try:
            return (await self._containerd.get_task(container_id)).status is TaskStatus.RUNNING
        except NotFound:
            return False

    async def _delete_exec(self, container_id: str, exec_id: str) -> None:
        """Kill and delete the exec, drop its output, and forget its id (idempotent)."""
        await self._containerd.delete_process(container_id, exec_id)
        (self._output_dir / f"{container_id}-{exec_id}.out").unlink(missing_ok=True)
        async with self._sessions.begin() as session:
            await HealthRepository(session).clear_exec(container_id, exec_id)

    async def _set_exec_id(self, container_id: str, exec_id: str) -> None:
        async with self._sessions.begin() as session:
            await HealthRepository(session).set_exec(container_id, exec_id)

    async def _record(self, target: Target, result: ProbeResult) -> None:
        """Fold the result in, if the container still runs this task; an event on change."""
        async with self._sessions.begin() as session:
            containers = ContainerRepository(session)
            container = await containers.by_id(target.container_id)
            if (
                container is None
                or container.state is not ContainerState.RUNNING
                or container.pid != target.pid
            ):
                return
            health = await HealthRepository(session).get(target.container_id, for_update=True)
            if health is None or health.pid != target.pid:
                return
            before = health.status
            apply_result(health, result, target.check, target.started_at)
            if health.status != before:
                containers.add_event(
                    container, f"health_status: {health.status}", {"pid": target.pid}
                )
                log.info("%s is %s", target.name, health.status)


def _read_head(path: Path) -> bytes:
    try:
        with path.open("rb") as stream:
            return stream.read(_OUTPUT_READ)
    except FileNotFoundError:
        return b""
