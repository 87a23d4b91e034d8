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
import http.client
import json
import os
import socket
import ssl
import time
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

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
    context = ssl.create_default_context(cadata=ca.decode() if ca else None)
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context


class _Connection(http.client.HTTPSConnection):
    """HTTPS whose certificate check and SNI use ``server_name`` (the TLS settings' override)."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, server_name: str) -> None:
        super().__init__(host, port, context=context)
        self._server_name = server_name
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self._server_name)


class TemporalHttp:
    """One keep-alive connection to the frontend's HTTP API."""

    def __init__(self, target: HttpTarget) -> None:
        self.target = target
        host, _, port = target.address.rpartition(":")
        self._host, self._port = host.strip("[]") or "127.0.0.1", int(port)
        self._connection: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self._connection is None:
            tls = self.target.tls
            if tls is None:
                self._connection = http.client.HTTPConnection(self._host, self._port)
            else:
                name = self.target.server_name or self._host
                self._connection = _Connection(self._host, self._port, tls, name)
        self._connection.timeout = timeout
        if self._connection.sock is not None:
            self._connection.sock.settimeout(timeout)
        return self._connection

    def listening(self, timeout: float) -> bool:
        """Open the connection now: False when nothing answers at the address (refused, no
        route, timed out). The connection stays open for the first call; a TLS failure raises
        ``TemporalUnreachable`` (something listens, but this client cannot use it)."""
        connection = self._connect(timeout)
        try:
            connection.connect()
        except ssl.SSLError as err:
            self.close()
            raise self._unreachable(err) from None
        except OSError:
            self.close()
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
        payload = json.dumps(body).encode() if body is not None else None
        try:
            connection = self._connect(timeout)
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        except ConnectionRefusedError:
            self.close()
            raise
        except (OSError, http.client.HTTPException) as err:
            self.close()
            if isinstance(err, http.client.RemoteDisconnected | ConnectionResetError):
                raise ConnectionRefusedError(str(err)) from None  # a restart: try again
            raise self._unreachable(err) from None
        try:
            document = json.loads(raw) if raw else {}
        except ValueError:
            raise self._unreachable(f"HTTP {response.status}: not a Temporal answer") from None
        if response.status >= 400:
            code = int(document.get("code", 2)) if isinstance(document, dict) else 2
            message = document.get("message", "") if isinstance(document, dict) else ""
            if code in (_UNAUTHENTICATED, _PERMISSION_DENIED) or response.status in (401, 403):
                raise TemporalUnreachable(
                    f"Temporal at {self.target.address} refused this client: {message}"
                )
            raise TemporalCallError(code, message or f"HTTP {response.status}")
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
            "requestId": str(uuid.uuid4()),
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
