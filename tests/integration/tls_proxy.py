"""A TLS (mTLS) endpoint in front of the Temporal dev server, for testing Berth's TLS settings.

The dev server speaks plaintext gRPC only, so tests put Debian's nginx in front of it:
``grpc_pass`` to the dev server, a server certificate for 127.0.0.1/localhost and
``ssl_verify_client on`` against a CA the test generates. nginx runs as a child process of the
test on a free loopback port, with its own config, pid file, logs and temp dirs under the given
directory (never the system nginx service), and stops by its pid.

The certificates are made here with ``cryptography``: a CA, a server pair and a client pair it
signs, and a second, unrelated CA with a client pair of its own (a certificate the proxy must
reject).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NGINX = "/usr/sbin/nginx"
# The dev server's frontend, which the workers and the proxy reach directly.


@dataclass(frozen=True)
class TlsMaterial:
    """PEM files for one proxy: its CA and pairs, and a foreign CA's client pair."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    # Signed by a CA the proxy does not trust.
    foreign_ca_cert: Path
    foreign_client_cert: Path
    foreign_client_key: Path


@dataclass(frozen=True)
class TlsProxy:
    """A running nginx that terminates (m)TLS and forwards gRPC to the dev server."""

    address: str
    pid: int
    error_log: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Private keys are never world-readable, not even a test's.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(pem)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    usage: x509.ObjectIdentifier | None,
    alt_names: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    """A certificate for ``key``; self-signed CA when ``issuer`` is None, else a leaf."""
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is None:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_tls_material(directory: Path) -> TlsMaterial:
    """Generate the proxy's CA, server and client pairs, and a foreign CA's client pair."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _new_key()
    ca = _issue("berth-test-ca", ca_key, None, ca_key, usage=None)
    server_key = _new_key()
    server = _issue(
        "berth-test-temporal",
        server_key,
        ca,
        ca_key,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        alt_names=[
            x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
            x509.DNSName("localhost"),
        ],
    )
    client_key = _new_key()
    client = _issue(
        "berth-test-client", client_key, ca, ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH
    )
    foreign_ca_key = _new_key()
    foreign_ca = _issue("foreign-ca", foreign_ca_key, None, foreign_ca_key, usage=None)
    foreign_client_key = _new_key()
    foreign_client = _issue(
        "berth-test-client",
        foreign_client_key,
        foreign_ca,
        foreign_ca_key,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    material = TlsMaterial(
        ca_cert=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        foreign_ca_cert=directory / "foreign-ca.pem",
        foreign_client_cert=directory / "foreign-client.pem",
        foreign_client_key=directory / "foreign-client.key",
    )
    _write_cert(material.ca_cert, ca)
    _write_cert(material.server_cert, server)
    _write_key(material.server_key, server_key)
    _write_cert(material.client_cert, client)
    _write_key(material.client_key, client_key)
    _write_cert(material.foreign_ca_cert, foreign_ca)
    _write_cert(material.foreign_client_cert, foreign_client)
    _write_key(material.foreign_client_key, foreign_client_key)
    return material


# A refused client certificate is answered as a gRPC server answers it, UNAUTHENTICATED in a
# trailers-only response (nginx's own gRPC gateway pattern), not an HTML page.
_GRPC_REFUSALS = """\
        # A refused client certificate is answered as a gRPC server answers it, UNAUTHENTICATED
        # in a trailers-only response (nginx's own gRPC gateway pattern), not an HTML page.
        error_page 496 = @no_certificate;
        error_page 495 = @bad_certificate;
"""
_GRPC_REFUSAL_LOCATIONS = """\
        location @no_certificate {
            default_type application/grpc;
            add_header grpc-status 16 always;
            add_header grpc-message "client certificate required" always;
            return 200;
        }
        location @bad_certificate {
            default_type application/grpc;
            add_header grpc-status 16 always;
            add_header grpc-message "client certificate not trusted" always;
            return 200;
        }
"""


def nginx_config(
    directory: Path, port: int, material: TlsMaterial, upstream: str, http_api: bool = False
) -> str:
    """An nginx config that owns only paths under ``directory`` and listens on loopback.

    ``http_api``: forward plain HTTP (the frontend's HTTP API) instead of gRPC.
    """
    temp = directory / "temp"
    forward = (
        f"proxy_pass http://{upstream}; proxy_read_timeout 300s;"
        if http_api
        else f"grpc_pass grpc://{upstream};"
    )
    # An HTTP client gets nginx's own 400 for a refused certificate.
    refusals = "" if http_api else _GRPC_REFUSALS
    refusal_locations = "" if http_api else _GRPC_REFUSAL_LOCATIONS
    return f"""
daemon off;
master_process on;
worker_processes 1;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} info;
events {{ worker_connections 256; }}
http {{
    access_log {directory / "access.log"};
    client_body_temp_path {temp / "body"};
    proxy_temp_path {temp / "proxy"};
    fastcgi_temp_path {temp / "fastcgi"};
    uwsgi_temp_path {temp / "uwsgi"};
    scgi_temp_path {temp / "scgi"};
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {material.server_cert};
        ssl_certificate_key {material.server_key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_client_certificate {material.ca_cert};
        ssl_verify_client on;
        # Temporal's long polls (a workflow's result) hold a call open for many seconds.
        grpc_read_timeout 300s;
        grpc_send_timeout 300s;
{refusals}        location / {{
            {forward}
        }}
{refusal_locations}    }}
}}
"""


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop nginx's master by its pid (it stops its workers), SIGKILL if it does not."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)


@contextlib.contextmanager
def tls_proxy(
    directory: Path, port: int, material: TlsMaterial, upstream: str, http_api: bool = False
) -> Iterator[TlsProxy]:
    """Run nginx as an mTLS gRPC (or, with ``http_api``, HTTP) proxy on ``127.0.0.1:port``
    until the block ends."""
    if shutil.which(NGINX) is None:
        raise RuntimeError(f"{NGINX} not found: scripts/dev installs Debian's nginx")
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (directory / "temp" / name).mkdir(parents=True, exist_ok=True)
    config = directory / "nginx.conf"
    config.write_text(nginx_config(directory, port, material, upstream, http_api))
    error_log = directory / "error.log"
    process = subprocess.Popen(
        # -e: even the errors before the config is read go to our log, not the system's.
        [NGINX, "-p", str(directory), "-c", str(config), "-e", str(error_log)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _accepts(port):
            if process.poll() is not None or time.monotonic() > deadline:
                log = error_log.read_text() if error_log.exists() else ""
                raise RuntimeError(f"nginx did not come up on 127.0.0.1:{port}:\n{log}")
            time.sleep(0.05)
        yield TlsProxy(address=f"127.0.0.1:{port}", pid=process.pid, error_log=error_log)
    finally:
        _stop(process)
