"""The light verbs' settings read as ``berth.config.Settings`` reads them, from one environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth.cli.context import BerthFailure
from berth.cli.env import endpoint_settings, read_settings, temporal_http_settings
from berth.client import tls_config
from berth.config import Settings

CASES = [
    {},
    {
        "BERTH_DATABASE_URL": "postgresql+psycopg://u:p@db.example:6543/x?sslmode=require",
        "berth_client_wait_seconds": "0",
        "BERTH_RUNTIME_CALL_TIMEOUT_SECONDS": "2.5",
    },
]


def clear(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("BERTH_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("environ", CASES)
def test_read_settings_equal_settings(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clear(monkeypatch)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    settings = Settings()

    light = read_settings()

    assert light.database_url == settings.database_url.get_secret_value()
    assert light.runtime_call_timeout_seconds == settings.runtime_call_timeout_seconds
    assert light.client_wait_seconds == settings.client_wait_seconds


def test_read_settings_refuses_what_settings_refuse(monkeypatch: pytest.MonkeyPatch) -> None:
    clear(monkeypatch)
    monkeypatch.setenv("BERTH_RUNTIME_CALL_TIMEOUT_SECONDS", "0")

    with pytest.raises(BerthFailure, match="runtime_call_timeout_seconds: must be greater than 0"):
        read_settings()
    with pytest.raises(ValueError):
        Settings()


def test_temporal_http_settings_unset_with_tls_guess_no_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clear(monkeypatch)
    monkeypatch.setenv("BERTH_TEMPORAL_ADDRESS", "ns.example:7233")
    monkeypatch.setenv("BERTH_TEMPORAL_TLS", "true")

    assert temporal_http_settings() is None


def test_temporal_http_settings_set_empty_mean_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    clear(monkeypatch)
    monkeypatch.setenv("BERTH_TEMPORAL_HTTP_ADDRESS", "")

    assert temporal_http_settings() is None


@pytest.mark.parametrize(
    ("temporal_address", "http_address"),
    [(None, "127.0.0.1:7243"), ("temporal.example:7233", "temporal.example:7243"),
     ("[::1]:17233", "[::1]:17243"), ("no-port", None)],
)  # fmt: skip
def test_temporal_http_settings_unset_derive_the_address_beside_the_grpc_one(
    temporal_address: str | None, http_address: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    clear(monkeypatch)
    if temporal_address is not None:
        monkeypatch.setenv("BERTH_TEMPORAL_ADDRESS", temporal_address)

    light = temporal_http_settings()

    if http_address is None:
        assert light is None
    else:
        assert light is not None
        assert (light.http_address, light.derived) == (http_address, True)


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"BERTH_TEMPORAL_TLS": "true"},
        {"BERTH_TEMPORAL_API_KEY": "secret"},
        {"BERTH_TEMPORAL_API_KEY": "secret", "BERTH_TEMPORAL_TLS": "false"},
        {"BERTH_TEMPORAL_TLS_CA_FILE": "{ca}", "BERTH_TEMPORAL_TLS": "no"},
        {"BERTH_TEMPORAL_TLS_CERT_FILE": "{ca}", "BERTH_TEMPORAL_TLS_KEY_FILE": "{ca}"},
    ],
)
def test_temporal_http_settings_choose_tls_as_the_client_does(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clear(monkeypatch)
    pem = tmp_path / "ca.pem"
    pem.write_text("not parsed here")
    monkeypatch.setenv("BERTH_TEMPORAL_HTTP_ADDRESS", "127.0.0.1:7243")
    monkeypatch.setenv("BERTH_TEMPORAL_NAMESPACE", "ns-1")
    for name, value in environ.items():
        monkeypatch.setenv(name, value.format(ca=pem))
    settings = Settings()

    light = temporal_http_settings()

    assert light is not None
    assert light.http_address == settings.temporal_http_address
    assert not light.derived
    assert light.namespace == settings.temporal_namespace
    assert light.tls == (tls_config(settings) is not False)


def test_temporal_http_settings_task_queue_is_the_settings_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clear(monkeypatch)
    assert (light := temporal_http_settings()) is not None
    assert light.task_queue == Settings().task_queue
    monkeypatch.setenv("BERTH_TASK_QUEUE", "berth-tenant-2")
    assert (light := temporal_http_settings()) is not None
    assert light.task_queue == Settings().task_queue == "berth-tenant-2"


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {
            "BERTH_STATE_DIR": "/srv/berth-x",
            "BERTH_ENDPOINT_TLS_CA_FILE": "/etc/berth/ca.pem",
            "BERTH_ENDPOINT_TLS_CERT_FILE": "/etc/berth/client.pem",
            "berth_endpoint_tls_key_file": "/etc/berth/client-key.pem",
            "BERTH_ENDPOINT_INSECURE_LOOPBACK": "yes",
        },
        {"BERTH_ENDPOINT_INSECURE_LOOPBACK": "0"},
    ],
)
def test_endpoint_settings_equal_settings(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clear(monkeypatch)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    settings = Settings()

    light = endpoint_settings()

    assert light.state_dir == settings.state_dir
    assert light.endpoint_tls_ca_file == settings.endpoint_tls_ca_file
    assert light.endpoint_tls_cert_file == settings.endpoint_tls_cert_file
    assert light.endpoint_tls_key_file == settings.endpoint_tls_key_file
    assert light.endpoint_insecure_loopback is settings.endpoint_insecure_loopback


def test_endpoint_settings_bad_flag_is_berth_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    clear(monkeypatch)
    monkeypatch.setenv("BERTH_ENDPOINT_INSECURE_LOOPBACK", "maybe")

    with pytest.raises(BerthFailure, match="endpoint_insecure_loopback"):
        endpoint_settings()
