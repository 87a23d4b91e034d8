"""Protobuf's wire format on the standard library, for the CLI's end of the node endpoint.

The CLI's calls to a node endpoint (``berth logs``, ``exec``, ``attach``, ``cp``, ``export``) are
short commands whose time is mostly imports: protobuf's runtime and the generated messages cost
about 15 ms of each, so the client encodes its few messages and decodes the answers itself with
these helpers (varints and length-delimited fields; unknown fields skipped, as protobuf does).
The node's servicers use the generated classes; the tests under tests/berth/endpoint check that
both ends agree, field by field.
"""

from __future__ import annotations

# Wire types.
VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5

_UINT64 = (1 << 64) - 1


def varint(value: int) -> bytes:
    """``value`` as a base-128 varint (a negative int32/int64: ten bytes, two's complement)."""
    value &= _UINT64
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def key(number: int, wire_type: int) -> bytes:
    """A field's key: its number and wire type."""
    return varint(number << 3 | wire_type)


def int_field(number: int, value: int) -> bytes:
    """A varint field (ints, bools, enums); proto3 leaves out a zero, and so does this."""
    return key(number, VARINT) + varint(value) if value else b""


def optional_int_field(number: int, value: int | None) -> bytes:
    """A proto3 ``optional`` varint field: present whenever set, even at zero."""
    return b"" if value is None else key(number, VARINT) + varint(value)


def bytes_field(number: int, data: bytes) -> bytes:
    """A length-delimited field (bytes, a string's UTF-8, an embedded message), even if empty.

    Use :func:`scalar_bytes_field` for proto3 scalars, which leave an empty value out.
    """
    return key(number, LENGTH) + varint(len(data)) + data


def scalar_bytes_field(number: int, data: bytes) -> bytes:
    """A proto3 ``bytes`` field outside a oneof: nothing when empty."""
    return bytes_field(number, data) if data else b""


def string_field(number: int, text: str) -> bytes:
    """A proto3 ``string`` field outside a oneof: nothing when empty."""
    return scalar_bytes_field(number, text.encode())


def repeated_string_field(number: int, texts: list[str]) -> bytes:
    """A ``repeated string`` field: one length-delimited entry per string, empty ones too."""
    return b"".join(bytes_field(number, text.encode()) for text in texts)


def read_varint(data: bytes | memoryview, at: int) -> tuple[int, int]:
    """The varint at ``at`` in ``data`` and the offset after it.

    Raises:
        ValueError: the data ends inside the varint.
    """
    value = shift = 0
    try:
        while True:
            byte = data[at]
            at += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value, at
            shift += 7
    except IndexError:
        raise ValueError("protobuf message truncated inside a varint") from None


def fields(data: bytes | memoryview) -> list[tuple[int, int | memoryview]]:
    """The message's (field number, value) pairs in wire order: ints for varints, views for
    the rest (length-delimited contents, fixed-size bytes).

    Raises:
        ValueError: a group's wire type, or a field that runs past the end of ``data``.
    """
    view = memoryview(data)
    found: list[tuple[int, int | memoryview]] = []
    at, end = 0, len(view)
    while at < end:
        tag, at = read_varint(view, at)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == VARINT:
            value, at = read_varint(view, at)
            found.append((number, value))
            continue
        if wire_type == LENGTH:
            size, at = read_varint(view, at)
        elif wire_type in (FIXED64, FIXED32):
            size = 8 if wire_type == FIXED64 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type} (field {number})")
        if at + size > end:
            raise ValueError(f"protobuf message truncated in field {number}")
        found.append((number, view[at : at + size]))
        at += size
    return found


def int64(value: int) -> int:
    """A decoded varint as a signed 64-bit integer (``int64``)."""
    value &= _UINT64
    return value - (1 << 64) if value >= 1 << 63 else value


def int32(value: int) -> int:
    """A decoded varint as a signed 32-bit integer (``int32``: negatives are sent as int64)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value
