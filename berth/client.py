"""The Python client: Berth's workflows and state behind plain methods with typed errors.

Example::

    async with await BerthClient.connect(Settings()) as berth:
        created = await berth.create(ContainerConfig(name="web-1", image="local/busybox:latest",
                                                     cmd=["sleep", "3600"]))
        started = await berth.start("web-1")
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from berth.codec import AesGcmCodec, CodecKeys
from berth.config import Settings, node_task_queue
from berth.container_logs import LogEntry
from berth.contract import (
    ContainerConfig,
    ContainerCreateInput,
    ContainerCreateOutput,
    ContainerExportInput,
    ContainerExportOutput,
    ContainerPauseInput,
    ContainerPauseOutput,
    ContainerRemoveInput,
    ContainerRemoveOutput,
    ContainerRestartInput,
    ContainerStartInput,
    ContainerStartOutput,
    ContainerState,
    ContainerStopInput,
    ContainerStopOutput,
)
from berth.converter import data_converter
from berth.db.health_repository import HealthRepository
from berth.db.models import Container, ContainerEvent
from berth.db.repository import NODE_LIVENESS, ContainerRepository, NodeRepository
from berth.db.session import make_engine, make_sessionmaker
from berth.endpoint.logs_wire import encode_request, read_logs
from berth.errors import (
    BerthError,
    Forbidden,
    InvalidParameter,
    Unavailable,
    Waiting,
    as_berth_error,
)
from berth.fleet_client import FleetClient
from berth.health import describe_health
from berth.steps import (
    ACTION_DURATION,
    DURATION_BUCKETS_MS,
    NodeExportInput,
    NodePauseInput,
    NodeRemoveInput,
    NodeRestartInput,
    NodeStartInput,
    NodeStopInput,
    container_attributes,
)

T = TypeVar("T")


async def connect(settings: Settings) -> Client:
    """A Temporal client with Berth's data converter (and metrics endpoint, if configured).

    A frontend that is restarting (its port refuses connections) is waited for up to
    ``settings.client_wait_seconds``; any other failure (TLS, a refused identity) is final.
    """
    return await wait_out(settings.client_wait_seconds, lambda: _connect(settings), _refused)


def _refused(error: Unavailable) -> bool:
    """Whether a failed connect met a closed port, as while the frontend restarts."""
    return "ConnectionRefused" in error.message or "Connection refused" in error.message


async def _connect(settings: Settings) -> Client:
    keys = CodecKeys.from_settings(settings)
    converter = (
        dataclasses.replace(data_converter, payload_codec=AesGcmCodec(keys))
        if keys
        else data_converter
    )
    tls = tls_config(settings)
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=converter,
            tls=tls,
            api_key=(
                settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
            ),
            runtime=metrics_runtime(settings.metrics_address) if settings.metrics_address else None,
        )
    except (RPCError, RuntimeError) as err:
        raise connect_error(settings.temporal_address, err) from None


# gRPC status codes (as the SDK's core spells them) that say the server refused who we are.
_REFUSED_IDENTITY = {"Unauthenticated", "PermissionDenied"}
_REFUSED_STATUSES = {RPCStatusCode.UNAUTHENTICATED, RPCStatusCode.PERMISSION_DENIED}
# How the SDK's core renders a call's status inside a connect failure's message.
_CORE_STATUS = re.compile(r'Status \{ code: (\w+), message: "((?:[^"\\]|\\.)*)"')


# Statuses of a Temporal call that say the frontend cannot serve it now (restarting, overloaded).
_TRANSIENT_STATUSES = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
}
# How long the client pauses between two tries while it waits out a restart (doubling).
_FIRST_PAUSE_SECONDS = 0.2
_MAX_PAUSE_SECONDS = 2.0


def connect_error(address: str, err: RPCError | RuntimeError) -> BerthError:
    """The typed error for a failed connect to Temporal: the one place that reads them.

    A gRPC status UNAUTHENTICATED or PERMISSION_DENIED (a gateway refusing a missing or untrusted
    client certificate, the server refusing the client) is ``Forbidden``: retrying with the same
    credentials cannot help. Anything else (nothing listening, a TLS handshake this client aborts
    because it does not trust the server's certificate, TLS on one side only, a server that drops
    the connection) is ``Unavailable``. Both name the address tried. A call to a connected
    client that fails in transport is mapped here too (:func:`call_error`).
    """
    if isinstance(err, RPCError):
        code, detail = err.status.name, err.message
        refused = err.status in _REFUSED_STATUSES
    else:
        status = _CORE_STATUS.search(str(err))
        code, detail = (status.group(1), status.group(2)) if status else ("", str(err))
        refused = code in _REFUSED_IDENTITY
    if refused:
        return Forbidden(f"Temporal at {address} refused this client ({code}): {detail}")
    # Waiting for "Temporal at <address>": the CLI tells Berth's own services by it (exit 125).
    return Unavailable.waiting(
        f"cannot connect to Temporal at {address}: {err}", Waiting(f"Temporal at {address}", "")
    )


def call_error(address: str, err: RPCError) -> BerthError | None:
    """The typed error for a Temporal call that failed in transport; None for any other status.

    The frontend restarting, not answering in time, shedding load or dropping the connection under
    the call is ``Unavailable`` naming the address; a refused identity is ``Forbidden`` as at
    connect. Other statuses (NOT_FOUND, ...) are the caller's to read.
    """
    if err.status in _TRANSIENT_STATUSES or err.status in _REFUSED_STATUSES or _dropped(err):
        return connect_error(address, err)
    return None


def _dropped(err: RPCError) -> bool:
    """Whether the connection broke under the call (the frontend was killed mid-call): the
    transport's own error, which gRPC reports as UNKNOWN "transport error"."""
    return err.status is RPCStatusCode.UNKNOWN and err.message.startswith("transport error")


async def wait_out(
    seconds: float,
    call: Callable[[], Awaitable[T]],
    retry_if: Callable[[Unavailable], bool] = lambda error: True,
) -> T:
    """``call()``, tried again while it fails with ``Unavailable``, for at most ``seconds``.

    ``retry_if``: which ``Unavailable`` are worth waiting out (by default, all).

    Only for a call that is safe to repeat and whose ``Unavailable`` says a dependency is
    restarting (PostgreSQL, the Temporal frontend), never for a saga's result: a saga that
    failed with ``Unavailable`` already waited out its own grace.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    pause = _FIRST_PAUSE_SECONDS
    while True:
        try:
            return await call()
        except Unavailable as error:
            remaining = deadline - loop.time()
            if not retry_if(error) or remaining <= 0:
                raise
        # The last pause ends at the bound, for one last try there.
        await asyncio.sleep(min(pause, remaining))
        pause = min(pause * 2, _MAX_PAUSE_SECONDS)


def tls_config(settings: Settings) -> TLSConfig | bool:
    """TLS for the Temporal connection: off, system roots, or a CA and a client pair (mTLS)."""
    files = (settings.temporal_tls_ca_file, settings.temporal_tls_cert_file)
    # As the SDK does: an API key is a bearer secret, so it turns TLS on (system roots) unless
    # BERTH_TEMPORAL_TLS was set to false on purpose; it never goes out in cleartext by default.
    tls_chosen = "temporal_tls" in settings.model_fields_set
    bearer = settings.temporal_api_key is not None and not tls_chosen
    if not settings.temporal_tls and not any(files) and not bearer:
        return False
    if settings.temporal_tls_cert_file and not settings.temporal_tls_key_file:
        raise InvalidParameter("temporal_tls_key_file: required with temporal_tls_cert_file")
    return TLSConfig(
        server_root_ca_cert=_read("temporal_tls_ca_file", settings.temporal_tls_ca_file),
        client_cert=_read("temporal_tls_cert_file", settings.temporal_tls_cert_file),
        client_private_key=_read("temporal_tls_key_file", settings.temporal_tls_key_file),
        domain=settings.temporal_tls_server_name,
    )


def _read(field: str, path: Path | None) -> bytes | None:
    """A PEM file the settings name; unreadable is ``InvalidParameter`` naming the field."""
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as err:
        raise InvalidParameter(f"{field}: cannot read {path}: {err.strerror}") from None


def metrics_runtime(bind_address: str) -> Runtime:
    """A Temporal runtime that serves the SDK's and Berth's metrics for Prometheus."""
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=bind_address,
                histogram_bucket_overrides={ACTION_DURATION: DURATION_BUCKETS_MS},
            )
        )
    )


class BerthClient:
    """Create, start and look at containers."""

    def __init__(
        self,
        temporal: Client,
        engine: AsyncEngine,
        settings: Settings,
    ) -> None:
        self.temporal = temporal
        self.settings = settings
        self._engine = engine
        self._sessions: async_sessionmaker[AsyncSession] = make_sessionmaker(engine)
        # Fleet restarts: start, progress, pause / resume / cancel, show (berth.fleet_client).
        self.fleet = FleetClient(temporal, self._sessions, settings)

    @classmethod
    async def connect(cls, settings: Settings) -> BerthClient:
        engine = make_engine(
            settings.database_url,
            settings.runtime_call_timeout_seconds,
            settings.client_wait_seconds,
        )
        return cls(await connect(settings), engine, settings)

    async def __aenter__(self) -> BerthClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._engine.dispose()

    async def create(self, config: ContainerConfig) -> ContainerCreateOutput:
        """Register a container (``ContainerCreate``)."""
        deadline = self._wait_deadline()
        handle = await self._temporal_call(
            lambda: self.temporal.start_workflow(
                "ContainerCreate",
                ContainerCreateInput(config=config),
                id=f"container-create-{config.name}",
                task_queue=self.settings.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                result_type=ContainerCreateOutput,
            ),
            deadline,
        )
        return await self._result(handle, deadline)

    async def start(self, ref: str) -> ContainerStartOutput:
        """Start a container through the saga; attaches to a start already running.

        The client knows the container's node, so it runs the saga on the node's queue directly
        (``ContainerStartOnNode``) instead of through ``ContainerStart``'s extra hop.
        """
        container = await self.get(ref)
        return await self._on_node(
            "ContainerStartOnNode",
            "start",
            container,
            NodeStartInput(request=ContainerStartInput(container=container.id)),
            ContainerStartOutput,
        )

    async def export(self, ref: str, output: str) -> ContainerExportOutput:
        """Write a tar of the container's filesystem to ``output`` on its node (docker export).

        The export holds the rootfs as its own mount holder, beside a start or stop.
        """
        container = await self.get(ref)
        request = ContainerExportInput(container=container.id, output=output)
        try:
            return await self.temporal.execute_workflow(
                "ContainerExportOnNode",
                NodeExportInput(request=request),
                id=f"container-export-{container.id}-{uuid.uuid4().hex[:8]}",
                task_queue=node_task_queue(container.node),
                search_attributes=container_attributes(
                    container.id, container.name, container.node
                ),
                result_type=ContainerExportOutput,
            )
        except WorkflowFailureError as err:
            raise as_berth_error(err.cause) from None

    async def stop(self, ref: str, timeout: int | None = None) -> ContainerStopOutput:
        """Stop a container (``ContainerStopOnNode``): stop signal, ``timeout`` s, SIGKILL.

        A container that is not running is not modified (``not_modified`` is set).
        """
        container = await self.get(ref)
        request = ContainerStopInput(container=container.id, timeout=timeout)
        return await self._on_node(
            "ContainerStopOnNode",
            "stop",
            container,
            NodeStopInput(request=request),
            ContainerStopOutput,
        )

    async def restart(self, ref: str, timeout: int | None = None) -> ContainerStartOutput:
        """Stop then start a container as one operation (``ContainerRestartOnNode``)."""
        container = await self.get(ref)
        request = ContainerRestartInput(container=container.id, timeout=timeout)
        return await self._on_node(
            "ContainerRestartOnNode",
            "restart",
            container,
            NodeRestartInput(request=request),
            ContainerStartOutput,
        )

    async def pause(self, ref: str) -> ContainerPauseOutput:
        """Freeze a running container (``ContainerPauseOnNode``)."""
        container = await self.get(ref)
        request = NodePauseInput(request=ContainerPauseInput(container=container.id), pause=True)
        return await self._on_node(
            "ContainerPauseOnNode", "pause", container, request, ContainerPauseOutput
        )

    async def unpause(self, ref: str) -> ContainerPauseOutput:
        """Thaw a paused container (``ContainerPauseOnNode``)."""
        container = await self.get(ref)
        request = NodePauseInput(request=ContainerPauseInput(container=container.id), pause=False)
        return await self._on_node(
            "ContainerPauseOnNode", "unpause", container, request, ContainerPauseOutput
        )

    async def remove(self, ref: str, force: bool = False) -> ContainerRemoveOutput:
        """Remove a container (``ContainerRemoveOnNode``); a running one only with ``force``."""
        container = await self.get(ref)
        request = ContainerRemoveInput(container=container.id, force=force)
        return await self._on_node(
            "ContainerRemoveOnNode",
            "remove",
            container,
            NodeRemoveInput(request=request),
            ContainerRemoveOutput,
        )

    async def wait(self, ref: str, poll_seconds: float = 0.1) -> int:
        """Block until the container is not running (docker wait); return its exit code.

        A container removed meanwhile (auto-remove) returns the exit code of its last ``die``.
        """
        container_id = (await self.get(ref)).id
        while True:
            async with self._sessions() as session:
                repository = ContainerRepository(session)
                container = await repository.find(container_id)
                if container is None:
                    dies = [e for e in await repository.events(container_id) if e.action == "die"]
                    return int(dies[-1].attributes.get("exitCode", 0)) if dies else 0
                if container.state in _ENDED_STATES:
                    return container.exit_code or 0
            await asyncio.sleep(poll_seconds)

    async def _on_node(
        self,
        workflow_type: str,
        verb: str,
        container: Container,
        request: Any,
        result_type: type[T],
    ) -> T:
        """Run ``workflow_type`` on the container's node as ``container-<verb>-<id>``.

        A second call while one runs attaches to it instead of starting another. A node whose
        agent is down is waited for up to ``client_wait_seconds``, then gets nothing
        (``Unavailable``): the workflow would wait for the agent unbounded.
        """

        async def agent_running() -> None:
            async with self._sessions() as session:
                live = await NodeRepository(session).is_live(container.node)
            if not live:
                raise Unavailable(
                    f"node {container.node} has no running agent (no heartbeat in the last "
                    f"{NODE_LIVENESS.total_seconds():g}s, waited "
                    f"{self.settings.client_wait_seconds:g}s); nothing was done to "
                    f"{container.name}"
                )

        # One bound for all the waiting of the operation, not one per call it makes; an agent
        # that is restarting is waited for within it like a restarting frontend.
        deadline = self._wait_deadline()
        await self._database_call(agent_running, deadline)
        handle = await self._temporal_call(
            lambda: self.temporal.start_workflow(
                workflow_type,
                request,
                id=f"container-{verb}-{container.id}",
                task_queue=node_task_queue(container.node),
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                search_attributes=container_attributes(
                    container.id, container.name, container.node
                ),
                result_type=result_type,
            ),
            deadline,
        )
        return await self._result(handle, deadline)

    def _wait_deadline(self) -> float:
        """When an operation starting now stops waiting out restarts (event-loop time)."""
        return asyncio.get_running_loop().time() + self.settings.client_wait_seconds

    def _wait_seconds(self, deadline: float | None) -> float:
        if deadline is None:
            return self.settings.client_wait_seconds
        return max(0.0, deadline - asyncio.get_running_loop().time())

    async def _result(self, handle: WorkflowHandle[Any, T], deadline: float | None = None) -> T:
        """The run's result, waiting out a restarting frontend; its failure as a typed error."""
        try:
            return await self._temporal_call(handle.result, deadline)
        except WorkflowFailureError as err:
            raise as_berth_error(err.cause) from None

    async def _temporal_call(
        self, call: Callable[[], Awaitable[T]], deadline: float | None = None
    ) -> T:
        """A Temporal call safe to repeat: transport failures are ``Unavailable`` naming the
        frontend's address, waited out for ``client_wait_seconds`` (or until ``deadline``)."""
        address = self.settings.temporal_address

        async def typed() -> T:
            try:
                return await call()
            except RPCError as err:
                error = call_error(address, err)
                if error is None:
                    raise
                raise error from None

        return await wait_out(self._wait_seconds(deadline), typed)

    async def _database_call(
        self, call: Callable[[], Awaitable[T]], deadline: float | None = None
    ) -> T:
        """A PostgreSQL read: ``Unavailable`` (the engine's mapping) waited out for a while."""
        return await wait_out(self._wait_seconds(deadline), call)

    async def get(self, ref: str) -> Container:
        """The container's record; ``NotFound`` when there is none."""

        async def read() -> Container:
            async with self._sessions() as session:
                return await ContainerRepository(session).get(ref)

        return await self._database_call(read)

    async def inspect(self, ref: str) -> dict[str, Any]:
        """The container as docker inspect shows it (the fields Berth has)."""
        async with self._sessions() as session:
            container = await ContainerRepository(session).get(ref)
            health = await HealthRepository(session).get(container.id)
        described = describe(container)
        if health is not None:
            described["State"]["Health"] = describe_health(health)
        return described

    async def health_statuses(self) -> dict[str, str]:
        """Each health-checked container's status for its current task, by container id."""
        async with self._sessions() as session:
            return await HealthRepository(session).current_statuses()

    async def ps(self, all_states: bool = False) -> list[Container]:
        async with self._sessions() as session:
            containers = await ContainerRepository(session).list()
        return [c for c in containers if all_states or c.state is ContainerState.RUNNING]

    async def events(self, ref: str | None = None, since_id: int = 0) -> list[ContainerEvent]:
        async with self._sessions() as session:
            repository = ContainerRepository(session)
            container_id = (await repository.get(ref)).id if ref else None
            return list(await repository.events(container_id, since_id))

    async def logs(self, ref: str, tail: int | None = None) -> bytes:
        """The container's stdout and stderr lines (only the last ``tail``, if given), as its
        node's endpoint serves them: at most the node's log bound; to read without holding it
        all, or to pick streams and times, use ``stream_logs``."""
        return b"".join(
            [entry.line async for batch in self.stream_logs(ref, tail=tail) for entry in batch]
        )

    async def stream_logs(
        self,
        ref: str,
        tail: int | None = None,
        follow: bool = False,
        since: datetime | None = None,
        until: datetime | None = None,
        stdout: bool = True,
        stderr: bool = True,
    ) -> AsyncIterator[list[LogEntry]]:
        """``docker logs``: the container's log entries in batches, oldest first, from its
        node's endpoint (any host). ``tail``: only the last N entries; ``since``/``until``:
        those written in that span (inclusive); ``stdout``/``stderr``: which streams;
        ``follow``: then what it writes, across rotations and restarts, until it stops.

        Raises:
            NotFound: no such container. Unavailable: its node's endpoint cannot be reached.
        """
        from berth.endpoint.client import EndpointUnreachable, call_failure, open_channel

        if tail is not None and tail < 0:
            raise InvalidParameter(f"tail: must be 0 or more, not {tail}")
        container = await self.get(ref)
        async with self._sessions() as session:
            endpoint = await NodeRepository(session).endpoint(container.node)
        if endpoint is None:
            raise Unavailable(f"node {container.node} of {container.name} has no running agent")
        request = encode_request(container.id, follow, tail, _ns(since), _ns(until), stdout, stderr)
        try:
            channel = open_channel(self.settings, endpoint)
        except EndpointUnreachable as err:
            raise Unavailable(str(err)) from None
        try:
            async for batch in read_logs(channel, request):
                yield batch
        except grpc.aio.AioRpcError as err:
            raise _berth_error(call_failure(err, endpoint)) from None
        finally:
            await channel.close()


def _ns(moment: datetime | None) -> int | None:
    return (
        None
        if moment is None
        else int(moment.timestamp()) * 1_000_000_000 + (moment.microsecond * 1000)
    )


def _berth_error(failure: Exception) -> BerthError:
    """A node endpoint's failure as the Berth error its agent raised (Unavailable if none)."""
    from berth import errors
    from berth.endpoint.client import EndpointError

    if isinstance(failure, EndpointError):
        kind = getattr(errors, failure.error_type or "", None)
        if isinstance(kind, type) and issubclass(kind, BerthError):
            return kind(str(failure))
        return errors.System(str(failure))
    return Unavailable(str(failure))


# The states in which a task no longer runs: ``wait`` returns the recorded exit code.
_ENDED_STATES = frozenset({ContainerState.CREATED, ContainerState.EXITED, ContainerState.DEAD})


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def describe(container: Container) -> dict[str, Any]:
    return {
        "Id": container.id,
        "Name": "/" + container.name,
        "Image": container.image,
        "Node": container.node,
        "Created": _time(container.created_at),
        "State": {
            "Status": container.state,
            "Running": container.state is ContainerState.RUNNING,
            "Paused": container.state is ContainerState.PAUSED,
            "Pid": container.pid or 0,
            "ExitCode": container.exit_code or 0,
            "Error": container.error or "",
            "StartedAt": _time(container.started_at),
            "FinishedAt": _time(container.finished_at),
        },
        "RestartCount": container.restart_count,
        "Operation": container.operation,
        "NetworkSettings": {"IPAddress": container.ip or ""},
        "Config": container.config,
        # The profile the node applies: Docker's default unless the config names another.
        "SeccompProfile": container.config.get("seccomp_profile") or "default",
    }


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)
