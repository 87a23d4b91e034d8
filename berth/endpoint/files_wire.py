"""The client's end of ``Files`` (berth/node_api/files.proto: ``CopyFrom``, ``CopyTo``,
``Export``) on the standard library (:mod:`berth.endpoint.wire`): ``berth cp`` and ``export``
import no protobuf.

The node's servicer uses the generated classes; tests/berth/endpoint/test_files_wire.py checks
both ends agree, field by field.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from berth.endpoint import wire

COPY_FROM_METHOD = "/berth.node.v1.Files/CopyFrom"
COPY_TO_METHOD = "/berth.node.v1.Files/CopyTo"
EXPORT_METHOD = "/berth.node.v1.Files/Export"

# CopyMode.
COPY_MODE_ARCHIVE, COPY_MODE_SOURCE, COPY_MODE_CONTENTS = 0, 1, 2


def encode_copy_from(container_id: str, path: str, follow_link: bool) -> bytes:
    """A ``CopyFromRequest``: the tar of ``path`` in the container."""
    return (
        wire.string_field(1, container_id)
        + wire.string_field(2, path)
        + wire.int_field(3, follow_link)
    )


def encode_export(container_id: str) -> bytes:
    """An ``ExportRequest``: the tar of the container's filesystem."""
    return wire.string_field(1, container_id)


def encode_copy_target(container_id: str, path: str, mode: int, keep_owners: bool) -> bytes:
    """The first ``CopyToInput``: where and how the tar is extracted (``mode``: CopyMode)."""
    target = (
        wire.string_field(1, container_id)
        + wire.string_field(2, path)
        + wire.int_field(3, mode)
        + wire.int_field(4, keep_owners)
    )
    return wire.bytes_field(1, target)


def encode_copy_data(data: bytes) -> bytes:
    """A later ``CopyToInput``: the next piece of the tar."""
    return wire.bytes_field(2, data)  # a oneof member: present even when empty


def decode_chunk(data: bytes) -> bytes:
    """A ``Chunk``'s data (the last field 1, as protobuf reads a repeated scalar's twin)."""
    found = b""
    for number, value in wire.fields(data):
        if number == 1 and isinstance(value, memoryview):
            found = bytes(value)
    return found


def decode_copy_result(data: bytes) -> tuple[int, int]:
    """A ``CopyToResult``'s (entries, bytes) written into the container."""
    entries = size = 0
    for number, value in wire.fields(data):
        if number == 1 and isinstance(value, int):
            entries = value
        elif number == 2 and isinstance(value, int):
            size = value
    return entries, size


async def _chunks(channel: grpc.aio.Channel, method: str, request: bytes) -> AsyncIterator[bytes]:
    # A generator, not the call itself: the call is an iterable, and a reader of the tar in a
    # thread (berth.endpoint.streams.ThreadReader) steps an iterator with anext().
    call = channel.unary_stream(method, response_deserializer=decode_chunk)
    chunk: bytes
    async for chunk in call(request):
        yield chunk


def copy_from(channel: grpc.aio.Channel, request: bytes) -> AsyncIterator[bytes]:
    """``Files.CopyFrom`` with an encoded request: the tar's chunks as they come."""
    return _chunks(channel, COPY_FROM_METHOD, request)


def export(channel: grpc.aio.Channel, request: bytes) -> AsyncIterator[bytes]:
    """``Files.Export`` with an encoded request: the tar's chunks as they come."""
    return _chunks(channel, EXPORT_METHOD, request)


async def copy_to(channel: grpc.aio.Channel, inputs: AsyncIterator[bytes]) -> tuple[int, int]:
    """``Files.CopyTo`` fed by encoded ``CopyToInput`` messages: (entries, bytes) written."""
    call = channel.stream_unary(COPY_TO_METHOD, response_deserializer=decode_copy_result)
    result: tuple[int, int] = await call(inputs)
    return result
