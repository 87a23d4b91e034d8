"""The node endpoint on the real stack: mTLS on every service, the recorded address, refusals.

The suite's stack wrote a dev CA and pairs under its state dir (tests/support/stack.py), so the
in-process node-1 agent and the node-2 subprocess serve mTLS, and a client with the client pair
is let in. Each call here goes to the product's own services (Logs, Exec, Files) with an empty
request: a refused client never reaches a servicer, a let-in one gets the servicer's answer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor

from berth.config import Settings
from berth.db.reads import ContainerReads
from berth.endpoint.certs import ensure_dev_certificates
from berth.endpoint.client import EndpointError, EndpointUnreachable, call_failure, open_channel
from berth.node_api import exec_pb2, files_pb2, logs_pb2
from tests.integration.conftest import ROOT, TEST_CODEC_KEYS, Stack
from tests.integration.node_agent import NodeAgent
from tests.integration.test_cli import BERTH, cli_env
from tests.integration.test_exec import running_container

# How long a let-in call may take to be answered (a servicer that waits for more input than an
# empty request gives answers when the deadline ends it: still past the TLS check).
ANSWER_SECONDS = 10.0


def methods() -> list[MethodDescriptor]:
    """Every method the endpoint serves, from the product's protos."""
    return [
        method
        for module in (logs_pb2, exec_pb2, files_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    ]


async def call_empty(channel: grpc.aio.Channel, method: MethodDescriptor) -> None:
    """Call ``method`` with an empty request (or request stream) and read the whole answer."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    requests = iter([b""])
    if method.client_streaming and method.server_streaming:
        async for _ in channel.stream_stream(path)(requests, timeout=ANSWER_SECONDS):
            pass
    elif method.client_streaming:
        await channel.stream_unary(path)(requests, timeout=ANSWER_SECONDS)
    elif method.server_streaming:
        async for _ in channel.unary_stream(path)(b"", timeout=ANSWER_SECONDS):
            pass
    else:
        await channel.unary_unary(path)(b"", timeout=ANSWER_SECONDS)


async def outcome(
    channel: grpc.aio.Channel, method: MethodDescriptor, endpoint: str
) -> EndpointUnreachable | EndpointError | None:
    """What calling ``method`` came to: refused, the daemon's error, or None (answered)."""
    try:
        await call_empty(channel, method)
    except grpc.aio.AioRpcError as err:
        return call_failure(err, endpoint)
    return None


@pytest.fixture
async def reader(settings: Settings) -> AsyncIterator[ContainerReads]:
    reads = await ContainerReads.connect(settings.database_url.get_secret_value(), 10.0, 10.0)
    yield reads
    await reads.close()


@pytest.fixture
async def node1_endpoint(workers: None, reader: ContainerReads, settings: Settings) -> str:
    endpoint = await reader.node_endpoint(settings.node)
    assert endpoint is not None
    return endpoint


def other_ca_pair(directory: Path) -> grpc.ChannelCredentials:
    """The suite's CA trusted, but a client pair signed by another CA."""
    ensure_dev_certificates(directory / "other")
    return grpc.ssl_channel_credentials(
        root_certificates=(directory / "ours" / "ca.pem").read_bytes(),
        private_key=(directory / "other" / "client-key.pem").read_bytes(),
        certificate_chain=(directory / "other" / "client.pem").read_bytes(),
    )


@pytest.mark.parametrize("client", ["no certificate", "another CA", "plaintext"])
async def test_node_endpoint_client_without_valid_certificate_is_refused_on_every_method(
    node1_endpoint: str, settings: Settings, tmp_path: Path, client: str
) -> None:
    ca = (settings.state_dir / "endpoint" / "ca.pem").read_bytes()
    (tmp_path / "ours").mkdir()
    (tmp_path / "ours" / "ca.pem").write_bytes(ca)
    if client == "no certificate":
        channel = grpc.aio.secure_channel(node1_endpoint, grpc.ssl_channel_credentials(ca))
    elif client == "another CA":
        channel = grpc.aio.secure_channel(node1_endpoint, other_ca_pair(tmp_path))
    else:
        channel = grpc.aio.insecure_channel(node1_endpoint)

    async with channel:
        outcomes = {m.full_name: await outcome(channel, m, node1_endpoint) for m in methods()}

    assert len(outcomes) == 6
    refused = {name: isinstance(found, EndpointUnreachable) for name, found in outcomes.items()}
    assert refused == dict.fromkeys(outcomes, True), outcomes


async def test_node_endpoint_client_with_suite_client_pair_reaches_every_servicer(
    node1_endpoint: str, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="berth.endpoint.errors"):
        async with open_channel(settings, node1_endpoint) as channel:
            outcomes = {m.full_name: await outcome(channel, m, node1_endpoint) for m in methods()}

    reached = {name: not isinstance(found, EndpointUnreachable) for name, found in outcomes.items()}
    assert reached == dict.fromkeys(outcomes, True), outcomes
    # The in-process agent logged each call with who asked.
    lines = [r.getMessage() for r in caplog.records if r.getMessage().endswith("(berth-client)")]
    served = [
        m
        for m in methods()
        if not (
            isinstance(found := outcomes[m.full_name], EndpointError)
            and found.code is grpc.StatusCode.UNIMPLEMENTED  # a service not registered yet
        )
    ]
    paths = {f"/{m.containing_service.full_name}/{m.name}" for m in served}
    assert paths
    assert {line.split()[2] for line in lines} >= paths, lines


async def test_node_endpoint_missing_container_is_the_daemons_not_found(
    node1_endpoint: str, settings: Settings
) -> None:
    request = logs_pb2.LogsRequest(container_id="no-such-container-h1")
    async with open_channel(settings, node1_endpoint) as channel:
        stub = channel.unary_stream(
            "/berth.node.v1.Logs/Read",
            request_serializer=logs_pb2.LogsRequest.SerializeToString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in stub(request, timeout=ANSWER_SECONDS):
                pass

    failure = call_failure(raised.value, node1_endpoint)
    assert isinstance(failure, EndpointError)
    if failure.code is grpc.StatusCode.UNIMPLEMENTED:
        pytest.skip("the Logs service is not served yet")
    assert failure.code is grpc.StatusCode.NOT_FOUND
    assert failure.error_type == "NotFound"


async def wait_for_endpoint(
    reader: ContainerReads, node: str, unlike: str | None, timeout: float = 30.0
) -> str:
    deadline = time.monotonic() + timeout
    while True:
        found = await reader.node_endpoint(node)
        if found is not None and found != unlike:
            return found
        assert time.monotonic() < deadline, f"{node} recorded no new endpoint ({found})"
        await asyncio.sleep(0.2)


async def test_node_endpoint_agent_restart_records_new_port_that_clients_find(
    node2_agent: NodeAgent, node2_settings: Settings, reader: ContainerReads
) -> None:
    if not node2_agent.alive:
        await node2_agent.start()
    before = await wait_for_endpoint(reader, "node-2", None)

    node2_agent.stop()
    assert await reader.node_endpoint("node-2") is None  # a clean stop leaves at once
    await node2_agent.start()
    after = await wait_for_endpoint(reader, "node-2", before)

    assert after.startswith("127.0.0.1:")
    assert after != before
    logs_read = methods()[0]
    assert logs_read.full_name == "berth.node.v1.Logs.Read"
    async with open_channel(node2_settings, after) as channel:
        assert not isinstance(await outcome(channel, logs_read, after), EndpointUnreachable)
    async with open_channel(node2_settings, before) as channel:
        assert isinstance(await outcome(channel, logs_read, before), EndpointUnreachable)


def test_node_endpoint_agent_outside_loopback_without_tls_refuses_to_start(
    settings: Settings, tmp_path: Path
) -> None:
    # A state dir of its own: no dev certificates there, and none set.
    env = {
        **os.environ,
        "BERTH_NODE": "node-3",
        "BERTH_STATE_DIR": str(tmp_path),
        "BERTH_DATABASE_URL": settings.database_url.get_secret_value(),
        "BERTH_TEMPORAL_ADDRESS": settings.temporal_address,
        "BERTH_TEMPORAL_NAMESPACE": settings.temporal_namespace,
        "BERTH_CODEC_KEYS": TEST_CODEC_KEYS,
        "BERTH_ENDPOINT_ADDRESS": "0.0.0.0:0",
    }
    for name in ("CA", "CERT", "KEY"):
        env.pop(f"BERTH_ENDPOINT_TLS_{name}_FILE", None)

    done = subprocess.run(
        [sys.executable, "-m", "berth.worker", "node"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode != 0
    assert "node endpoint: no TLS certificate to serve 0.0.0.0:0" in done.stderr


def berth_with(stack: Stack, extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BERTH), *args],
        capture_output=True,
        text=True,
        env={**cli_env(stack), **extra},
        timeout=60,
    )


async def test_node_endpoint_cli_with_client_pair_of_another_ca_exits_125_naming_the_endpoint(
    stack: Stack, tmp_path: Path
) -> None:
    name = await running_container(stack)
    ensure_dev_certificates(tmp_path)
    other = {
        "BERTH_ENDPOINT_TLS_CA_FILE": str(stack.settings.state_dir / "endpoint" / "ca.pem"),
        "BERTH_ENDPOINT_TLS_CERT_FILE": str(tmp_path / "client.pem"),
        "BERTH_ENDPOINT_TLS_KEY_FILE": str(tmp_path / "client-key.pem"),
    }

    done = await asyncio.to_thread(berth_with, stack, other, "exec", name, "true")

    assert done.returncode == 125, done.stderr
    assert done.stderr.startswith("berth: cannot reach the node endpoint")
    assert "127.0.0.1:" in done.stderr


async def test_node_endpoint_cli_with_incomplete_tls_settings_exits_125_naming_them(
    stack: Stack,
) -> None:
    name = await running_container(stack)
    partial = {"BERTH_ENDPOINT_TLS_CA_FILE": "/nonexistent/ca.pem"}

    done = await asyncio.to_thread(berth_with, stack, partial, "exec", name, "true")

    assert done.returncode == 125, done.stderr
    assert "endpoint_tls_cert_file, endpoint_tls_key_file must be set too" in done.stderr
