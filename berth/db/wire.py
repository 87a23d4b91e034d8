"""A small synchronous PostgreSQL client on the standard library, for the CLI's hot path.

``berth start`` / ``stop`` / ``restart`` need one row before they call Temporal (the container's
id, name and node, and whether that node's agent is live). asyncpg and the asyncio it runs on
cost a fresh interpreter about 60 ms of CPU to import, more than half of the command's own work,
so those verbs read the row here: one connection, PostgreSQL's frontend/backend protocol 3.0,
the extended query protocol with text parameters and text results (no SQL is ever built from
a value). It speaks what a libpq URL usually asks for: a TCP host and port, trust, password,
MD5 or SCRAM-SHA-256 authentication, and ``sslmode`` (``disable``, ``allow``, ``prefer`` — the
default —, ``require``, ``verify-ca``, ``verify-full``; ``sslrootcert``, ``sslcert``,
``sslkey``). Anything else (a Unix socket, several hosts, channel binding, other parameters) is
:class:`Unsupported`, and the caller reads through asyncpg instead.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import struct
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    import ssl

PROTOCOL_3_0 = 196608
SSL_REQUEST = 80877103
# Authentication request codes (the 'R' message).
_AUTH_OK, _AUTH_CLEARTEXT, _AUTH_MD5 = 0, 3, 5
_AUTH_SASL, _AUTH_SASL_CONTINUE, _AUTH_SASL_FINAL = 10, 11, 12
SCRAM = "SCRAM-SHA-256"
# SQLSTATE of a server that is starting up or shutting down: worth waiting for.
_CANNOT_CONNECT_NOW = "57P03"
_URL_PARAMETERS = frozenset({"sslmode", "sslrootcert", "sslcert", "sslkey"})
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_FIRST_PAUSE_SECONDS = 0.2
_MAX_PAUSE_SECONDS = 2.0


class Unsupported(Exception):
    """The URL or the server asks for something this client does not speak."""


class WireUnreachable(Exception):
    """The server cannot be reached, refused the login, or dropped the connection."""


class ServerError(Exception):
    """The server answered a statement with an error."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message


# A NamedTuple and plain classes: ``dataclasses`` costs a fresh interpreter about 8 ms.
class Target(NamedTuple):
    """Where and how to connect, from a libpq (or SQLAlchemy) URL."""

    host: str
    port: int
    user: str
    database: str
    password: str | None = None
    sslmode: str = "prefer"
    sslrootcert: str | None = None
    sslcert: str | None = None
    sslkey: str | None = None

    def __repr__(self) -> str:
        return f"Target({self.user}@{self.host}:{self.port}/{self.database})"

    @classmethod
    def parse(cls, url: str) -> Target:
        """The target of ``postgresql[+driver]://user:password@host:port/database?sslmode=...``;
        :class:`Unsupported` for what this client does not speak."""
        scheme, _, _ = url.partition("://")
        if scheme.split("+", 1)[0] not in ("postgresql", "postgres"):
            raise Unsupported(f"not a PostgreSQL URL: {scheme}://")
        parts = urlsplit(url)
        try:
            port = parts.port or 5432
        except ValueError:
            raise Unsupported("unparsable port") from None
        host = parts.hostname
        if not host or "," in parts.netloc:
            raise Unsupported("a Unix socket or several hosts")
        query = dict(parse_qsl(parts.query))
        unknown = set(query) - _URL_PARAMETERS
        if unknown:
            raise Unsupported(f"URL parameters {sorted(unknown)}")
        sslmode = query.get("sslmode", "prefer")
        if sslmode not in _SSL_MODES:
            raise Unsupported(f"sslmode={sslmode}")
        user = unquote(parts.username or "") or os.environ.get("USER", "postgres")
        return cls(
            host=host,
            port=port,
            user=user,
            database=unquote(parts.path.lstrip("/")) or user,
            password=unquote(parts.password) if parts.password is not None else None,
            sslmode=sslmode,
            sslrootcert=query.get("sslrootcert"),
            sslcert=query.get("sslcert"),
            sslkey=query.get("sslkey"),
        )


# --- SCRAM-SHA-256 (RFC 5802, RFC 7677), without channel binding --------------------------------


class ScramClient:
    """One SCRAM-SHA-256 exchange: first message, final message, server signature check."""

    def __init__(self, password: str, nonce: str | None = None, user: str = "") -> None:
        self._password = password
        self.nonce = nonce or base64.b64encode(os.urandom(18)).decode()
        # PostgreSQL takes the user from the startup message and ignores this one (libpq: "").
        self.user = user
        self._first_bare = ""
        self._server_signature = b""

    def first(self) -> str:
        self._first_bare = f"n={self.user},r={self.nonce}"
        return "n,," + self._first_bare

    def final(self, server_first: str) -> str:
        import hashlib
        import hmac

        attributes = dict(item.split("=", 1) for item in server_first.split(","))
        nonce, salt, iterations = attributes["r"], attributes["s"], int(attributes["i"])
        if not nonce.startswith(self.nonce):
            raise WireUnreachable("SCRAM: the server's nonce does not extend ours")
        salted = hashlib.pbkdf2_hmac(
            "sha256", self._password.encode(), base64.b64decode(salt), iterations
        )
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        without_proof = f"c=biws,r={nonce}"
        message = f"{self._first_bare},{server_first},{without_proof}".encode()
        signature = hmac.digest(hashlib.sha256(client_key).digest(), message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        self._server_signature = hmac.digest(server_key, message, "sha256")
        return f"{without_proof},p={base64.b64encode(proof).decode()}"

    def verify(self, server_final: str) -> None:
        import hmac

        attributes = dict(item.split("=", 1) for item in server_final.split(","))
        verifier = base64.b64decode(attributes.get("v", ""))
        if not hmac.compare_digest(verifier, self._server_signature):
            raise WireUnreachable("SCRAM: the server's signature does not match")


def md5_password(user: str, password: str, salt: bytes) -> str:
    """The answer to an MD5 password request."""
    import hashlib

    inner = hashlib.md5((password + user).encode()).hexdigest()
    return "md5" + hashlib.md5(inner.encode() + salt).hexdigest()


# --- the connection ----------------------------------------------------------------------------


def _message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def _cstring(text: str) -> bytes:
    return text.encode() + b"\0"


def _error_fields(body: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return fields


class Connection:
    """One session; :meth:`query` runs a statement and returns its rows as text."""

    def __init__(self, sock: socket.socket | ssl.SSLSocket) -> None:
        self._sock = sock
        self._buffer = b""

    @classmethod
    def connect(
        cls, target: Target, timeout: float, wait_seconds: float = 0.0, statement_timeout: float = 0
    ) -> Connection:
        """Log in, waiting up to ``wait_seconds`` for a server that refuses or is starting up;
        every socket operation has the deadline ``timeout``."""
        deadline = time.monotonic() + wait_seconds
        pause = _FIRST_PAUSE_SECONDS
        while True:
            try:
                return cls._login(target, timeout, statement_timeout)
            except (ConnectionRefusedError, ServerError) as err:
                retry = isinstance(err, ConnectionRefusedError) or (
                    err.sqlstate == _CANNOT_CONNECT_NOW
                )
                if not retry or time.monotonic() + pause > deadline:
                    raise WireUnreachable(str(err)) from None
            time.sleep(pause)
            pause = min(pause * 2, _MAX_PAUSE_SECONDS)

    @classmethod
    def _login(cls, target: Target, timeout: float, statement_timeout: float) -> Connection:
        try:
            sock = socket.create_connection((target.host, target.port), timeout)
        except ConnectionRefusedError:
            raise
        except OSError as err:
            raise WireUnreachable(str(err)) from None
        try:
            connection = cls(_secure(sock, target))
            parameters = {"user": target.user, "database": target.database}
            if statement_timeout:
                parameters["statement_timeout"] = str(round(statement_timeout * 1000))
            startup = struct.pack("!i", PROTOCOL_3_0) + b"".join(
                _cstring(key) + _cstring(value) for key, value in parameters.items()
            )
            connection._send(struct.pack("!i", len(startup) + 5) + startup + b"\0")
            connection._authenticate(target)
            return connection
        except BaseException:
            sock.close()
            raise

    def _authenticate(self, target: Target) -> None:
        scram: ScramClient | None = None
        while True:
            kind, body = self._receive()
            if kind == b"E":
                fields = _error_fields(body)
                raise ServerError(fields.get("C", ""), fields.get("M", "login refused"))
            if kind == b"Z":
                return
            if kind != b"R":
                continue  # ParameterStatus, BackendKeyData, notices
            (code,) = struct.unpack("!i", body[:4])
            if code == _AUTH_OK:
                continue
            if code in (_AUTH_CLEARTEXT, _AUTH_MD5, _AUTH_SASL) and target.password is None:
                raise WireUnreachable("the server asks for a password and the URL has none")
            password = target.password or ""
            if code == _AUTH_CLEARTEXT:
                self._send(_message(b"p", _cstring(password)))
            elif code == _AUTH_MD5:
                self._send(_message(b"p", _cstring(md5_password(target.user, password, body[4:]))))
            elif code == _AUTH_SASL:
                mechanisms = [m.decode() for m in body[4:].split(b"\0") if m]
                if SCRAM not in mechanisms:
                    raise Unsupported(f"SASL mechanisms {mechanisms}")
                scram = ScramClient(password)
                first = scram.first().encode()
                self._send(_message(b"p", _cstring(SCRAM) + struct.pack("!i", len(first)) + first))
            elif code == _AUTH_SASL_CONTINUE and scram is not None:
                self._send(_message(b"p", scram.final(body[4:].decode()).encode()))
            elif code == _AUTH_SASL_FINAL and scram is not None:
                scram.verify(body[4:].decode())
            else:
                raise Unsupported(f"authentication method {code}")

    def query(self, sql: str, parameters: Sequence[str] = ()) -> list[tuple[str | None, ...]]:
        """Run ``sql`` (``$1``, ``$2``, ... placeholders, text parameters); its rows as text
        (None for NULL). :class:`ServerError` when the server refuses it."""
        bind = (
            b"\0\0"  # unnamed portal, unnamed statement
            + struct.pack("!hh", 0, len(parameters))
            + b"".join(struct.pack("!i", len(v.encode())) + v.encode() for v in parameters)
            + struct.pack("!h", 0)
        )
        self._send(
            _message(b"P", b"\0" + _cstring(sql) + struct.pack("!h", 0))
            + _message(b"B", bind)
            + _message(b"E", b"\0" + struct.pack("!i", 0))
            + _message(b"S", b"")
        )
        rows: list[tuple[str | None, ...]] = []
        failure: ServerError | None = None
        while True:
            kind, body = self._receive()
            if kind == b"D":
                rows.append(_row(body))
            elif kind == b"E":
                fields = _error_fields(body)
                failure = ServerError(fields.get("C", ""), fields.get("M", "statement failed"))
            elif kind == b"Z":
                if failure is not None:
                    raise failure
                return rows

    def close(self) -> None:
        with contextlib.suppress(WireUnreachable):
            self._send(_message(b"X", b""))
        self._sock.close()

    def _send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as err:
            raise WireUnreachable(f"connection lost: {err}") from None

    def _read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            try:
                chunk = self._sock.recv(65536)
            except OSError as err:
                raise WireUnreachable(f"connection lost: {err}") from None
            if not chunk:
                raise WireUnreachable("the server closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _receive(self) -> tuple[bytes, bytes]:
        header = self._read(5)
        (length,) = struct.unpack("!i", header[1:])
        return header[:1], self._read(length - 4)


def _row(body: bytes) -> tuple[str | None, ...]:
    (count,) = struct.unpack("!h", body[:2])
    values: list[str | None] = []
    at = 2
    for _ in range(count):
        (size,) = struct.unpack("!i", body[at : at + 4])
        at += 4
        if size < 0:
            values.append(None)
        else:
            values.append(body[at : at + size].decode())
            at += size
    return tuple(values)


def _secure(sock: socket.socket, target: Target) -> socket.socket | ssl.SSLSocket:
    """TLS as ``sslmode`` asks (libpq's meanings); the plain socket for disable and allow."""
    if target.sslmode in ("disable", "allow"):
        return sock
    sock.sendall(struct.pack("!ii", 8, SSL_REQUEST))
    answer = sock.recv(1)
    if answer != b"S":
        if target.sslmode == "prefer":
            return sock
        raise WireUnreachable(f"the server does not accept TLS (sslmode={target.sslmode})")
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # libpq: require verifies the chain only when a root certificate is given.
    verify = target.sslmode in ("verify-ca", "verify-full") or (
        target.sslmode == "require" and target.sslrootcert is not None
    )
    context.check_hostname = target.sslmode == "verify-full"
    if not verify:
        context.verify_mode = ssl.CERT_NONE
    elif target.sslrootcert:
        context.load_verify_locations(target.sslrootcert)
    else:
        context.load_default_certs()
    if target.sslcert:
        context.load_cert_chain(target.sslcert, target.sslkey)
    try:
        return context.wrap_socket(sock, server_hostname=target.host)
    except (ssl.SSLError, OSError) as err:
        raise WireUnreachable(f"TLS: {err}") from None
