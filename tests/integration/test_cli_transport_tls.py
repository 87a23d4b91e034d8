"""The CLI's HTTP transport under Berth's Temporal TLS settings, against a real mTLS endpoint (nginx
in front of the suite's HTTP API): with the CA and a client pair the proxy trusts, the start runs;
every other client gets exit 125 with one line, and nothing was started."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from berth.contract import ContainerState
from tests.integration.conftest import Stack, free_port
from tests.integration.test_cli_transport import run, state_of
from tests.integration.tls_proxy import TlsMaterial, TlsProxy, make_tls_material, tls_proxy
from tests.support.stack import SuiteStack


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return make_tls_material(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def http_proxy(
    tmp_path_factory: pytest.TempPathFactory, material: TlsMaterial, suite_stack: SuiteStack
) -> Iterator[TlsProxy]:
    # In front of this suite's own Temporal's HTTP API, never a developer's.
    with tls_proxy(
        tmp_path_factory.mktemp("nginx-http"),
        free_port(),
        material,
        upstream=suite_stack.temporal.http_address,
        http_api=True,
    ) as running:
        yield running


def tls_env(proxy: TlsProxy, **files: object) -> dict[str, str]:
    env = {
        "BERTH_TEMPORAL_HTTP_ADDRESS": proxy.address,
        "BERTH_TEMPORAL_TLS": "true",
        "BERTH_CLIENT_WAIT_SECONDS": "0",
    }
    names = {"ca": "CA", "cert": "CERT", "key": "KEY"}
    env |= {f"BERTH_TEMPORAL_TLS_{names[k]}_FILE": str(v) for k, v in files.items()}
    return env


async def test_cli_start_over_mtls_http_api_with_ca_and_client_pair_runs_the_saga(
    stack: Stack, http_proxy: TlsProxy, material: TlsMaterial
) -> None:
    container_id = await stack.create()
    env = tls_env(
        http_proxy, ca=material.ca_cert, cert=material.client_cert, key=material.client_key
    )

    started = await run(stack, "start", container_id, **env)

    assert (started.returncode, started.stderr) == (0, "")
    assert await state_of(stack, container_id) is ContainerState.RUNNING


@pytest.mark.parametrize("client", ["no client pair", "foreign client pair", "server not trusted"])
async def test_cli_start_over_mtls_http_api_refused_exits_125_and_starts_nothing(
    stack: Stack, http_proxy: TlsProxy, material: TlsMaterial, client: str
) -> None:
    container_id = await stack.create()
    files = {
        "no client pair": {"ca": material.ca_cert},
        "foreign client pair": {
            "ca": material.ca_cert,
            "cert": material.foreign_client_cert,
            "key": material.foreign_client_key,
        },
        "server not trusted": {"cert": material.client_cert, "key": material.client_key},
    }[client]

    refused = await run(stack, "start", container_id, **tls_env(http_proxy, **files))

    assert refused.returncode == 125, refused.stderr
    (line,) = refused.stderr.splitlines()
    assert line.startswith(f"berth: cannot connect to Temporal at {http_proxy.address} (HTTP API)")
    assert await state_of(stack, container_id) is ContainerState.CREATED
