"""The shared protobuf wire helpers read and write what protobuf's runtime does."""

from __future__ import annotations

import pytest
from google.protobuf.wrappers_pb2 import BytesValue, Int32Value, Int64Value, UInt64Value

from berth.endpoint import wire


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32, 2**63 - 1, -1, -(2**63)])
def test_varint_is_protobufs_int64_and_reads_back(value: int) -> None:
    encoded = wire.int_field(1, value)

    assert encoded == Int64Value(value=value).SerializeToString()
    assert [(n, wire.int64(v)) for n, v in wire.fields(encoded)] == ([(1, value)] if value else [])


@pytest.mark.parametrize("value", [1, -1, 2**31 - 1, -(2**31)])
def test_int32_reads_protobufs_negative_int32_back(value: int) -> None:
    data = Int32Value(value=value).SerializeToString()

    [(number, raw)] = wire.fields(data)
    assert number == 1 and isinstance(raw, int) and wire.int32(raw) == value


def test_optional_int_field_is_present_at_zero_and_absent_at_none() -> None:
    assert wire.optional_int_field(3, 0) == b"\x18\x00"
    assert wire.optional_int_field(3, None) == b""
    big = UInt64Value(value=2**64 - 1).SerializeToString()
    assert wire.optional_int_field(1, 2**64 - 1) == big


def test_bytes_fields_are_protobufs_and_scalars_leave_empty_out() -> None:
    data = bytes(range(256)) * 3

    assert wire.scalar_bytes_field(1, data) == BytesValue(value=data).SerializeToString()
    assert wire.scalar_bytes_field(1, b"") == BytesValue(value=b"").SerializeToString() == b""
    assert wire.bytes_field(1, b"") == b"\x0a\x00"  # a oneof member or sub-message: kept
    assert wire.repeated_string_field(2, ["a", "", "ü"]) == b"\x12\x01a\x12\x00\x12\x02\xc3\xbc"


def test_fields_skips_nothing_and_keeps_fixed_sizes() -> None:
    data = b"\x08\x96\x01" + b"\x11" + bytes(range(8)) + b"\x1a\x02hi" + b"\x25" + bytes(4)

    found = [(n, v if isinstance(v, int) else bytes(v)) for n, v in wire.fields(data)]

    assert found == [(1, 150), (2, bytes(range(8))), (3, b"hi"), (4, bytes(4))]


@pytest.mark.parametrize(
    "data",
    [
        b"\x08\x96",  # ends inside a varint
        b"\x0a\x05abc",  # a length past the end
        b"\x11\x00\x00",  # a fixed64 cut short
        b"\x0b",  # a group (wire type 3)
    ],
)
def test_fields_rejects_a_malformed_message(data: bytes) -> None:
    with pytest.raises(ValueError, match="protobuf"):
        wire.fields(data)
