"""The CLI's HTTP transport to Temporal: payloads as the SDK and Berth's codec write them, and a
workflow's failure read as Berth's error type (the calls themselves: test_cli_transport.py)."""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import uuid

import pytest
from temporalio.api.common.v1 import Payload

from berth.codec import AesGcmCodec, CodecKeys, generate_keys
from berth.temporal_http import (
    HttpTarget,
    Sealer,
    TemporalCallError,
    TemporalHttp,
    TemporalUnreachable,
    application_error,
    decode_payload,
    encode_payload,
    request_id,
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


# --- the HTTP/1.1 connection, against a scripted loopback server --------------------------------


class ScriptedServer:
    """Answers each request with the next scripted bytes; ``None`` closes the connection instead
    (an idle keep-alive the server dropped). Records the requests and counts the connections."""

    def __init__(self, responses: list[bytes | None]) -> None:
        self._responses = list(responses)
        self.requests: list[bytes] = []
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self._responses:
            connection, _ = self._listener.accept()
            self.connections += 1
            with connection:
                while self._responses:
                    request = self._read_request(connection)
                    if request is None:
                        break
                    response = self._responses.pop(0)
                    if response is None:
                        break
                    self.requests.append(request)
                    connection.sendall(response)
                    if b"Connection: close" in response:
                        break

    @staticmethod
    def _read_request(connection: socket.socket) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
        while len(body) < length:
            body += connection.recv(65536)
        return head + b"\r\n\r\n" + body

    def close(self) -> None:
        self._listener.close()


def http_answer(status: str, body: bytes, *headers: str) -> bytes:
    head = "\r\n".join([f"HTTP/1.1 {status}", *headers])
    return head.encode() + b"\r\n\r\n" + body


def temporal_at(server: ScriptedServer) -> TemporalHttp:
    return TemporalHttp(HttpTarget(server.address, "default", wait_seconds=3.0, call_timeout=3.0))


def test_call_sends_json_and_keeps_the_connection_for_the_next_call() -> None:
    body = b'{"runId": "r1"}'
    answer = http_answer("200 OK", body, f"Content-Length: {len(body)}")
    server = ScriptedServer([answer, answer])
    temporal = temporal_at(server)

    first = temporal.call("POST", "/api/v1/x", {"a": 1})
    second = temporal.call("GET", "/api/v1/y")

    assert first == second == {"runId": "r1"}
    assert server.connections == 1
    post, get = server.requests
    assert post.startswith(b"POST /api/v1/x HTTP/1.1\r\n")
    assert f"Host: {server.address}".encode() in post
    assert post.endswith(b'\r\n\r\n{"a": 1}')
    assert get.startswith(b"GET /api/v1/y HTTP/1.1\r\n") and b"Content-Length: 0" in get
    temporal.close()
    server.close()


def test_call_reads_a_chunked_answer_with_extensions_and_trailers() -> None:
    chunked = b'7;ext=1\r\n{"runId\r\n8\r\n": "r2"}\r\n0\r\nX-Trailer: t\r\n\r\n'
    server = ScriptedServer([http_answer("200 OK", chunked, "Transfer-Encoding: chunked")])

    assert temporal_at(server).call("GET", "/x") == {"runId": "r2"}
    server.close()


def test_call_reads_an_answer_without_length_to_the_close() -> None:
    server = ScriptedServer([http_answer("200 OK", b'{"runId": "r3"}', "Connection: close")])

    assert temporal_at(server).call("GET", "/x") == {"runId": "r3"}
    server.close()


def test_call_after_the_server_dropped_the_idle_connection_tries_again() -> None:
    body = b"{}"
    answer = http_answer("200 OK", body, f"Content-Length: {len(body)}")
    server = ScriptedServer([answer, None, answer])
    temporal = temporal_at(server)

    temporal.call("GET", "/first")
    assert temporal.call("GET", "/second") == {}

    assert server.connections == 2
    temporal.close()
    server.close()


def test_call_error_status_is_a_call_error_with_the_grpc_code() -> None:
    body = json.dumps({"code": 3, "message": "bad workflow id"}).encode()
    answer = http_answer("400 Bad Request", body, f"Content-Length: {len(body)}")
    server = ScriptedServer([answer])

    with pytest.raises(TemporalCallError) as failure:
        temporal_at(server).call("POST", "/x", {})

    assert (failure.value.code, failure.value.message) == (3, "bad workflow id")
    server.close()


def test_call_to_something_that_is_not_http_is_unreachable_naming_the_address() -> None:
    server = ScriptedServer([b"SSH-2.0-OpenSSH_9.2\r\n\r\n"])

    with pytest.raises(TemporalUnreachable, match="not an HTTP response") as failure:
        temporal_at(server).call("GET", "/x")

    assert server.address in str(failure.value)
    server.close()


def test_request_id_is_a_random_version_4_uuid() -> None:
    ids = {request_id() for _ in range(100)}

    assert len(ids) == 100
    for text in ids:
        parsed = uuid.UUID(text)
        assert (str(parsed), parsed.version, parsed.variant) == (text, 4, uuid.RFC_4122)
