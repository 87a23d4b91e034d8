"""How a failed connect to Temporal becomes a typed Berth error (``berth.client.connect_error``).

The real failures (a TLS proxy refusing a certificate, an untrusted server, TLS off, nothing
listening) are tried in ``tests/integration/test_temporal_tls.py``; these pin the mapping itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from berth.client import connect_error, tls_config
from berth.config import Settings
from berth.errors import Forbidden, InvalidParameter, Unavailable

ADDRESS = "temporal.example:7233"


@pytest.mark.parametrize("status", [RPCStatusCode.UNAUTHENTICATED, RPCStatusCode.PERMISSION_DENIED])
def test_connect_error_refused_identity_status_is_forbidden(status: RPCStatusCode) -> None:
    error = connect_error(ADDRESS, RPCError("no entry", status, b""))

    assert isinstance(error, Forbidden)
    assert ADDRESS in error.message and "no entry" in error.message


def test_connect_error_other_status_is_unavailable_naming_the_address() -> None:
    error = connect_error(ADDRESS, RPCError("gone", RPCStatusCode.UNAVAILABLE, b""))

    assert isinstance(error, Unavailable)
    assert ADDRESS in error.message


def test_connect_error_core_message_with_unauthenticated_status_is_forbidden() -> None:
    # The shape the SDK's core gives a connect whose first call a gateway refused.
    message = (
        "Failed client connect: `get_system_info` call error after connection: Status { code: "
        'Unauthenticated, message: "client certificate required", metadata: MetadataMap {} }'
    )

    error = connect_error(ADDRESS, RuntimeError(message))

    assert isinstance(error, Forbidden)
    assert "client certificate required" in error.message


def test_connect_error_core_transport_message_is_unavailable() -> None:
    message = "Failed client connect: Server connection error: tonic::transport::Error(Transport)"

    error = connect_error(ADDRESS, RuntimeError(message))

    assert isinstance(error, Unavailable)
    assert ADDRESS in error.message


def test_tls_config_with_an_unreadable_ca_file_is_invalid_parameter(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameter, match="temporal_tls_ca_file"):
        tls_config(Settings(temporal_tls_ca_file=tmp_path / "missing.pem"))


def test_tls_config_with_an_api_key_and_no_tls_setting_is_tls() -> None:
    assert isinstance(tls_config(Settings(temporal_api_key="key")), TLSConfig)


def test_tls_config_with_an_api_key_and_tls_set_false_is_off() -> None:
    assert tls_config(Settings(temporal_api_key="key", temporal_tls=False)) is False


def test_tls_config_with_an_api_key_from_the_environment_is_tls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BERTH_TEMPORAL_API_KEY", "key")

    assert isinstance(tls_config(Settings()), TLSConfig)
