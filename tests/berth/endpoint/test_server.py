"""The node endpoint's mTLS on a real grpc.aio server: who is let in, and when it will not serve.

The server is the endpoint's own credentials and interceptor with a tiny echo handler of this
file; the product's services are checked on the real stack (tests/integration/
test_node_endpoint.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from berth.config import Settings
from berth.endpoint.certs import ensure_dev_certificates
from berth.endpoint.client import EndpointUnreachable, call_failure, open_channel
from berth.endpoint.errors import CallGuard
from berth.endpoint.server import advertised_address, server_credentials
from berth.endpoint.tls import dev_directory
from berth.errors import Forbidden, InvalidParameter

ECHO = "/berth.test.Tiny/Echo"


async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


def settings_for(state_dir: Path, **fields: object) -> Settings:
    return Settings(state_dir=state_dir, **fields)  # type: ignore[arg-type]


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    ensure_dev_certificates(dev_directory(tmp_path))
    return tmp_path


@pytest.fixture
async def endpoint(state_dir: Path) -> AsyncIterator[str]:
    """The address of an mTLS server with the dev stack's node pair."""
    server = grpc.aio.server(interceptors=[CallGuard()])
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "berth.test.Tiny", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
            ),
        )
    )
    credentials = server_credentials(settings_for(state_dir))
    assert credentials is not None
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(None)


async def call(channel: grpc.aio.Channel) -> bytes:
    async with channel:
        answer: bytes = await channel.unary_unary(ECHO)(b"hi", timeout=30)
        return answer


async def refused(channel: grpc.aio.Channel, endpoint: str) -> EndpointUnreachable:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(channel)
    failure = call_failure(raised.value, endpoint)
    assert isinstance(failure, EndpointUnreachable)
    return failure


async def test_endpoint_client_with_dev_client_pair_is_served_and_logged_by_cn(
    state_dir: Path, endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="berth.endpoint.errors"):
        answer = await call(open_channel(settings_for(state_dir), endpoint))

    assert answer == b"hi"
    assert any("(berth-client)" in record.getMessage() for record in caplog.records)


async def test_endpoint_client_without_certificate_is_refused(
    state_dir: Path, endpoint: str
) -> None:
    ca = (state_dir / "endpoint" / "ca.pem").read_bytes()
    channel = grpc.aio.secure_channel(endpoint, grpc.ssl_channel_credentials(ca))

    await refused(channel, endpoint)


async def test_endpoint_client_with_pair_of_another_ca_is_refused(
    state_dir: Path, endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = tmp_path_factory.mktemp("other")
    ensure_dev_certificates(other)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(state_dir / "endpoint" / "ca.pem").read_bytes(),
        private_key=(other / "client-key.pem").read_bytes(),
        certificate_chain=(other / "client.pem").read_bytes(),
    )

    await refused(grpc.aio.secure_channel(endpoint, credentials), endpoint)


async def test_endpoint_plaintext_client_is_refused(endpoint: str) -> None:
    await refused(grpc.aio.insecure_channel(endpoint), endpoint)


async def test_endpoint_node_of_another_ca_is_refused_by_the_client(
    state_dir: Path, endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = tmp_path_factory.mktemp("other")
    ensure_dev_certificates(other)
    ours = state_dir / "endpoint"
    # Our own client pair (the server would let it in), but trusting only the other CA.
    settings = settings_for(
        state_dir,
        endpoint_tls_ca_file=other / "ca.pem",
        endpoint_tls_cert_file=ours / "client.pem",
        endpoint_tls_key_file=ours / "client-key.pem",
    )

    failure = await refused(open_channel(settings, endpoint), endpoint)

    assert f"at {endpoint}" in str(failure)


def test_open_channel_without_client_pair_is_unreachable_naming_the_settings(
    tmp_path: Path,
) -> None:
    with pytest.raises(EndpointUnreachable, match="BERTH_ENDPOINT_TLS_CERT_FILE"):
        open_channel(settings_for(tmp_path), "127.0.0.1:7000")


def test_server_credentials_no_tls_material_on_loopback_refuses_to_serve(tmp_path: Path) -> None:
    with pytest.raises(Forbidden, match="no TLS certificate"):
        server_credentials(settings_for(tmp_path, endpoint_address="127.0.0.1:0"))


def test_server_credentials_no_tls_material_outside_loopback_refuses_to_serve(
    tmp_path: Path,
) -> None:
    with pytest.raises(Forbidden, match=re.escape("0.0.0.0:7000")):
        server_credentials(settings_for(tmp_path, endpoint_address="0.0.0.0:7000"))


def test_server_credentials_insecure_loopback_flag_outside_loopback_refuses_to_serve(
    tmp_path: Path,
) -> None:
    settings = settings_for(
        tmp_path, endpoint_address="0.0.0.0:7000", endpoint_insecure_loopback=True
    )

    with pytest.raises(Forbidden, match="not a loopback address"):
        server_credentials(settings)


def test_server_credentials_insecure_loopback_flag_on_loopback_serves_plaintext(
    tmp_path: Path,
) -> None:
    settings = settings_for(
        tmp_path, endpoint_address="127.0.0.1:0", endpoint_insecure_loopback=True
    )

    assert server_credentials(settings) is None


def test_server_credentials_unreadable_key_is_invalid_parameter(state_dir: Path) -> None:
    settings = settings_for(
        state_dir,
        endpoint_tls_ca_file=state_dir / "endpoint" / "ca.pem",
        endpoint_tls_cert_file=state_dir / "endpoint" / "node.pem",
        endpoint_tls_key_file=state_dir / "endpoint" / "missing-key.pem",
    )

    with pytest.raises(InvalidParameter, match=re.escape("missing-key.pem")):
        server_credentials(settings)


@pytest.mark.parametrize(
    ("listen", "advertised"),
    [("127.0.0.1:0", "127.0.0.1:4321"), ("[::1]:0", "[::1]:4321"), ("node-1:0", "node-1:4321")],
)
def test_advertised_address_is_listening_host_with_port_got(
    tmp_path: Path, listen: str, advertised: str
) -> None:
    assert advertised_address(settings_for(tmp_path, endpoint_address=listen), 4321) == advertised


def test_advertised_address_setting_wins(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path, endpoint_address="0.0.0.0:7000", endpoint_advertise="node-1.example:7000"
    )

    assert advertised_address(settings, 7000) == "node-1.example:7000"


@pytest.mark.parametrize("listen", ["0.0.0.0:7000", "[::]:7000"])
def test_advertised_address_wildcard_without_setting_is_refused(
    tmp_path: Path, listen: str
) -> None:
    with pytest.raises(InvalidParameter, match="endpoint_advertise"):
        advertised_address(settings_for(tmp_path, endpoint_address=listen), 7000)
