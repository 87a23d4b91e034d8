"""Settings: connection security from configuration, and secrets that never print."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.service import TLSConfig

from berth.client import tls_config
from berth.codec import generate_keys
from berth.config import Settings
from berth.errors import InvalidParameter


def test_settings_repr_and_dump_hide_the_api_key_and_codec_keys() -> None:
    keys = generate_keys()
    settings = Settings(temporal_api_key="tk-very-secret", codec_keys=keys)

    shown = repr(settings) + str(settings.model_dump())

    assert "tk-very-secret" not in shown
    assert keys not in shown and "keys" in keys


def test_tls_config_is_off_by_default() -> None:
    assert tls_config(Settings()) is False


def test_tls_config_with_ca_and_client_pair_is_mutual_tls(tmp_path: Path) -> None:
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_bytes(f"-- {name} --".encode())

    config = tls_config(
        Settings(
            temporal_tls_ca_file=tmp_path / "ca.pem",
            temporal_tls_cert_file=tmp_path / "client.pem",
            temporal_tls_key_file=tmp_path / "client.key",
            temporal_tls_server_name="temporal.internal",
        )
    )

    assert isinstance(config, TLSConfig)
    assert config.server_root_ca_cert == b"-- ca.pem --"
    assert (config.client_cert, config.client_private_key) == (
        b"-- client.pem --",
        b"-- client.key --",
    )
    assert config.domain == "temporal.internal"


def test_tls_config_with_a_client_cert_but_no_key_is_invalid_parameter(tmp_path: Path) -> None:
    (tmp_path / "client.pem").write_bytes(b"cert")

    with pytest.raises(InvalidParameter, match="temporal_tls_key_file"):
        tls_config(Settings(temporal_tls_cert_file=tmp_path / "client.pem"))
