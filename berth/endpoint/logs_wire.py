"""The client's end of ``Logs.Read`` (berth/node_api/logs.proto), on the standard library.

``berth logs`` is a short command whose time is mostly imports: protobuf's runtime and the
generated messages cost about 15 ms of each call, so the client encodes its one request and
decodes the batches itself on :mod:`berth.endpoint.wire`. The node's servicer uses the generated
classes; tests/berth/endpoint/test_logs_wire.py checks both ends agree, field by field.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from berth.container_logs import LogEntry
from berth.endpoint import wire

READ_METHOD = "/berth.node.v1.Logs/Read"
_NANOS = 1_000_000_000


def _timestamp(time_ns: int) -> bytes:
    seconds, nanos = divmod(time_ns, _NANOS)
    return wire.int_field(1, seconds) + wire.int_field(2, nanos)


def encode_request(
    container_id: str,
    follow: bool,
    tail: int | None,
    since_ns: int | None,
    until_ns: int | None,
    stdout: bool = True,
    stderr: bool = True,
) -> bytes:
    """A ``LogsRequest`` for ``docker logs`` of the container with this id (times: epoch ns)."""
    out = wire.string_field(1, container_id) + wire.int_field(2, follow)
    out += wire.optional_int_field(3, tail)  # proto3 optional: present even when 0
    if since_ns is not None:
        out += wire.bytes_field(4, _timestamp(since_ns))
    if until_ns is not None:
        out += wire.bytes_field(5, _timestamp(until_ns))
    return out + wire.int_field(6, stdout) + wire.int_field(7, stderr)


def _entry(data: memoryview) -> LogEntry:
    stream, line, time_ns = "", b"", 0
    for number, value in wire.fields(data):
        if number == 1 and isinstance(value, memoryview):
            stream = str(value, "utf-8")
        elif number == 2 and isinstance(value, memoryview):
            line = bytes(value)
        elif number == 3 and isinstance(value, memoryview):
            for part, amount in wire.fields(value):
                if part == 1 and isinstance(amount, int):
                    time_ns += wire.int64(amount) * _NANOS
                elif part == 2 and isinstance(amount, int):
                    time_ns += wire.int32(amount)
    return LogEntry(stream, line, time_ns)


def decode_batch(data: bytes) -> list[LogEntry]:
    """A ``LogBatch``'s entries."""
    return [
        _entry(value)
        for number, value in wire.fields(data)
        if number == 1 and isinstance(value, memoryview)
    ]


def read_logs(channel: grpc.aio.Channel, request: bytes) -> AsyncIterator[list[LogEntry]]:
    """``Logs.Read`` on ``channel``: the batches of entries, as they come."""
    call = channel.unary_stream(READ_METHOD, response_deserializer=decode_batch)
    batches: AsyncIterator[list[LogEntry]] = call(request)
    return batches
