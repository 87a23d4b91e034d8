"""The CLI's HTTP transport to Temporal: payloads as the SDK and Berth's codec write them, and a
workflow's failure read as Berth's error type (the calls themselves: test_cli_transport.py)."""

from __future__ import annotations

import base64
import json

import pytest
from temporalio.api.common.v1 import Payload

from berth.codec import AesGcmCodec, CodecKeys, generate_keys
from berth.temporal_http import (
    HttpTarget,
    Sealer,
    TemporalHttp,
    application_error,
    decode_payload,
    encode_payload,
)

METADATA = {"encoding": b"json/plain", "encryption-key-id": b"k" * 200}
DATA = b'{"env": ["SECRET=hunter2"]}' * 20


def test_encode_payload_is_the_protobuf_encoding_of_payload() -> None:
    message = Payload.FromString(encode_payload(METADATA, DATA))

    assert (dict(message.metadata), message.data) == (METADATA, DATA)


def test_decode_payload_reads_the_protobuf_encoding_of_payload() -> None:
    encoded = Payload(metadata=METADATA, data=DATA).SerializeToString()

    assert decode_payload(encoded) == (METADATA, DATA)


async def test_sealer_seals_what_the_codec_opens_and_opens_what_it_seals() -> None:
    keys = generate_keys("k7")
    sealer, codec = Sealer.parse(keys), AesGcmCodec(CodecKeys.parse(keys))
    metadata, data = {"encoding": b"json/plain"}, b'{"container": "abc"}'

    sealed_metadata, sealed_data = sealer.seal(metadata, data)

    [opened] = await codec.decode([Payload(metadata=sealed_metadata, data=sealed_data)])
    [sealed] = await codec.encode([Payload(metadata=metadata, data=data)])

    assert (dict(opened.metadata), opened.data) == (metadata, data)
    assert sealer.open(dict(sealed.metadata), sealed.data) == (metadata, data)


def test_sealer_refuses_keys_that_are_not_a_key_set() -> None:
    with pytest.raises(ValueError, match="codec keys"):
        Sealer.parse('{"active": "k2", "keys": {"k1": "AAAA"}}')


def test_payload_and_value_round_trip_through_json_api_form_sealed() -> None:
    temporal = TemporalHttp(
        HttpTarget("127.0.0.1:1", "default", sealer=Sealer.parse(generate_keys()))
    )

    payload = temporal.payload({"request": {"container": "abc"}})

    assert base64.b64decode(payload["metadata"]["encoding"]) == b"binary/encrypted"
    assert temporal.value(payload) == {"request": {"container": "abc"}}


def test_payload_without_keys_is_json_plain() -> None:
    temporal = TemporalHttp(HttpTarget("127.0.0.1:1", "default"))

    payload = temporal.payload({"a": 1})

    assert base64.b64decode(payload["metadata"]["encoding"]) == b"json/plain"
    assert json.loads(base64.b64decode(payload["data"])) == {"a": 1}


def test_application_error_is_the_outermost_application_failure_of_the_chain() -> None:
    failure = {
        "message": "activity error",
        "activityFailureInfo": {"activityType": {"name": "create_task"}},
        "cause": {
            "message": "No such image: x",
            "applicationFailureInfo": {"type": "NotFound", "nonRetryable": True},
            "cause": {"message": "inner", "applicationFailureInfo": {"type": "System"}},
        },
    }

    assert application_error(failure) == ("NotFound", "No such image: x")


def test_application_error_without_one_is_unknown_with_the_top_message() -> None:
    assert application_error({"message": "timed out", "timeoutFailureInfo": {}}) == (
        "Unknown",
        "timed out",
    )
