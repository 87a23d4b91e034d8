"""Which certificate files the node endpoint's two sides use, and what counts as loopback.

Light on purpose (the CLI's client imports it): the standard library only.

Each side has a CA, a certificate and its key: the agent its node pair, a client its client
pair, both signed by the deployment's CA. Set explicitly (``endpoint_tls_ca_file``,
``endpoint_tls_cert_file``, ``endpoint_tls_key_file``: all three), or else the dev stack's files
under ``<state_dir>/endpoint/`` (``berth.endpoint.certs`` writes them) when they are all there.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

Role = Literal["node", "client"]
# The dev stack's certificates, under the state dir.
DEV_DIRECTORY = "endpoint"
CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"


class TlsSettingsError(ValueError):
    """The endpoint's TLS settings are incomplete (a cert without its key, no CA...)."""


class EndpointSettings(Protocol):
    """What the endpoint's TLS set-up reads (``berth.config.Settings`` has it all)."""

    @property
    def state_dir(self) -> Path: ...

    @property
    def endpoint_tls_ca_file(self) -> Path | None: ...

    @property
    def endpoint_tls_cert_file(self) -> Path | None: ...

    @property
    def endpoint_tls_key_file(self) -> Path | None: ...

    @property
    def endpoint_insecure_loopback(self) -> bool: ...


@dataclass(frozen=True)
class TlsFiles:
    """A side's CA, certificate and key files (PEM)."""

    ca: Path
    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        """The CA, certificate and key bytes; ``OSError`` if one cannot be read."""
        return self.ca.read_bytes(), self.cert.read_bytes(), self.key.read_bytes()


def dev_directory(state_dir: Path) -> Path:
    """Where the dev stack keeps the endpoint's CA and pairs."""
    return state_dir / DEV_DIRECTORY


def dev_files(state_dir: Path, role: Role) -> TlsFiles:
    """The dev stack's files for ``role``: ``node.pem``/``node-key.pem`` or the client's."""
    directory = dev_directory(state_dir)
    return TlsFiles(directory / CA_FILE, directory / f"{role}.pem", directory / f"{role}-key.pem")


def tls_files(settings: EndpointSettings, role: Role) -> TlsFiles | None:
    """The files ``role`` uses: the explicit settings, else the dev stack's, else None.

    Raises:
        TlsSettingsError: some of the three files are set but not all.
    """
    chosen = {
        "endpoint_tls_ca_file": settings.endpoint_tls_ca_file,
        "endpoint_tls_cert_file": settings.endpoint_tls_cert_file,
        "endpoint_tls_key_file": settings.endpoint_tls_key_file,
    }
    if any(chosen.values()):
        missing = [name for name, path in chosen.items() if not path]
        if missing:
            raise TlsSettingsError(
                f"node endpoint TLS: {', '.join(missing)} must be set too (all three or none)"
            )
        ca, cert, key = chosen.values()
        assert ca is not None and cert is not None and key is not None
        return TlsFiles(ca, cert, key)
    files = dev_files(settings.state_dir, role)
    if all(path.is_file() for path in (files.ca, files.cert, files.key)):
        return files
    return None


def split_address(address: str) -> tuple[str, str]:
    """``host:port`` (``[v6]:port`` too) as host and port."""
    host, _, port = address.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), port


def is_loopback(address: str) -> bool:
    """Whether ``host:port`` names this machine's loopback (127.0.0.0/8, ::1, localhost)."""
    host, _ = split_address(address)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
