"""Temporal's HTTP API for the command line: start a workflow and wait for its close, with the
standard library (and ``cryptography`` for encrypted payloads) only.

Why not the SDK: each ``berth`` call is a fresh interpreter, and ``temporalio.client`` costs about
200 ms of CPU to import before it connects; its Rust core's threads can also call into Python
while the interpreter finalizes and abort the process after the command succeeded
(temporalio/sdk-python#300). The frontend serves the same WorkflowService as JSON over HTTP
(``temporal server start-dev --http-port``, ``BERTH_TEMPORAL_HTTP_ADDRESS``):

- ``POST /api/v1/namespaces/{namespace}/workflows/{workflow_id}``: StartWorkflowExecution;
- ``GET .../workflows/{workflow_id}/history``: the close event, long-polled
  (``waitNewEvent``, ``historyEventFilterType=HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT``), payloads in
  full (``noPayloadShorthand=true``), following continue-as-new to the last run.

Payloads are what Berth's data converter writes: ``json/plain`` JSON; with codec keys
(``BERTH_CODEC_KEYS``), sealed as ``berth.codec.AesGcmCodec`` seals them (the inner payload's
protobuf encoding under AES-256-GCM). TLS takes the gRPC connection's settings (CA, client pair
for mTLS, server name); an API key goes as a bearer token.

Errors: a frontend that cannot be reached (refused, TLS, timeout) or refuses this client is
:class:`TemporalUnreachable`; a workflow that fails is :class:`WorkflowFailed` carrying the type
and message of its application error (Berth's error taxonomy by name).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote, urlencode

if TYPE_CHECKING:
    import ssl

# As berth.codec: the encoding, metadata key and nonce of an encrypted payload.
ENCRYPTED = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
JSON_PLAIN = b"json/plain"
# gRPC status codes as the HTTP API's error bodies carry them.
_NOT_FOUND, _ALREADY_EXISTS, _PERMISSION_DENIED, _UNAUTHENTICATED = 5, 6, 7, 16
_TRANSIENT = {4, 8, 14}  # DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, UNAVAILABLE
# Longer than the frontend's long-poll interval (about 20 s) of a history wait.
_POLL_TIMEOUT_SECONDS = 70.0
_FIRST_PAUSE_SECONDS = 0.2
_MAX_PAUSE_SECONDS = 2.0
# Room for a response's status line and headers.
_MAX_HEAD_BYTES = 65536


class TemporalUnreachable(Exception):
    """The frontend cannot be reached or refuses this client; the message names the address."""


class TemporalCallError(Exception):
    """The frontend answered a call with an error status (not a transport failure)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class WorkflowFailed(Exception):
    """The workflow closed without a result: its application error's type and message."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.message = message


# --- payloads -----------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            return value, at
        shift += 7


def _field(number: int, data: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def encode_payload(metadata: Mapping[str, bytes], data: bytes) -> bytes:
    """``temporal.api.common.v1.Payload`` in protobuf: ``metadata`` (map, 1) and ``data`` (2)."""
    entries = b"".join(
        _field(1, _field(1, key.encode()) + _field(2, value)) for key, value in metadata.items()
    )
    return entries + (_field(2, data) if data else b"")


def _fields(data: bytes) -> list[tuple[int, bytes]]:
    """The length-delimited fields of a protobuf message (the only kind a Payload has)."""
    found, at = [], 0
    while at < len(data):
        tag, at = _read_varint(data, at)
        if tag & 7 != 2:
            raise ValueError(f"unexpected protobuf wire type {tag & 7} in a payload")
        size, at = _read_varint(data, at)
        found.append((tag >> 3, data[at : at + size]))
        at += size
    return found


def decode_payload(data: bytes) -> tuple[dict[str, bytes], bytes]:
    """The metadata and data of a protobuf-encoded ``Payload``."""
    metadata, body = {}, b""
    for number, value in _fields(data):
        if number == 1:
            entry = dict(_fields(value))
            metadata[entry.get(1, b"").decode()] = entry.get(2, b"")
        elif number == 2:
            body = value
    return metadata, body


# NamedTuples, not dataclasses: ``dataclasses`` (with ``inspect``) costs a fresh CLI about 8 ms.
class Sealer(NamedTuple):
    """AES-256-GCM payload sealing with the codec keys (``berth.codec.CodecKeys``' document)."""

    active: str
    keys: dict[str, bytes]

    def __repr__(self) -> str:
        return f"Sealer(active={self.active!r})"

    @classmethod
    def parse(cls, text: str) -> Sealer:
        """``{"active": "k1", "keys": {"k1": "<base64 of 32 bytes>"}}``; ValueError if not."""
        try:
            document = json.loads(text)
            keys = {kid: base64.b64decode(value) for kid, value in document["keys"].items()}
            active = document["active"]
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"codec keys: expected {{active, keys}} JSON ({err})") from None
        if active not in keys or any(len(key) != 32 for key in keys.values()):
            raise ValueError("codec keys: the active key must be listed; every key 32 bytes")
        return cls(active, keys)

    def seal(self, metadata: Mapping[str, bytes], data: bytes) -> tuple[dict[str, bytes], bytes]:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.keys[self.active]).encrypt(nonce, encode_payload(metadata, data), None)
        return {"encoding": ENCRYPTED, KEY_ID: self.active.encode()}, nonce + sealed

    def open(self, metadata: Mapping[str, bytes], data: bytes) -> tuple[dict[str, bytes], bytes]:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if metadata.get("encoding") != ENCRYPTED:
            return dict(metadata), data
        key = self.keys.get(metadata.get(KEY_ID, b"").decode())
        if key is None:
            raise ValueError("payload encrypted with a key not among the codec keys")
        plain = AESGCM(key).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], None)
        return decode_payload(plain)


# --- the connection -----------------------------------------------------------------------------


class HttpTarget(NamedTuple):
    """Where the frontend's HTTP API is and how to reach it."""

    address: str
    namespace: str
    tls: ssl.SSLContext | None = None
    server_name: str | None = None
    api_key: str | None = None
    sealer: Sealer | None = None
    wait_seconds: float = 30.0
    call_timeout: float = 10.0

    def __repr__(self) -> str:
        return f"HttpTarget(address={self.address!r}, namespace={self.namespace!r})"


def tls_context(ca: bytes | None, cert_file: str | None, key_file: str | None) -> ssl.SSLContext:
    """A client TLS context: the CA (or the system roots) and, for mTLS, the client pair."""
    import ssl

    context = ssl.create_default_context(cadata=ca.decode() if ca else None)
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context


class Disconnected(OSError):
    """The server closed the connection before it answered (a restart, an idle keep-alive
    closed): the call may be made again."""


class MalformedResponse(Exception):
    """What came back is not an HTTP/1.x response."""


class Connection:
    """HTTP/1.1 on one keep-alive socket, plain or TLS (SNI and the certificate check on
    ``server_name``): the requests of the frontend's JSON API (a JSON body out, a JSON body back
    by length, chunked or to the close), without ``http.client``, whose import (its mail header
    parser, ssl) costs a fresh ``berth`` call about 15 ms of CPU."""

    def __init__(
        self, host: str, port: int, timeout: float, tls: ssl.SSLContext | None, server_name: str
    ) -> None:
        sock = socket.create_connection((host, port), timeout)
        try:
            self._sock = sock if tls is None else tls.wrap_socket(sock, server_hostname=server_name)
        except BaseException:
            sock.close()
            raise
        self._authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._buffer = b""

    def settimeout(self, timeout: float) -> None:
        self._sock.settimeout(timeout)

    def close(self) -> None:
        self._sock.close()

    def exchange(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, bytes, bool]:
        """Send one request and read its response: the status, the body, and whether the
        connection stays open for the next."""
        head = [f"{method} {path} HTTP/1.1", f"Host: {self._authority}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        self._sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        version, status, fields = self._read_head()
        keep = version == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
        if status in (204, 304):
            return status, b"", keep
        if "chunked" in fields.get("transfer-encoding", "").lower():
            return status, self._read_chunked(), keep
        if "content-length" in fields:
            return status, self._read_exactly(int(fields["content-length"])), keep
        return status, self._read_to_close(), False

    def _read_head(self) -> tuple[str, int, dict[str, str]]:
        while b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > _MAX_HEAD_BYTES:
                raise MalformedResponse("a response head longer than 64 KiB")
            if not self._receive():
                if self._buffer:
                    raise MalformedResponse("the connection closed inside a response head")
                raise Disconnected("the server closed the connection without an answer")
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        version, _, rest = status_line.partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise MalformedResponse(f"not an HTTP response: {status_line[:60]!r}")
        fields = {}
        for line in lines:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        return version, int(code), fields

    def _receive(self) -> bool:
        chunk = self._sock.recv(65536)
        self._buffer += chunk
        return bool(chunk)

    def _read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            if not self._receive():
                raise MalformedResponse("the connection closed inside a response body")
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _read_line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            if not self._receive():
                raise MalformedResponse("the connection closed inside a chunked body")
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size_text = self._read_line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise MalformedResponse(f"a chunk size of {size_text[:20]!r}") from None
            if size == 0:
                while self._read_line():  # trailers, up to the empty line
                    pass
                return b"".join(parts)
            parts.append(self._read_exactly(size))
            self._read_exactly(2)  # the chunk's CRLF

    def _read_to_close(self) -> bytes:
        while self._receive():
            pass
        data, self._buffer = self._buffer, b""
        return data


class TemporalHttp:
    """One keep-alive connection to the frontend's HTTP API."""

    def __init__(self, target: HttpTarget) -> None:
        self.target = target
        host, _, port = target.address.rpartition(":")
        self._host, self._port = host.strip("[]") or "127.0.0.1", int(port)
        self._connection: Connection | None = None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self, timeout: float) -> Connection:
        if self._connection is None:
            name = self.target.server_name or self._host
            self._connection = Connection(self._host, self._port, timeout, self.target.tls, name)
        else:
            self._connection.settimeout(timeout)
        return self._connection

    def listening(self, timeout: float) -> bool:
        """Open the connection now: False when nothing answers at the address (refused, no
        route, timed out). The connection stays open for the first call; a TLS failure raises
        ``TemporalUnreachable`` (something listens, but this client cannot use it)."""
        try:
            self._connect(timeout)
        except OSError as err:
            self.close()
            if self.target.tls is not None and _is_tls_error(err):
                raise self._unreachable(err) from None
            return False
        return True

    def _unreachable(self, reason: object) -> TemporalUnreachable:
        return TemporalUnreachable(
            f"cannot connect to Temporal at {self.target.address} (HTTP API): {reason}"
        )

    def call(
        self, method: str, path: str, body: Any = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """One call; a refused connection or an unavailable frontend is waited out for
        ``wait_seconds`` (every call here is safe to repeat)."""
        deadline = time.monotonic() + self.target.wait_seconds
        pause = _FIRST_PAUSE_SECONDS
        while True:
            try:
                return self._call_once(method, path, body, timeout or self.target.call_timeout)
            except (ConnectionRefusedError, TemporalCallError) as err:
                transient = isinstance(err, ConnectionRefusedError) or err.code in _TRANSIENT
                if not transient:
                    raise
                if time.monotonic() + pause > deadline:
                    raise self._unreachable(err) from None
            time.sleep(pause)
            pause = min(pause * 2, _MAX_PAUSE_SECONDS)

    def _call_once(self, method: str, path: str, body: Any, timeout: float) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.target.api_key:
            headers["Authorization"] = f"Bearer {self.target.api_key}"
        payload = json.dumps(body).encode() if body is not None else b""
        try:
            status, raw, keep = self._connect(timeout).exchange(method, path, headers, payload)
        except ConnectionRefusedError:
            self.close()
            raise
        except (OSError, MalformedResponse) as err:
            self.close()
            if isinstance(err, Disconnected | ConnectionResetError):
                raise ConnectionRefusedError(str(err)) from None  # a restart: try again
            raise self._unreachable(err) from None
        if not keep:
            self.close()
        try:
            document = json.loads(raw) if raw else {}
        except ValueError:
            raise self._unreachable(f"HTTP {status}: not a Temporal answer") from None
        if status >= 400:
            code = int(document.get("code", 2)) if isinstance(document, dict) else 2
            message = document.get("message", "") if isinstance(document, dict) else ""
            if code in (_UNAUTHENTICATED, _PERMISSION_DENIED) or status in (401, 403):
                raise TemporalUnreachable(
                    f"Temporal at {self.target.address} refused this client: {message}"
                )
            raise TemporalCallError(code, message or f"HTTP {status}")
        return document if isinstance(document, dict) else {}

    # --- payloads in and out --------------------------------------------------------------------

    def payload(self, value: Any) -> dict[str, Any]:
        """``value`` as a JSON-API payload, as Berth's data converter (and codec) writes it."""
        metadata: dict[str, bytes] = {"encoding": JSON_PLAIN}
        data = json.dumps(value, separators=(",", ":")).encode()
        if self.target.sealer is not None:
            metadata, data = self.target.sealer.seal(metadata, data)
        return {"metadata": {k: _b64(v) for k, v in metadata.items()}, "data": _b64(data)}

    def value(self, payload: Mapping[str, Any]) -> Any:
        """The JSON value of a JSON-API payload (opened with the codec keys when sealed)."""
        metadata = {k: base64.b64decode(v) for k, v in (payload.get("metadata") or {}).items()}
        data = base64.b64decode(payload.get("data") or "")
        if self.target.sealer is not None:
            metadata, data = self.target.sealer.open(metadata, data)
        if metadata.get("encoding") == b"binary/null":
            return None
        return json.loads(data) if data else None

    # --- workflows ------------------------------------------------------------------------------

    def _workflow_path(self, workflow_id: str, suffix: str = "") -> str:
        namespace = quote(self.target.namespace, safe="")
        return f"/api/v1/namespaces/{namespace}/workflows/{quote(workflow_id, safe='')}{suffix}"

    def start_workflow(
        self,
        workflow_type: str,
        workflow_id: str,
        task_queue: str,
        argument: Any,
        search_attributes: Mapping[str, str],
        use_existing: bool = True,
    ) -> str:
        """Start ``workflow_type`` (or, with ``use_existing``, attach to the one running under
        ``workflow_id``); the run id. Keyword search attributes as the SDK encodes them."""
        body = {
            "workflowType": {"name": workflow_type},
            "taskQueue": {"name": task_queue},
            "input": {"payloads": [self.payload(argument)]},
            "requestId": request_id(),
            "workflowIdReusePolicy": "WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE",
            "searchAttributes": {
                "indexedFields": {
                    name: {
                        "metadata": {"encoding": _b64(JSON_PLAIN), "type": _b64(b"Keyword")},
                        "data": _b64(json.dumps(value).encode()),
                    }
                    for name, value in search_attributes.items()
                }
            },
        }
        if use_existing:
            body["workflowIdConflictPolicy"] = "WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING"
        started = self.call("POST", self._workflow_path(workflow_id), body)
        if "runId" not in started:
            raise self._unreachable("the answer to a start names no run: not Temporal's API?")
        return str(started["runId"])

    def result(self, workflow_id: str, run_id: str) -> Any:
        """Wait for the run to close (following continue-as-new); its result's JSON value, or
        ``WorkflowFailed``."""
        while True:
            query = urlencode(
                {
                    "execution.runId": run_id,
                    "waitNewEvent": "true",
                    "historyEventFilterType": "HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT",
                    "noPayloadShorthand": "true",
                }
            )
            page = self.call(
                "GET",
                self._workflow_path(workflow_id, f"/history?{query}"),
                timeout=_POLL_TIMEOUT_SECONDS,
            )
            events = (page.get("history") or {}).get("events") or []
            if not events:
                continue  # the long poll ended with the run still open: poll again
            closed = events[-1]
            continued = closed.get("workflowExecutionContinuedAsNewEventAttributes")
            if continued:
                run_id = continued["newExecutionRunId"]
                continue
            return self._outcome(closed)

    def _outcome(self, event: Mapping[str, Any]) -> Any:
        completed = event.get("workflowExecutionCompletedEventAttributes")
        if completed is not None:
            payloads = (completed.get("result") or {}).get("payloads") or []
            return self.value(payloads[0]) if payloads else None
        failed = event.get("workflowExecutionFailedEventAttributes")
        if failed is not None:
            type_name, message = application_error(failed.get("failure") or {})
            raise WorkflowFailed(type_name, message)
        if "workflowExecutionTimedOutEventAttributes" in event:
            raise WorkflowFailed("Unavailable", "the operation timed out")
        if "workflowExecutionTerminatedEventAttributes" in event:
            reason = event["workflowExecutionTerminatedEventAttributes"].get("reason") or ""
            raise WorkflowFailed("Unknown", f"the operation was terminated: {reason}".rstrip(": "))
        if "workflowExecutionCanceledEventAttributes" in event:
            raise WorkflowFailed("Unknown", "the operation was cancelled")
        raise WorkflowFailed("Unknown", f"the operation closed as {event.get('eventType')}")

    def execute(
        self,
        workflow_type: str,
        workflow_id: str,
        task_queue: str,
        argument: Any,
        search_attributes: Mapping[str, str],
        use_existing: bool = True,
    ) -> Any:
        """Start (or, with ``use_existing``, attach to) the workflow and wait for its result."""
        run_id = self.start_workflow(
            workflow_type, workflow_id, task_queue, argument, search_attributes, use_existing
        )
        return self.result(workflow_id, run_id)


def request_id() -> str:
    """A random (version 4) UUID in its text form, as the SDK's request ids; made here because
    importing ``uuid`` costs a fresh CLI about 3 ms."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _is_tls_error(err: OSError) -> bool:
    import ssl  # loaded already: a TLS target's context is ssl's

    return isinstance(err, ssl.SSLError)


def application_error(failure: Mapping[str, Any]) -> tuple[str, str]:
    """The type and message of the outermost application error in a failure chain (as
    ``berth.errors.application_cause`` finds it); ``Unknown`` with the top message if none."""
    current: Mapping[str, Any] | None = failure
    while current:
        info = current.get("applicationFailureInfo")
        if info is not None:
            return str(info.get("type") or "Unknown"), str(current.get("message") or "")
        current = current.get("cause")
    return "Unknown", str(failure.get("message") or "the operation failed")
