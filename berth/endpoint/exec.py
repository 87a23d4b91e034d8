"""The node endpoint's ``Exec`` service (berth/node_api/exec.proto): exec and attach.

**Exec** runs a process in a running container's task through containerd's exec API. Its
process spec is the container's own (the bundle's ``config.json`` under the node's specs dir:
env, cwd, user, capabilities, confinement) with the request's argv, and its env, working dir and
user on top. Its stdio is a private directory of FIFOs (``berth.runtime.exec_io``), or with
``tty`` a terminal (sized at the start and on each resize message). Stdin is streamed and closed
(``CloseIO``) when the client says so. The output ends with the exit code; a command runc cannot
start ends with 126 or 127 as docker's (``exit_code_from_runtime_error``), its error on stderr.

Nothing stays behind: the exec process is killed and deleted from containerd and its FIFOs
removed when it ends, when the call fails and when the client goes away (the call is cancelled).
Its exec id has the prefix ``berth-exec-`` and names the agent process
(:mod:`berth.endpoint.exec_owners`), so an agent that starts, and the node's reconciler on each
pass, delete every such exec no call of this agent runs that a crashed agent left in a task,
and their FIFO directories.

**Events without a workflow.** ``exec_create: <cmd>`` and ``exec_die`` (``execID``,
``exitCode``) are written to ``container_events`` by the agent itself, as the health prober and
the exit monitor write their node events: one insert each, no bytes. Starting a workflow would
cost a Temporal round trip (tens of milliseconds on the dev server) on a path whose whole budget
is docker's ``exec`` (about that much), and buys nothing the table does not: the event is a
record, not a saga step with a compensation. ``exec_create`` is written concurrently with
containerd's exec (never awaited before the command runs); ``exec_die`` after the exit, also
when the client went away. Measured on the 2-core dev machine: the agent's part of
``exec C true`` is 60-75 ms, about 50 of them containerd's Exec and Start (runc exec), and the
insert runs beside them, off that path.

**Attach** joins the stdio of a container created with ``-t`` (and ``-i`` for input). Its
output is the container's log followed from its end, each entry's bytes: with a terminal the
shim writes the console there, and the log driver writes a line that has not ended after
0.1 s, so a prompt or a typed key's echo reaches the client within that and the follow's poll.
Its input goes to the container's stdin FIFO; resize messages size its console. The output
ends with the container's exit code once its task exits. Detaching is the client's business
(docker's ``ctrl-p ctrl-q``): the client ends the call and the container runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc

from berth.container_logs import LogFilter, stream_entries
from berth.contract import ContainerConfig, ContainerState
from berth.db.models import Container
from berth.db.repository import ContainerRepository
from berth.endpoint.deps import EndpointDeps
from berth.endpoint.exec_owners import remove_stray_execs
from berth.errors import (
    BerthError,
    Conflict,
    InvalidParameter,
    NotFound,
    exit_code_from_runtime_error,
)
from berth.node_api import exec_pb2, exec_pb2_grpc
from berth.runtime import oci_spec
from berth.runtime.containerd import ContainerdClient
from berth.runtime.exec_io import (
    FifoEnd,
    ProcessPipes,
    container_stdin,
    exec_dir,
    make_pipes,
    remove_pipes,
)
from berth.runtime.oci_spec import resolve_user
from berth.runtime.types import TaskStatus

log = logging.getLogger(__name__)

# What docker's exec sets for a terminal when the container's env has no TERM.
DEFAULT_TERM = "TERM=xterm"
# Exit codes runc's failure to start a command maps to (not executable, not found).
START_FAILURE_CODES = (126, 127)

Inputs = AsyncIterator[exec_pb2.ExecInput]


def merge_env(base: Sequence[str], extra: Sequence[str]) -> list[str]:
    """``base`` with each ``KEY=VALUE`` of ``extra`` replacing the same key or appended.

    Raises:
        InvalidParameter: an entry of ``extra`` is not ``KEY=VALUE``.
    """
    for entry in extra:
        key, sep, _ = entry.partition("=")
        if not key or not sep:
            raise InvalidParameter(f"env {entry!r}: not KEY=VALUE")
    return oci_spec.merge_env(list(base), list(extra))


def exec_process_spec(
    container_spec: Mapping[str, Any], start: exec_pb2.ExecStart, rootfs: Path
) -> dict[str, Any]:
    """The exec's OCI process: the container's own with the request's argv, env, cwd and user.

    Raises:
        InvalidParameter: no command, a malformed env entry, or a user not in the container.
    """
    if not start.args:
        raise InvalidParameter("exec: no command given")
    process = dict(container_spec.get("process") or {})
    process["args"] = list(start.args)
    env = merge_env(list(process.get("env") or []), list(start.env))
    if start.tty and not any(entry.startswith("TERM=") for entry in env):
        env.append(DEFAULT_TERM)
    process["env"] = env
    if start.workdir:
        if not start.workdir.startswith("/"):
            raise InvalidParameter(f"exec: the working directory {start.workdir!r} is not absolute")
        process["cwd"] = start.workdir
    if start.user:
        uid, gid, additional = resolve_user(start.user, rootfs)
        process["user"] = {"uid": uid, "gid": gid, "additionalGids": additional}
    process["terminal"] = start.tty
    process.pop("consoleSize", None)
    if start.tty and start.size.rows and start.size.cols:
        process["consoleSize"] = {"height": start.size.rows, "width": start.size.cols}
    return process


async def first_input(inputs: Inputs, kind: str) -> Any:
    """The call's first message, which must be ``kind`` (``start`` or ``attach``)."""
    try:
        first = await anext(inputs)
    except StopAsyncIteration:
        raise InvalidParameter(f"the call ended before its {kind} message") from None
    if first.WhichOneof("input") != kind:
        raise InvalidParameter(f"the first message must be {kind}")
    return getattr(first, kind)


async def run_to_completion(cleanup: Awaitable[None]) -> None:
    """Await ``cleanup`` to its end even when the awaiting task is cancelled meanwhile."""
    task = asyncio.ensure_future(cleanup)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


async def stop_tasks(*tasks: asyncio.Task[Any]) -> None:
    """Cancel ``tasks`` and wait for their end; what they ended with is logged, not raised
    (a cleanup that awaits them must go on to its own end)."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception as err:
            log.debug("a helper of a call ended with %r", err)


def _output(**fields: Any) -> exec_pb2.ProcessOutput:
    return exec_pb2.ProcessOutput(**fields)


class ExecService(exec_pb2_grpc.ExecServicer):
    """Exec and attach for the containers of this node."""

    def __init__(self, deps: EndpointDeps) -> None:
        self._deps = deps
        self._paths = deps.paths
        self._containerd: ContainerdClient = deps.containerd
        self._node = deps.settings.node
        # The execs this agent runs now: not strays.
        self._execs = deps.execs
        self.clean_up: asyncio.Task[None] | None = None

    # -- exec -------------------------------------------------------------------------------

    async def Exec(
        self, request_iterator: Inputs, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[exec_pb2.ProcessOutput]:
        """Run one process in a running container; its output, then its exit code."""
        del context
        inputs, start, container = await self._begin(request_iterator, "start")
        spec = await asyncio.to_thread(self._container_spec, container.id)
        process = await asyncio.to_thread(
            exec_process_spec, spec, start, self._paths.rootfs(container.id)
        )
        exec_id = self._execs.new_id()
        async for message in self._run_exec(container, exec_id, process, start, inputs):
            yield message

    async def _run_exec(
        self,
        container: Container,
        exec_id: str,
        process: dict[str, Any],
        start: exec_pb2.ExecStart,
        inputs: Inputs,
    ) -> AsyncIterator[exec_pb2.ProcessOutput]:
        cid = container.id
        directory = exec_dir(self._paths, cid, exec_id)
        self._execs.add(cid, exec_id)
        created = asyncio.create_task(
            self._event(container, f"exec_create: {' '.join(start.args)}", {"execID": exec_id})
        )
        ends: list[FifoEnd] = []
        code: int | None = None
        helpers: list[asyncio.Task[Any]] = []
        try:
            pipes = await asyncio.to_thread(make_pipes, directory, start.stdin, start.tty)
            outputs, stdin = self._open(pipes, ends)
            try:
                await self._containerd.exec_process_stdio(cid, exec_id, process, pipes.stdio())
                await self._containerd.start_process(cid, exec_id)
            except BerthError as err:
                code = exit_code_from_runtime_error(err.message)
                if code not in START_FAILURE_CODES:
                    code = None
                    raise
                yield _output(stderr=f"OCI runtime exec failed: {err.message}\n".encode())
                yield _output(exit_code=code)
                return
            if start.tty and start.size.rows and start.size.cols:
                await self._containerd.resize_pty(cid, exec_id, start.size.cols, start.size.rows)
            feeder = asyncio.create_task(self._feed(inputs, cid, exec_id, stdin))
            exited = asyncio.create_task(self._wait_and_delete(cid, exec_id))
            helpers += (feeder, exited)
            async for message in self._stream_until(outputs, exited):
                yield message
            code = exited.result()
            yield _output(exit_code=code)
        finally:
            await run_to_completion(
                self._finish_exec(container, exec_id, directory, ends, helpers, created, code)
            )

    def _open(
        self, pipes: ProcessPipes, ends: list[FifoEnd]
    ) -> tuple[list[tuple[str, FifoEnd]], FifoEnd | None]:
        """The agent's ends of the FIFOs (each added to ``ends`` as soon as it is open)."""
        outputs = []
        for field, path in (("stdout", pipes.stdout), ("stderr", pipes.stderr)):
            if path is not None:
                end = FifoEnd(path)
                ends.append(end)
                outputs.append((field, end))
        stdin = None
        if pipes.stdin is not None:
            stdin = FifoEnd(pipes.stdin)
            ends.append(stdin)
        return outputs, stdin

    async def _wait_and_delete(self, container_id: str, exec_id: str) -> int:
        """The exit code, once the shim has copied all the output (its delete waits for that)."""
        code = await self._containerd.wait_process(container_id, exec_id)
        await self._containerd.delete_process(container_id, exec_id)
        return code

    async def _stream_until(
        self, outputs: list[tuple[str, FifoEnd]], exited: asyncio.Task[int]
    ) -> AsyncIterator[exec_pb2.ProcessOutput]:
        """What the FIFOs carry until ``exited`` is done, then what they still hold."""
        reads = {asyncio.create_task(end.read()): (field, end) for field, end in outputs}
        try:
            while not exited.done():
                done, _ = await asyncio.wait({*reads, exited}, return_when=asyncio.FIRST_COMPLETED)
                for read in [task for task in reads if task in done]:
                    field, end = reads.pop(read)
                    yield _output(**{field: read.result()})
                    reads[asyncio.create_task(end.read())] = (field, end)
            for task, (field, end) in list(reads.items()):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    chunk = await task
                    if chunk:
                        yield _output(**{field: chunk})
                rest = end.drain()
                if rest:
                    yield _output(**{field: rest})
            reads.clear()
        finally:
            for task in reads:
                task.cancel()

    async def _feed(
        self,
        inputs: Inputs,
        container_id: str,
        exec_id: str,
        stdin: FifoEnd | None,
        *,
        closes_stdin: bool = True,
    ) -> None:
        """The client's stdin (and its end, if ``closes_stdin``) and window sizes, into the
        process ``exec_id`` (``""``: the container's own)."""
        try:
            async for message in inputs:
                kind = message.WhichOneof("input")
                if kind == "stdin" and stdin is not None:
                    await stdin.write(message.stdin)
                elif kind == "close_stdin" and closes_stdin and stdin is not None:
                    stdin.close()
                    await self._containerd.close_stdin(container_id, exec_id)
                    stdin = None
                elif kind == "resize" and message.resize.rows and message.resize.cols:
                    await self._containerd.resize_pty(
                        container_id, exec_id, message.resize.cols, message.resize.rows
                    )
        except BerthError as err:
            # The process may be gone already: its exit code is what the caller gets.
            log.debug("input to %r in %s not delivered: %s", exec_id, container_id, err)

    async def _finish_exec(
        self,
        container: Container,
        exec_id: str,
        directory: Path,
        ends: list[FifoEnd],
        helpers: list[asyncio.Task[Any]],
        created: asyncio.Task[None],
        code: int | None,
    ) -> None:
        """Kill and delete the exec, close and remove its FIFOs, record its end (idempotent)."""
        await stop_tasks(*helpers)
        try:
            await self._containerd.delete_process(container.id, exec_id)
        finally:
            for end in ends:
                end.close()
            await asyncio.to_thread(remove_pipes, directory)
            self._execs.discard(container.id, exec_id)
            await created
            attributes: dict[str, Any] = {"execID": exec_id}
            if code is not None:
                attributes["exitCode"] = str(code)
            await self._event(container, "exec_die", attributes)

    async def _event(self, container: Container, action: str, attributes: dict[str, Any]) -> None:
        """One container event, written as the agent's other node events are; a failure to
        write it is logged, never the exec's failure."""
        try:
            async with self._deps.sessions.begin() as session:
                ContainerRepository(session).add_event_by_id(
                    container.id, container.name, container.node, action, attributes
                )
        except Exception:
            log.exception("event %s of container %s not recorded", action, container.name)

    # -- attach -----------------------------------------------------------------------------

    async def Attach(
        self, request_iterator: Inputs, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[exec_pb2.ProcessOutput]:
        """The container's output from now on, input to its stdin; then its exit code."""
        del context
        inputs, attach, container = await self._begin(request_iterator, "attach")
        config = ContainerConfig.model_validate(container.config)
        if not config.tty:
            raise Conflict(
                f"cannot attach to container {container.name}: it was not created with -t "
                "(its output is in its log: berth logs -f)"
            )
        cid = container.id
        stdin = None
        if attach.stdin and config.open_stdin:
            stdin = await asyncio.to_thread(FifoEnd, container_stdin(self._paths, cid))
        exited = asyncio.create_task(self._containerd.wait_task(cid))
        # Input waits until the log is read to its end: the echo of the first keys typed is
        # written after that point, not skipped by the follow's start.
        following = asyncio.Event()
        feeder = asyncio.create_task(self._feed_attach(inputs, cid, stdin, following))
        try:
            if attach.size.rows and attach.size.cols:
                await self._containerd.resize_pty(cid, "", attach.size.cols, attach.size.rows)

            async def still_running() -> bool:
                following.set()  # asked only once the files read to their end
                return not exited.done()

            # logs: from its start, else from now on.
            selection = LogFilter(tail=None if attach.logs else 0)
            log_file = self._paths.log(cid)
            async for batch in stream_entries(log_file, selection, True, still_running):
                following.set()
                yield _output(stdout=b"".join(entry.line for entry in batch))
            yield _output(exit_code=await self._exit_code(container, exited))
        finally:
            await stop_tasks(feeder, exited)
            if stdin is not None:
                stdin.close()

    async def _feed_attach(
        self,
        inputs: Inputs,
        container_id: str,
        stdin: FifoEnd | None,
        following: asyncio.Event,
    ) -> None:
        """The client's keys into the container's stdin, window sizes to its console, once the
        log is followed; the container's stdin stays open when the client ends."""
        await following.wait()
        await self._feed(inputs, container_id, "", stdin, closes_stdin=False)

    async def _exit_code(self, container: Container, exited: asyncio.Task[int]) -> int:
        """The task's exit status; if the task was deleted first, the one PostgreSQL records."""
        with contextlib.suppress(NotFound):
            return await exited
        for _ in range(50):
            async with self._deps.sessions() as session:
                row = await ContainerRepository(session).by_id(container.id)
            if row is None:
                break
            if row.exit_code is not None and row.state is not ContainerState.RUNNING:
                return int(row.exit_code)
            await asyncio.sleep(0.1)
        return 0

    # -- shared -----------------------------------------------------------------------------

    async def _begin(self, request_iterator: Inputs, kind: str) -> tuple[Inputs, Any, Container]:
        """The call's inputs, its first message (``kind``) and the running container it names."""
        inputs = aiter(request_iterator)
        first = await first_input(inputs, kind)
        return inputs, first, await self._running(first.container_id)

    async def _running(self, container_id: str) -> Container:
        """The container, if it runs on this node (PostgreSQL and containerd agree).

        Raises:
            NotFound: no such container on this node.
            Conflict: it is not running, or it is paused (docker's messages).
        """
        if not container_id:
            raise InvalidParameter("no container id given")
        async with self._deps.sessions() as session:
            container = await ContainerRepository(session).by_id(container_id)
        if container is None or container.node != self._node:
            raise NotFound(f"No such container: {container_id} (on node {self._node})")
        if container.state is ContainerState.PAUSED:
            raise Conflict(f"Container {container.id} is paused, unpause the container before exec")
        try:
            task = await self._containerd.get_task(container.id)
        except NotFound:
            task = None
        if container.state is not ContainerState.RUNNING or task is None:
            raise Conflict(f"Container {container.id} is not running")
        if task.status is TaskStatus.PAUSED:
            raise Conflict(f"Container {container.id} is paused, unpause the container before exec")
        if task.status is not TaskStatus.RUNNING:
            raise Conflict(f"Container {container.id} is not running")
        return container

    def _container_spec(self, container_id: str) -> dict[str, Any]:
        try:
            spec: dict[str, Any] = json.loads(self._paths.spec(container_id).read_text())
        except FileNotFoundError:
            raise Conflict(f"Container {container_id} is not running (no spec)") from None
        return spec

    async def remove_stray_execs(self) -> None:
        """Delete every ``berth-exec-`` process in this node's tasks that no call of this agent
        runs and no other live agent started (a crashed agent's), and the FIFO directories of
        such execs."""
        await remove_stray_execs(self._containerd, self._paths, self._execs.is_stray)


async def _remove_strays(service: ExecService) -> None:
    try:
        await service.remove_stray_execs()
    except Exception:
        log.exception("removing stray execs failed")


def register(server: grpc.aio.Server, deps: EndpointDeps) -> None:
    """Add the ``Exec`` servicer to ``server``, and remove what a crashed agent's execs left."""
    service = ExecService(deps)
    exec_pb2_grpc.add_ExecServicer_to_server(service, server)
    # Held by the service: a task nothing references may be collected before it runs.
    service.clean_up = asyncio.get_running_loop().create_task(_remove_strays(service))
