"""The client's end of ``Logs.Read`` (berth/node_api/logs.proto), on the standard library.

``berth logs`` is a short command whose time is mostly imports: protobuf's runtime and the
generated messages cost about 15 ms of each call, so the client encodes its one request and
decodes the batches itself (protobuf's wire format: varints and length-delimited fields; unknown
fields skipped, as protobuf does). The node's servicer uses the generated classes;
tests/berth/endpoint/test_logs_wire.py checks both ends agree, field by field.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from berth.container_logs import LogEntry

READ_METHOD = "/berth.node.v1.Logs/Read"
_NANOS = 1_000_000_000
# Wire types.
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64: ten bytes, two's complement
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _bytes_field(number: int, data: bytes) -> bytes:
    return _field(number, _LENGTH) + _varint(len(data)) + data


def _timestamp(time_ns: int) -> bytes:
    seconds, nanos = divmod(time_ns, _NANOS)
    out = b""
    if seconds:
        out += _field(1, _VARINT) + _varint(seconds)
    if nanos:
        out += _field(2, _VARINT) + _varint(nanos)
    return out


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
    out = _bytes_field(1, container_id.encode())
    if follow:
        out += _field(2, _VARINT) + b"\x01"
    if tail is not None:  # proto3 optional: present even when 0
        out += _field(3, _VARINT) + _varint(tail)
    if since_ns is not None:
        out += _bytes_field(4, _timestamp(since_ns))
    if until_ns is not None:
        out += _bytes_field(5, _timestamp(until_ns))
    if stdout:
        out += _field(6, _VARINT) + b"\x01"
    if stderr:
        out += _field(7, _VARINT) + b"\x01"
    return out


def _read_varint(data: bytes | memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _fields(data: bytes | memoryview) -> list[tuple[int, int | memoryview]]:
    """The message's (field number, value) pairs: ints for varints, views for the rest."""
    view = memoryview(data)
    found: list[tuple[int, int | memoryview]] = []
    at = 0
    while at < len(view):
        key, at = _read_varint(view, at)
        number, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            value, at = _read_varint(view, at)
            found.append((number, value))
        elif wire_type == _LENGTH:
            size, at = _read_varint(view, at)
            found.append((number, view[at : at + size]))
            at += size
        elif wire_type in (_FIXED64, _FIXED32):
            size = 8 if wire_type == _FIXED64 else 4
            found.append((number, view[at : at + size]))
            at += size
        else:
            raise ValueError(f"Logs.Read: unsupported wire type {wire_type} (field {number})")
    return found


def _int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _entry(data: memoryview) -> LogEntry:
    stream, line, time_ns = "", b"", 0
    for number, value in _fields(data):
        if number == 1 and isinstance(value, memoryview):
            stream = str(value, "utf-8")
        elif number == 2 and isinstance(value, memoryview):
            line = bytes(value)
        elif number == 3 and isinstance(value, memoryview):
            for part, amount in _fields(value):
                if part == 1 and isinstance(amount, int):
                    time_ns += _int64(amount) * _NANOS
                elif part == 2 and isinstance(amount, int):
                    time_ns += _int64(amount)
    return LogEntry(stream, line, time_ns)


def decode_batch(data: bytes) -> list[LogEntry]:
    """A ``LogBatch``'s entries."""
    return [
        _entry(value)
        for number, value in _fields(data)
        if number == 1 and isinstance(value, memoryview)
    ]


def read_logs(channel: grpc.aio.Channel, request: bytes) -> AsyncIterator[list[LogEntry]]:
    """``Logs.Read`` on ``channel``: the batches of entries, as they come."""
    call = channel.unary_stream(READ_METHOD, response_deserializer=decode_batch)
    batches: AsyncIterator[list[LogEntry]] = call(request)
    return batches
