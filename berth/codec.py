"""Encrypted payloads: an AES-GCM payload codec with key rotation, and Temporal's codec server.

With ``BERTH_CODEC_KEYS`` (or ``BERTH_CODEC_KEYS_FILE``) set, every payload a Berth client or
worker writes (workflow inputs, results, local activity markers) is ciphertext in Temporal's
history. The keys are JSON: ``{"active": "k2", "keys": {"k1": "<base64 32 bytes>", "k2": ...}}``;
the active key encrypts, every listed key decrypts, so keys rotate by adding a new one, making
it active, and dropping the old one once no history needs it. Payloads that were never
encrypted pass through untouched.

``berth codec-server`` serves the codec-server protocol (``POST /encode``, ``POST /decode``, with
CORS for the Web UI) so an operator's browser can read the history.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiohttp import web
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import PayloadCodec

from berth.config import Settings
from berth.errors import InvalidParameter

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12


@dataclass(frozen=True)
class CodecKeys:
    """The key that encrypts and every key that may decrypt."""

    active: str
    keys: dict[str, bytes]

    @classmethod
    def parse(cls, text: str) -> CodecKeys:
        try:
            document = json.loads(text)
            keys = {kid: base64.b64decode(value) for kid, value in document["keys"].items()}
            active = document["active"]
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise InvalidParameter(f"codec keys: expected {{active, keys}} JSON ({err})") from None
        if active not in keys:
            raise InvalidParameter(f"codec keys: active key {active!r} is not among the keys")
        if any(len(key) != 32 for key in keys.values()):
            raise InvalidParameter("codec keys: every key must be 32 bytes (AES-256)")
        return cls(active, keys)

    @classmethod
    def from_settings(cls, settings: Settings) -> CodecKeys | None:
        """The configured keys (inline JSON or a file); ``None`` when neither is set."""
        if settings.codec_keys is not None:
            return cls.parse(settings.codec_keys.get_secret_value())
        if settings.codec_keys_file is not None:
            return cls.parse(settings.codec_keys_file.read_text())
        return None


def generate_keys(key_id: str = "k1") -> str:
    """A fresh keys document with one random active key."""
    key = base64.b64encode(os.urandom(32)).decode()
    return json.dumps({"active": key_id, "keys": {key_id: key}})


class AesGcmCodec(PayloadCodec):
    """Encrypts each payload whole (metadata and data) with AES-256-GCM."""

    def __init__(self, keys: CodecKeys) -> None:
        self._keys = keys
        self._ciphers = {kid: AESGCM(key) for kid, key in keys.keys.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        cipher = self._ciphers[self._keys.active]
        encoded = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), None)
            encoded.append(
                Payload(
                    metadata={"encoding": ENCODING, KEY_ID: self._keys.active.encode()},
                    data=nonce + sealed,
                )
            )
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        decoded = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                decoded.append(payload)
                continue
            key_id = payload.metadata.get(KEY_ID, b"").decode()
            cipher = self._ciphers.get(key_id)
            if cipher is None:
                raise InvalidParameter(f"payload encrypted with unknown key {key_id!r}")
            nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
            try:
                decoded.append(Payload.FromString(cipher.decrypt(nonce, sealed, None)))
            except InvalidTag:
                raise InvalidParameter(
                    f"payload does not decrypt with key {key_id!r}: wrong key or tampered data"
                ) from None
        return decoded


def codec_app(codec: PayloadCodec, allowed_origins: Sequence[str]) -> web.Application:
    """Temporal's codec-server protocol: ``POST /encode`` and ``POST /decode`` with CORS."""

    def cors(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and origin in allowed_origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type, X-Namespace"
            response.headers["Access-Control-Allow-Credentials"] = "true"
        return response

    async def preflight(request: web.Request) -> web.StreamResponse:
        return cors(request, web.Response())

    def handler(encode: bool) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            payloads = json_format.Parse(await request.text(), Payloads())
            convert = codec.encode if encode else codec.decode
            result = Payloads(payloads=await convert(payloads.payloads))
            body = json_format.MessageToJson(result)
            return cors(request, web.Response(text=body, content_type="application/json"))

        return handle

    app = web.Application()
    app.router.add_post("/encode", handler(encode=True))
    app.router.add_post("/decode", handler(encode=False))
    app.router.add_route("OPTIONS", "/encode", preflight)
    app.router.add_route("OPTIONS", "/decode", preflight)
    return app
