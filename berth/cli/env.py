"""The settings the light verbs need, from the environment as ``berth.config.Settings`` reads them,
without importing pydantic-settings (about 100 ms, most of ``berth ps``' budget).

Only what a PostgreSQL read and a Temporal call over the HTTP API need: verbs that need more use
``Context.settings`` (the full ``Settings``). tests/berth/cli/test_env.py checks that both read
the same values and defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from berth.cli.context import BerthFailure

# Settings' defaults (berth.config.Settings), for the fields read here.
DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/berth"
DEFAULT_CALL_TIMEOUT_SECONDS = 10.0
DEFAULT_CLIENT_WAIT_SECONDS = 30.0
DEFAULT_NAMESPACE = "default"
DEFAULT_TEMPORAL_ADDRESS = "127.0.0.1:7233"
DEFAULT_TASK_QUEUE = "berth"
DEFAULT_STATE_DIR = "/var/lib/berth"
# Where a frontend serves its HTTP API by default: Temporal's own defaults pair gRPC 7233 with
# HTTP 7243, and the dev stack keeps that distance for any gRPC port (dev.stack.temporal_server).
HTTP_PORT_OFFSET = 10
# pydantic's words for booleans.
_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}


class ReadSettings(NamedTuple):
    """``database_url``, ``runtime_call_timeout_seconds`` and ``client_wait_seconds``."""

    database_url: str
    runtime_call_timeout_seconds: float
    client_wait_seconds: float


class TemporalHttpSettings(NamedTuple):
    """The Temporal connection's settings, for its HTTP API (``BERTH_TEMPORAL_HTTP_ADDRESS``)."""

    http_address: str
    # True when the address was derived from BERTH_TEMPORAL_ADDRESS (not set by the user): a
    # refused connection there means "no HTTP API", and the CLI falls back to the SDK.
    derived: bool
    namespace: str
    task_queue: str
    # None: no TLS; else the CA file (None: system roots), client pair and server name.
    tls: bool
    tls_ca_file: str | None
    tls_cert_file: str | None
    tls_key_file: str | None
    tls_server_name: str | None
    api_key: str | None
    codec_keys: str | None
    codec_keys_file: str | None


def environment() -> dict[str, str]:
    """``BERTH_*`` by upper-case name (pydantic-settings matches them case-insensitively)."""
    return {name.upper(): value for name, value in os.environ.items()}


def _seconds(env: dict[str, str], field: str, default: float, positive: bool) -> float:
    name = f"BERTH_{field.upper()}"
    if name not in env:
        return default
    try:
        value = float(env[name])
    except ValueError:
        raise BerthFailure(f"bad settings: {field}: not a number: {env[name]!r}") from None
    if value < 0 or (positive and value == 0):
        bound = "greater than 0" if positive else "0 or more"
        raise BerthFailure(f"bad settings: {field}: must be {bound}, not {value:g}")
    return value


def _flag(env: dict[str, str], field: str) -> bool | None:
    value = env.get(f"BERTH_{field.upper()}")
    if value is None:
        return None
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise BerthFailure(f"bad settings: {field}: not a boolean: {value!r}")


def read_settings() -> ReadSettings:
    """The read verbs' settings from ``BERTH_*``; ``BerthFailure`` for a malformed value."""
    env = environment()
    return ReadSettings(
        database_url=env.get("BERTH_DATABASE_URL", DEFAULT_DATABASE_URL),
        runtime_call_timeout_seconds=_seconds(
            env, "runtime_call_timeout_seconds", DEFAULT_CALL_TIMEOUT_SECONDS, positive=True
        ),
        client_wait_seconds=_seconds(
            env, "client_wait_seconds", DEFAULT_CLIENT_WAIT_SECONDS, positive=False
        ),
    )


def default_http_address(temporal_address: str) -> str | None:
    """The HTTP API's address beside a gRPC ``host:port`` (port + 10: 7233 -> 7243), or None
    when the address has no numeric port."""
    host, _, port = temporal_address.rpartition(":")
    if not host or not port.isdigit() or int(port) + HTTP_PORT_OFFSET > 65535:
        return None
    return f"{host}:{int(port) + HTTP_PORT_OFFSET}"


def temporal_http_settings() -> TemporalHttpSettings | None:
    """The HTTP API's settings: at ``BERTH_TEMPORAL_HTTP_ADDRESS``, or, when that is not set,
    beside ``BERTH_TEMPORAL_ADDRESS`` (``default_http_address``; ``derived``) unless TLS is on.
    None (the SDK) when it is set empty or no address can be derived.

    TLS as ``berth.client.tls_config`` decides it: on with ``temporal_tls``, any TLS file, or an
    API key (a bearer secret never goes out in cleartext) unless ``temporal_tls`` is set false.
    """
    env = environment()
    files = [env.get(f"BERTH_TEMPORAL_TLS_{part}_FILE") or None for part in ("CA", "CERT", "KEY")]
    api_key = env.get("BERTH_TEMPORAL_API_KEY") or None
    chosen = _flag(env, "temporal_tls")
    tls = bool(chosen) or any(files[:2]) or (api_key is not None and chosen is None)
    if files[1] and not files[2]:
        raise BerthFailure(
            "bad settings: temporal_tls_key_file: required with temporal_tls_cert_file"
        )
    address = env.get("BERTH_TEMPORAL_HTTP_ADDRESS")
    derived = address is None
    if derived and not tls:
        address = default_http_address(
            env.get("BERTH_TEMPORAL_ADDRESS", DEFAULT_TEMPORAL_ADDRESS).strip()
        )
    # With TLS no address is guessed: a TLS frontend's HTTP API is usually elsewhere (another
    # host or port), and a probe of a filtered port would cost its timeout on every call.
    if not address:
        return None
    return TemporalHttpSettings(
        http_address=address,
        derived=derived,
        namespace=env.get("BERTH_TEMPORAL_NAMESPACE", DEFAULT_NAMESPACE),
        task_queue=env.get("BERTH_TASK_QUEUE", DEFAULT_TASK_QUEUE),
        tls=tls,
        tls_ca_file=files[0],
        tls_cert_file=files[1],
        tls_key_file=files[2],
        tls_server_name=env.get("BERTH_TEMPORAL_TLS_SERVER_NAME") or None,
        api_key=api_key,
        codec_keys=env.get("BERTH_CODEC_KEYS") or None,
        codec_keys_file=env.get("BERTH_CODEC_KEYS_FILE") or None,
    )


class EndpointClientSettings(NamedTuple):
    """What a client of the node endpoint reads (``berth.endpoint.tls.EndpointSettings``)."""

    state_dir: Path
    endpoint_tls_ca_file: Path | None
    endpoint_tls_cert_file: Path | None
    endpoint_tls_key_file: Path | None
    endpoint_insecure_loopback: bool


def endpoint_settings() -> EndpointClientSettings:
    """The node endpoint client's settings from ``BERTH_*``, as ``Settings`` reads them:
    the client pair's files and ``endpoint_insecure_loopback`` (``berth.endpoint.client``)."""
    env = environment()
    files = [env.get(f"BERTH_ENDPOINT_TLS_{part}_FILE") or None for part in ("CA", "CERT", "KEY")]
    ca, cert, key = (Path(file) if file else None for file in files)
    return EndpointClientSettings(
        state_dir=Path(env.get("BERTH_STATE_DIR", DEFAULT_STATE_DIR)),
        endpoint_tls_ca_file=ca,
        endpoint_tls_cert_file=cert,
        endpoint_tls_key_file=key,
        endpoint_insecure_loopback=bool(_flag(env, "endpoint_insecure_loopback")),
    )
