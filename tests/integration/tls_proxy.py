"""A TLS (mTLS) endpoint in front of the Temporal dev server, for testing Berth's TLS settings.

The dev server speaks plaintext gRPC only, so tests put Debian's nginx in front of it:
``grpc_pass`` to the dev server, a server certificate for 127.0.0.1/localhost and
``ssl_verify_client on`` against a CA the test generates. nginx runs as a child process of the
test on a free loopback port, with its own config, pid file, logs and temp dirs under the given
directory (never the system nginx service), and stops by its pid.

The certificates are made with :mod:`berth.endpoint.certs` (the node endpoint's dev PKI): a CA,
a server pair and a client pair it signs, and a second, unrelated CA with a client pair of its
own (a certificate the proxy must reject).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from berth.endpoint.certs import (
    certificate_pem,
    issue_pair,
    new_authority,
    write_file,
    write_pair,
)

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


def make_tls_material(directory: Path) -> TlsMaterial:
    """Generate the proxy's CA, server and client pairs, and a foreign CA's client pair."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = new_authority("berth-test-ca")
    foreign_ca = new_authority("foreign-ca")
    material = TlsMaterial(
        ca_cert=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
        foreign_ca_cert=directory / "foreign-ca.pem",
        foreign_client_cert=directory / "foreign-client.pem",
        foreign_client_key=directory / "foreign-client-key.pem",
    )
    write_file(material.ca_cert, certificate_pem(ca.certificate))
    write_file(material.foreign_ca_cert, certificate_pem(foreign_ca.certificate))
    # The server's names: what the tests dial (the proxy's loopback address).
    write_pair(directory, "server", *issue_pair(ca, "node", ("127.0.0.1", "localhost")))
    write_pair(directory, "client", *issue_pair(ca, "client"))
    write_pair(directory, "foreign-client", *issue_pair(foreign_ca, "client"))
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
