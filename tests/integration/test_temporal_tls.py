"""Berth's Temporal TLS settings against a real mTLS endpoint (nginx in front of the dev server).

Only the client under test goes through the proxy; the session's workers connect directly. A
client with the CA and a client certificate the proxy's CA signed starts a real container; every
other client is refused with a typed error naming the address, and nothing was started: the
container stays ``created`` with no task, mount or netns, and no start workflow exists.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.service import RPCError, RPCStatusCode

from berth.client import BerthClient, connect
from berth.config import Settings
from berth.contract import ContainerConfig
from berth.errors import BerthError, Forbidden, Unavailable
from berth.runtime.image import DEFAULT_REF
from berth.steps import start_workflow_id
from tests.integration.conftest import Stack, free_port
from tests.integration.tls_proxy import TlsMaterial, TlsProxy, make_tls_material, tls_proxy


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return make_tls_material(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def proxy(
    tmp_path_factory: pytest.TempPathFactory, material: TlsMaterial, settings: Settings
) -> Iterator[TlsProxy]:
    # In front of this suite's own Temporal: its workers poll there, never a developer's.
    with tls_proxy(
        tmp_path_factory.mktemp("nginx"),
        free_port(),
        material,
        upstream=settings.temporal_address,
    ) as running:
        yield running


def through_proxy(
    settings: Settings,
    proxy: TlsProxy,
    *,
    tls: bool = True,
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
) -> Settings:
    """The session's settings, but Temporal reached through ``proxy`` with these TLS files."""
    return settings.model_copy(
        update={
            "temporal_address": proxy.address,
            "temporal_tls": tls,
            "temporal_tls_ca_file": ca,
            "temporal_tls_cert_file": cert,
            "temporal_tls_key_file": key,
            # The session's client already serves the metrics port; a second one cannot bind it.
            "metrics_address": None,
        }
    )


async def refused_start(stack: Stack, settings: Settings) -> tuple[str, BerthError]:
    """Create a container directly, then try to start it as a client with ``settings``."""
    container_id = await stack.create()
    with pytest.raises(BerthError) as refused:
        async with await BerthClient.connect(settings) as berth:
            await berth.start(container_id)
    return container_id, refused.value


async def assert_nothing_started(stack: Stack, container_id: str) -> None:
    record = await stack.berth.get(container_id)
    assert (record.state, record.pid) == ("created", None)
    assert (await stack.footprint(container_id)).empty
    with pytest.raises(RPCError) as missing:
        await stack.berth.temporal.get_workflow_handle(start_workflow_id(container_id)).describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND


async def test_connect_with_ca_and_client_cert_starts_a_container_through_the_proxy(
    stack: Stack, proxy: TlsProxy, material: TlsMaterial
) -> None:
    settings = through_proxy(
        stack.settings,
        proxy,
        ca=material.ca_cert,
        cert=material.client_cert,
        key=material.client_key,
    )

    async with await BerthClient.connect(settings) as berth:
        created = await berth.create(
            ContainerConfig(
                name=f"tls-{free_port()}",
                image=DEFAULT_REF,
                node=stack.settings.node,
                cmd=["sleep", "3600"],
            )
        )
        stack.created.append(created.id)
        started = await berth.start(created.id)

    task = await stack.containerd.get_task(created.id)
    assert (task.status, task.pid) == ("RUNNING", started.pid)
    assert (await stack.berth.get(created.id)).state == "running"
    # The calls went through the proxy, over TLS, and were passed on (200).
    access = (proxy.error_log.parent / "access.log").read_text()
    assert '"POST /temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution' in access


async def test_connect_with_a_ca_bundle_of_old_and_new_ca_trusts_the_server(
    settings: Settings, proxy: TlsProxy, material: TlsMaterial, tmp_path: Path
) -> None:
    # During a CA rotation the CA file holds both CAs; the server's (the second) is found.
    bundle = tmp_path / "ca-bundle.pem"
    bundle.write_bytes(material.foreign_ca_cert.read_bytes() + material.ca_cert.read_bytes())
    rotating = through_proxy(
        settings, proxy, ca=bundle, cert=material.client_cert, key=material.client_key
    )

    client = await connect(rotating)

    described = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=settings.temporal_namespace)
    )
    assert described.namespace_info.name == settings.temporal_namespace


async def test_connect_without_client_cert_is_forbidden_and_starts_nothing(
    stack: Stack, proxy: TlsProxy, material: TlsMaterial
) -> None:
    settings = through_proxy(stack.settings, proxy, ca=material.ca_cert)

    container_id, error = await refused_start(stack, settings)

    assert isinstance(error, Forbidden)
    assert proxy.address in error.message
    assert "client certificate required" in error.message
    await assert_nothing_started(stack, container_id)


async def test_connect_with_client_cert_of_an_untrusted_ca_is_forbidden_and_starts_nothing(
    stack: Stack, proxy: TlsProxy, material: TlsMaterial
) -> None:
    settings = through_proxy(
        stack.settings,
        proxy,
        ca=material.ca_cert,
        cert=material.foreign_client_cert,
        key=material.foreign_client_key,
    )

    container_id, error = await refused_start(stack, settings)

    assert isinstance(error, Forbidden)
    assert proxy.address in error.message
    assert "client certificate not trusted" in error.message
    await assert_nothing_started(stack, container_id)


async def test_connect_not_trusting_the_server_ca_is_unavailable_and_starts_nothing(
    stack: Stack, proxy: TlsProxy, material: TlsMaterial
) -> None:
    # A valid client pair, but the CA this client trusts did not sign the server's certificate.
    settings = through_proxy(
        stack.settings,
        proxy,
        ca=material.foreign_ca_cert,
        cert=material.client_cert,
        key=material.client_key,
    )

    container_id, error = await refused_start(stack, settings)

    assert isinstance(error, Unavailable)
    assert proxy.address in error.message
    assert "UnknownIssuer" in error.message
    await assert_nothing_started(stack, container_id)


async def test_connect_with_tls_off_against_the_tls_port_is_unavailable_and_starts_nothing(
    stack: Stack, proxy: TlsProxy
) -> None:
    settings = through_proxy(stack.settings, proxy, tls=False)

    container_id, error = await refused_start(stack, settings)

    assert isinstance(error, Unavailable)
    assert proxy.address in error.message
    await assert_nothing_started(stack, container_id)


async def test_connect_with_nothing_listening_is_unavailable_naming_the_address() -> None:
    address = f"127.0.0.1:{free_port()}"

    with pytest.raises(Unavailable, match=address):
        # A closed port is what a restarting frontend shows: waited out, here for 1 s.
        await BerthClient.connect(Settings(temporal_address=address, client_wait_seconds=1))


async def test_connect_with_an_api_key_and_no_tls_settings_never_sends_the_key_in_cleartext() -> (
    None
):
    key = "berth-test-api-key-5f0c"
    received = bytearray()

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.extend(await reader.read(65536))
        writer.close()

    server = await asyncio.start_server(record, "127.0.0.1", 0)
    address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        with pytest.raises(Unavailable, match=address):
            await BerthClient.connect(Settings(temporal_address=address, temporal_api_key=key))
    finally:
        server.close()
        await server.wait_closed()

    # A TLS handshake record (content type 22), not an HTTP/2 preface carrying the bearer header.
    assert received[:1] == b"\x16"
    assert key.encode() not in received
