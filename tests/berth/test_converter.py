"""Berth's data converter turns malformed input into InvalidParameter, never a wedged task."""

from __future__ import annotations

import pytest
from temporalio.api.common.v1 import Payload

from berth.contract import ContainerStartInput
from berth.converter import data_converter, type_adapter
from berth.errors import InvalidParameter


def payload(encoding: bytes, data: bytes) -> Payload:
    return Payload(metadata={"encoding": encoding}, data=data)


def decode(value: Payload, type_hint: type) -> object:
    return data_converter.payload_converter.from_payloads([value], [type_hint])[0]


def test_converter_decodes_plain_json_into_the_model() -> None:
    decoded = decode(payload(b"json/plain", b'{"container": "web-1"}'), ContainerStartInput)

    assert decoded == ContainerStartInput(container="web-1")


@pytest.mark.parametrize(
    ("encoding", "data", "field"),
    [
        (b"json/plain", b'{"containr": "web-1"}', "container"),
        (b"json/plain", b"not json", "input"),
        (b"binary/null", b"", "input"),
    ],
)
def test_converter_with_malformed_input_raises_invalid_parameter_naming_the_field(
    encoding: bytes, data: bytes, field: str
) -> None:
    with pytest.raises(InvalidParameter, match=field):
        decode(payload(encoding, data), ContainerStartInput)


def test_converter_accepts_null_where_none_is_the_type() -> None:
    assert decode(payload(b"binary/null", b""), type(None)) is None


def test_converter_builds_each_type_adapter_once_per_process() -> None:
    # Workers make a converter per workflow run; the adapters outlive them.
    assert type_adapter(ContainerStartInput) is type_adapter(ContainerStartInput)
    assert type_adapter(list[str]) is type_adapter(list[str])
