"""The AES-GCM payload codec: ciphertext out, the same payload back, keys that rotate."""

from __future__ import annotations

import json

import pytest
from temporalio.api.common.v1 import Payload

from berth.codec import ENCODING, AesGcmCodec, CodecKeys, generate_keys
from berth.errors import InvalidParameter

PLAIN = Payload(metadata={"encoding": b"json/plain"}, data=b'{"env": ["SECRET=hunter2"]}')


def rotated(old: str, new_id: str) -> str:
    """The key set after rotation: a new active key, the old one kept for decryption."""
    document = json.loads(old)
    fresh = json.loads(generate_keys(new_id))
    document["keys"] |= fresh["keys"]
    document["active"] = new_id
    return json.dumps(document)


async def test_codec_encode_hides_the_payload_and_decode_restores_it() -> None:
    codec = AesGcmCodec(CodecKeys.parse(generate_keys()))

    [sealed] = await codec.encode([PLAIN])
    [opened] = await codec.decode([sealed])

    assert sealed.metadata["encoding"] == ENCODING
    assert b"hunter2" not in sealed.SerializeToString()
    assert opened == PLAIN


async def test_codec_after_rotation_decodes_old_payloads_and_encrypts_with_the_new_key() -> None:
    keys = generate_keys("k1")
    [old] = await AesGcmCodec(CodecKeys.parse(keys)).encode([PLAIN])
    codec = AesGcmCodec(CodecKeys.parse(rotated(keys, "k2")))

    [opened] = await codec.decode([old])
    [new] = await codec.encode([PLAIN])

    assert opened == PLAIN
    assert new.metadata["encryption-key-id"] == b"k2"


async def test_codec_with_an_unknown_key_id_is_invalid_parameter() -> None:
    [sealed] = await AesGcmCodec(CodecKeys.parse(generate_keys("k1"))).encode([PLAIN])
    stranger = AesGcmCodec(CodecKeys.parse(generate_keys("k9")))

    with pytest.raises(InvalidParameter, match="unknown key 'k1'"):
        await stranger.decode([sealed])


async def test_codec_passes_unencrypted_payloads_through() -> None:
    codec = AesGcmCodec(CodecKeys.parse(generate_keys()))

    assert await codec.decode([PLAIN]) == [PLAIN]


@pytest.mark.parametrize(
    "text",
    ['{"active": "k1", "keys": {}}', '{"keys": {"k1": "AAAA"}, "active": "k1"}', "not json"],
)
def test_codec_keys_that_are_malformed_are_invalid_parameter(text: str) -> None:
    with pytest.raises(InvalidParameter):
        CodecKeys.parse(text)


async def test_codec_with_tampered_ciphertext_is_invalid_parameter() -> None:
    codec = AesGcmCodec(CodecKeys.parse(generate_keys()))
    [sealed] = await codec.encode([PLAIN])
    tampered = Payload(metadata=dict(sealed.metadata), data=sealed.data[:-1] + b"\x00")

    with pytest.raises(InvalidParameter, match="does not decrypt"):
        await codec.decode([tampered])
