"""The ``Logs`` messages both ends build (berth/node_api/logs.proto), from Berth's own types.

Light (the CLI imports it): the generated messages and ``berth.container_logs`` only.
"""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from berth.container_logs import LogEntry
from berth.node_api import logs_pb2

_NANOS = 1_000_000_000


def logs_request(
    container_id: str,
    follow: bool,
    tail: int | None,
    since_ns: int | None,
    until_ns: int | None,
    stdout: bool = True,
    stderr: bool = True,
) -> logs_pb2.LogsRequest:
    """The request for ``docker logs`` of the container with this id (times: epoch ns)."""
    request = logs_pb2.LogsRequest(
        container_id=container_id, follow=follow, stdout=stdout, stderr=stderr
    )
    if tail is not None:
        request.tail = tail
    if since_ns is not None:
        request.since.CopyFrom(timestamp(since_ns))
    if until_ns is not None:
        request.until.CopyFrom(timestamp(until_ns))
    return request


def timestamp(time_ns: int) -> Timestamp:
    """Epoch nanoseconds as a protobuf ``Timestamp``."""
    seconds, nanos = divmod(time_ns, _NANOS)
    return Timestamp(seconds=seconds, nanos=nanos)


def nanos(stamp: Timestamp) -> int:
    """A protobuf ``Timestamp`` as epoch nanoseconds."""
    return stamp.seconds * _NANOS + stamp.nanos


def message_of(entry: LogEntry) -> logs_pb2.LogEntry:
    """An entry on the wire."""
    return logs_pb2.LogEntry(stream=entry.stream, line=entry.line, time=timestamp(entry.time_ns))


def entry_of(message: logs_pb2.LogEntry) -> LogEntry:
    """An entry off the wire."""
    return LogEntry(message.stream, message.line, nanos(message.time))
