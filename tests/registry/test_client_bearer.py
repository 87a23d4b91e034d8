"""The client's bearer-token flow (``WWW-Authenticate: Bearer``), against a stand-in registry
and token service on loopback (aiohttp.web): distribution 2.8's own token auth needs a token
server of its own, so the real-registry tests (tests/integration/test_image_pull.py) cover
anonymous and basic auth, and this one the token exchange."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from berth.errors import Forbidden, NotFound
from berth.registry.client import OCI_MANIFEST, RegistryClient
from berth.registry.reference import parse_reference

TOKEN = "t0k3n"
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST}).encode()


@pytest.fixture
async def registry() -> AsyncIterator[tuple[str, list[str]]]:
    """A registry that wants a bearer token, and its token service; the token requests seen."""
    asked: list[str] = []
    runner: web.AppRunner | None = None

    async def token(request: web.Request) -> web.Response:
        asked.append(request.query_string)
        expected = "Basic " + base64.b64encode(b"berth:pw").decode()
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401)
        return web.json_response({"token": TOKEN})

    async def manifest(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            address = request.host
            challenge = (
                f'Bearer realm="http://{address}/token",service="stand-in",'
                f'scope="repository:{request.match_info["repo"]}:pull"'
            )
            return web.Response(status=401, headers={"WWW-Authenticate": challenge})
        if request.match_info["tag"] != "v1":
            return web.Response(status=404, text='{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
        return web.Response(body=MANIFEST, content_type=OCI_MANIFEST)

    app = web.Application()
    app.router.add_get("/token", token)
    app.router.add_get("/v2/{repo:.+}/manifests/{tag}", manifest)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"127.0.0.1:{port}", asked
    finally:
        await runner.cleanup()


def _auth_file(path: Path, address: str) -> Path:
    token = base64.b64encode(b"berth:pw").decode()
    path.write_text(json.dumps({"auths": {address: {"auth": token}}}))
    return path


async def test_client_answers_a_bearer_challenge_with_a_token_got_with_its_credentials(
    registry: tuple[str, list[str]], tmp_path: Path
) -> None:
    address, asked = registry
    ref = parse_reference(f"{address}/team/app:v1")
    async with RegistryClient([address], _auth_file(tmp_path / "c.json", address)) as client:
        fetched = await client.manifest(ref)
        again = await client.manifest(ref)  # the token is kept for the repository

    assert fetched.data == MANIFEST and again.data == MANIFEST
    assert len(asked) == 1
    assert asked == ["service=stand-in&scope=repository:team/app:pull"]


async def test_client_without_credentials_for_a_bearer_registry_is_forbidden(
    registry: tuple[str, list[str]], tmp_path: Path
) -> None:
    address, _ = registry
    ref = parse_reference(f"{address}/team/app:v1")
    async with RegistryClient([address], tmp_path / "none.json", node="node-1") as client:
        with pytest.raises(Forbidden, match="has no credentials"):
            await client.manifest(ref)


async def test_client_unknown_tag_behind_a_token_is_not_found_naming_it(
    registry: tuple[str, list[str]], tmp_path: Path
) -> None:
    address, _ = registry
    ref = parse_reference(f"{address}/team/app:v9")
    async with RegistryClient([address], _auth_file(tmp_path / "c.json", address)) as client:
        with pytest.raises(NotFound, match="team/app:v9"):
            await client.manifest(ref)
