"""Settings: connection security from configuration, and secrets that never print."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from sqlalchemy import text
from temporalio.service import TLSConfig

from berth.client import tls_config
from berth.codec import generate_keys
from berth.config import Settings
from berth.db.session import make_engine
from berth.errors import InvalidParameter


def test_settings_repr_and_dump_hide_the_api_key_and_codec_keys() -> None:
    keys = generate_keys()
    settings = Settings(temporal_api_key="tk-very-secret", codec_keys=keys)

    shown = repr(settings) + str(settings.model_dump())

    assert "tk-very-secret" not in shown
    assert keys not in shown and "keys" in keys


FAKE_PASSWORD = "pw-3b1f-never-print-me"


def closed_loopback_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_settings_database_url_with_a_password_never_shows_in_repr_or_dump() -> None:
    url = f"postgresql+psycopg://berth:{FAKE_PASSWORD}@127.0.0.1:5432/berth"
    settings = Settings(database_url=url)

    shown = repr(settings) + str(settings) + str(settings.model_dump())
    shown += settings.model_dump_json()

    assert FAKE_PASSWORD not in shown
    assert settings.database_url.get_secret_value() == url


def test_settings_database_url_from_the_environment_is_a_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "BERTH_DATABASE_URL", f"postgresql+psycopg://berth:{FAKE_PASSWORD}@127.0.0.1/berth"
    )

    assert FAKE_PASSWORD not in repr(Settings())


async def test_make_engine_connection_error_to_a_closed_port_has_no_password() -> None:
    port = closed_loopback_port()
    settings = Settings(
        database_url=f"postgresql+psycopg://berth:{FAKE_PASSWORD}@127.0.0.1:{port}/berth"
    )
    engine = make_engine(settings.database_url)
    try:
        with pytest.raises(Exception) as raised:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    finally:
        await engine.dispose()

    shown = f"{raised.value}\n{raised.value!r}\n{raised.getrepr()}\n{engine!r}\n{engine.url}"
    assert str(port) in shown  # the error is about this connection
    assert FAKE_PASSWORD not in shown


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
