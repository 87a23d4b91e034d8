"""The node endpoint's ``Logs`` service (berth/node_api/logs.proto): ``docker logs`` from any host.

``Read`` answers from the container's json-file log on this node (``berth.container_logs``):
the entries the request selects (tail, since, until, streams), oldest first, in batches of one
file chunk each (at most 64 KiB of the file: a tail of thousands of lines is a few messages,
not one per line). The files are read in worker threads, so a big log never blocks the agent's
event loop. With ``follow``, the call goes on with what the container writes, across rotations
and restarts, and ends when the container stops (docker's rule; see ``berth.container_logs``),
is removed, or the client cancels (grpc.aio cancels the handler, whose reader closes its files).
A follow asked of a container that is not running sends what there is and ends.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from berth.container_logs import LogEntry, LogFilter, stream_entries
from berth.contract import ContainerState
from berth.db.models import Container
from berth.db.repository import ContainerRepository
from berth.endpoint.deps import EndpointDeps
from berth.errors import InvalidParameter, NotFound
from berth.node_api import logs_pb2, logs_pb2_grpc

# The states in which a follow keeps waiting for output: docker's, until the container stops.
# A restart goes stopping -> starting, so a follow continues through it.
FOLLOWED_STATES = frozenset(
    {
        ContainerState.STARTING.value,
        ContainerState.RUNNING.value,
        ContainerState.PAUSED.value,
        ContainerState.STOPPING.value,
    }
)


_NANOS = 1_000_000_000
# How often a follow asks whether its container still runs (a stop ends it within about this).
STATE_CHECK_SECONDS = 1.0


def register(server: grpc.aio.Server, deps: EndpointDeps) -> None:
    """Add the ``Logs`` servicer to ``server``."""
    logs_pb2_grpc.add_LogsServicer_to_server(LogsServicer(deps), server)


class LogsServicer(logs_pb2_grpc.LogsServicer):
    """A container's log entries from this node's files."""

    def __init__(self, deps: EndpointDeps) -> None:
        self._deps = deps
        self._node = deps.settings.node

    async def Read(
        self, request: logs_pb2.LogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[logs_pb2.LogBatch]:
        """The selected entries in batches; with ``follow``, then the new ones (see module)."""
        selection = log_filter(request)
        container = await self._container(request.container_id)
        if container is None:
            raise NotFound(f"No such container: {request.container_id} (on node {self._node})")
        follow = request.follow and container.state in FOLLOWED_STATES

        checked_at, running = time.monotonic(), True

        async def still_running() -> bool:
            # Asked on every idle pass (5 a second): PostgreSQL is asked at most once a second.
            nonlocal checked_at, running
            if time.monotonic() - checked_at >= STATE_CHECK_SECONDS:
                current = await self._container(container.id)
                running = current is not None and current.state in FOLLOWED_STATES
                checked_at = time.monotonic()
            return running

        log = self._deps.paths.log(container.id)
        async for batch in stream_entries(log, selection, follow, still_running):
            yield logs_pb2.LogBatch(entries=[message_of(entry) for entry in batch])

    async def _container(self, container_id: str) -> Container | None:
        """The container with this id on this node, if any (a removed one ends a follow)."""
        async with self._deps.sessions() as session:
            container = await ContainerRepository(session).by_id(container_id)
        if container is None or container.node != self._node:
            return None
        return container


def log_filter(request: logs_pb2.LogsRequest) -> LogFilter:
    """The request's selection; ``InvalidParameter`` for bounds that select nothing sensible."""
    since = nanos(request.since) if request.HasField("since") else None
    until = nanos(request.until) if request.HasField("until") else None
    if since is not None and until is not None and until < since:
        raise InvalidParameter("until must not be before since")
    both = not request.stdout and not request.stderr
    return LogFilter(
        tail=request.tail if request.HasField("tail") and request.tail >= 0 else None,
        since_ns=since,
        until_ns=until,
        stdout=both or request.stdout,
        stderr=both or request.stderr,
    )


def nanos(stamp: Timestamp) -> int:
    """A protobuf ``Timestamp`` as epoch nanoseconds."""
    return stamp.seconds * _NANOS + stamp.nanos


def message_of(entry: LogEntry) -> logs_pb2.LogEntry:
    """An entry on the wire (the client decodes it with ``berth.endpoint.logs_wire``)."""
    seconds, fraction = divmod(entry.time_ns, _NANOS)
    return logs_pb2.LogEntry(
        stream=entry.stream, line=entry.line, time=Timestamp(seconds=seconds, nanos=fraction)
    )
