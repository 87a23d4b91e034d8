"""Which TLS files each side of the node endpoint uses, and what is loopback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from berth.endpoint.certs import ensure_dev_certificates
from berth.endpoint.tls import TlsFiles, TlsSettingsError, dev_directory, is_loopback, tls_files


@dataclass
class Chosen:
    state_dir: Path
    endpoint_tls_ca_file: Path | None = None
    endpoint_tls_cert_file: Path | None = None
    endpoint_tls_key_file: Path | None = None
    endpoint_insecure_loopback: bool = False


def test_tls_files_explicit_settings_win_over_dev_files(tmp_path: Path) -> None:
    ensure_dev_certificates(dev_directory(tmp_path))
    chosen = Chosen(tmp_path, Path("/etc/ca.pem"), Path("/etc/c.pem"), Path("/etc/k.pem"))

    assert tls_files(chosen, "client") == TlsFiles(
        Path("/etc/ca.pem"), Path("/etc/c.pem"), Path("/etc/k.pem")
    )


def test_tls_files_cert_without_key_is_refused_naming_the_missing_setting(tmp_path: Path) -> None:
    chosen = Chosen(tmp_path, Path("/etc/ca.pem"), Path("/etc/c.pem"))

    with pytest.raises(TlsSettingsError, match="endpoint_tls_key_file"):
        tls_files(chosen, "node")


def test_tls_files_nothing_set_uses_dev_files_of_the_role(tmp_path: Path) -> None:
    ensure_dev_certificates(dev_directory(tmp_path))

    files = tls_files(Chosen(tmp_path), "node")

    found = tmp_path / "endpoint"
    assert files == TlsFiles(found / "ca.pem", found / "node.pem", found / "node-key.pem")


def test_tls_files_nothing_set_and_no_dev_files_is_none(tmp_path: Path) -> None:
    assert tls_files(Chosen(tmp_path), "client") is None


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:0", True),
        ("127.3.4.5:7000", True),
        ("[::1]:7000", True),
        ("localhost:7000", True),
        ("0.0.0.0:7000", False),
        ("[::]:7000", False),
        ("10.1.2.3:7000", False),
        ("node-1.example:7000", False),
    ],
)
def test_is_loopback_address_kinds(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback
