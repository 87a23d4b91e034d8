"""A client of the OCI distribution API (v2): manifests and blobs, as a pull needs them.

HTTPS always, except for registries the node lists as insecure (``insecure_registries``), which
are spoken to over plain HTTP. Authentication follows the registry's ``WWW-Authenticate``
challenge: anonymous first; on ``Bearer`` a token from the realm (with the node's credentials
for that registry when it has some, else anonymous), cached per repository; on ``Basic`` the
credentials themselves. Credentials come from a Docker ``config.json`` (:mod:`berth.registry.auth`).

Blobs are never held whole in memory: :meth:`RegistryClient.blob` yields the body in chunks.
Errors are Berth's: a missing manifest or blob is ``NotFound`` naming the reference, refused
credentials ``Forbidden``, a registry that does not answer (or answers 5xx / 429) ``Unavailable``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import aiohttp

from berth.errors import (
    DEFAULT_GRACE_SECONDS,
    Forbidden,
    InvalidParameter,
    NotFound,
    System,
    Unavailable,
    Waiting,
)
from berth.registry.auth import Credentials, load_credentials
from berth.registry.reference import Reference

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
# A manifest or config larger than this is refused (containerd's own limit for manifests).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Fetched:
    """A manifest or index as the registry served it, with the digest of its bytes."""

    media_type: str
    data: bytes
    digest: str


@dataclass
class _Auth:
    """What authorises requests to one repository: a header, once a challenge was answered."""

    header: str | None = None
    tried: set[str] = field(default_factory=set)


class RegistryClient:
    """Manifests and blobs from OCI registries; one instance per pull (or per agent)."""

    def __init__(
        self,
        insecure_registries: Iterable[str] = (),
        auth_file: Path | None = None,
        node: str = "",
        timeout_seconds: float = 30.0,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        allowed_registries: Iterable[str] | None = None,
    ) -> None:
        """``allowed_registries``: when given, the only registries spoken to (others:
        ``NotFound``, nothing sent)."""
        self._allowed = None if allowed_registries is None else frozenset(allowed_registries)
        self._insecure = frozenset(insecure_registries)
        self._auth_file = auth_file
        self._node = node
        self._grace = grace_seconds
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout_seconds, sock_read=timeout_seconds
        )
        self._session: aiohttp.ClientSession | None = None
        self._auth: dict[tuple[str, str], _Auth] = {}

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    def _base(self, ref: Reference) -> str:
        if self._allowed is not None and not {ref.domain, ref.endpoint} & self._allowed:
            raise NotFound(
                f"image {ref} is not on node {self._node!r}, and its registry {ref.domain} is "
                f"not among the registries the node pulls from ({', '.join(sorted(self._allowed))})"
            )
        scheme = (
            "http" if ref.endpoint in self._insecure or ref.domain in self._insecure else "https"
        )
        return f"{scheme}://{ref.endpoint}/v2/{ref.repository}"

    def _unavailable(self, ref: Reference, text: str) -> Unavailable:
        return Unavailable.waiting(
            f"registry {ref.endpoint} for {ref}: {text}",
            Waiting(f"registry {ref.endpoint}", self._node, self._grace),
        )

    # --- requests with authentication -------------------------------------------------------

    @asynccontextmanager
    async def _get(
        self, ref: Reference, url: str, headers: Mapping[str, str]
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """GET ``url``, answering the registry's auth challenge once; the 2xx response."""
        auth = self._auth.setdefault((ref.endpoint, ref.repository), _Auth())
        while True:
            sent = dict(headers)
            if auth.header:
                sent["Authorization"] = auth.header
            try:
                async with self._http().get(url, headers=sent) as response:
                    if response.status == 401:
                        challenge = response.headers.get("WWW-Authenticate", "")
                        await self._answer(ref, challenge, auth)
                        continue
                    await self._check(ref, response)
                    yield response
                    return
            except aiohttp.ClientConnectorCertificateError as err:
                raise System(
                    f"registry {ref.endpoint}: its TLS certificate is not trusted on node "
                    f"{self._node!r} ({err.certificate_error})"
                ) from None
            except (aiohttp.ClientConnectionError, TimeoutError) as err:
                raise self._unavailable(ref, str(err) or type(err).__name__) from None

    async def _answer(self, ref: Reference, challenge: str, auth: _Auth) -> None:
        """Set ``auth.header`` from the challenge; Forbidden if this was tried already."""
        scheme = challenge.split(" ", 1)[0].lower()
        credentials = load_credentials(ref.auth_key, self._auth_file)
        attempt = f"{scheme}:{credentials is not None}"
        if attempt in auth.tried:
            raise self._denied(ref, credentials)
        auth.tried.add(attempt)
        if scheme == "basic":
            if credentials is None:
                raise self._denied(ref, None)
            auth.header = _basic(credentials)
        elif scheme == "bearer":
            auth.header = f"Bearer {await self._token(ref, challenge, credentials)}"
        else:
            raise Forbidden(f"registry {ref.endpoint} asks for unsupported auth {scheme!r}")

    def _denied(self, ref: Reference, credentials: Credentials | None) -> Forbidden:
        if credentials is None:
            return Forbidden(
                f"pull access denied for {ref}: registry {ref.endpoint} requires "
                f"authentication and node {self._node!r} has no credentials for it"
            )
        return Forbidden(
            f"pull access denied for {ref}: registry {ref.endpoint} refused the credentials "
            f"of user {credentials.username!r}"
        )

    async def _token(self, ref: Reference, challenge: str, credentials: Credentials | None) -> str:
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", "")
        if not realm:
            raise Forbidden(f"registry {ref.endpoint} sent a bearer challenge without a realm")
        params.setdefault("scope", f"repository:{ref.repository}:pull")
        headers = {"Authorization": _basic(credentials)} if credentials is not None else {}
        try:
            async with self._http().get(realm, params=params, headers=headers) as response:
                if response.status in (401, 403):
                    raise self._denied(ref, credentials)
                if response.status >= 300:
                    raise self._unavailable(ref, f"token service answered {response.status}")
                body = await response.json(content_type=None)
        except (aiohttp.ClientConnectionError, TimeoutError) as err:
            raise self._unavailable(ref, f"token service {realm}: {err}") from None
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not token:
            raise Forbidden(f"token service of {ref.endpoint} gave no token")
        return str(token)

    async def _check(self, ref: Reference, response: aiohttp.ClientResponse) -> None:
        status = response.status
        if status < 300:
            return
        text = (await response.text())[:512].strip()
        if status == 404:
            raise NotFound(f"image {ref} not found in registry {ref.endpoint}: {text or status}")
        if status == 403:
            raise Forbidden(f"registry {ref.endpoint} refused {ref}: {text or status}")
        if status == 429 or status >= 500:
            raise self._unavailable(ref, f"HTTP {status} {text}")
        raise System(f"registry {ref.endpoint} answered HTTP {status} for {ref}: {text}")

    # --- manifests and blobs ----------------------------------------------------------------

    async def manifest(self, ref: Reference, selector: str | None = None) -> Fetched:
        """The manifest or index ``selector`` (a tag or digest; default the reference's own).

        A manifest fetched by digest is checked against it.
        """
        selector = selector or ref.selector
        accept = ", ".join(sorted(INDEX_TYPES | MANIFEST_TYPES))
        async with self._get(
            ref, f"{self._base(ref)}/manifests/{selector}", {"Accept": accept}
        ) as response:
            data = await _read_bounded(response, MAX_MANIFEST_BYTES, f"manifest of {ref}")
            media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if selector.startswith("sha256:") and digest != selector:
            raise InvalidParameter(
                f"manifest {selector} of {ref} does not match its digest (got {digest})"
            )
        return Fetched(media_type=media_type, data=data, digest=digest)

    @asynccontextmanager
    async def blob(self, ref: Reference, digest: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """The blob ``digest`` of ``ref``'s repository, as an iterator of chunks."""
        async with self._get(ref, f"{self._base(ref)}/blobs/{digest}", {}) as response:
            yield self._chunks(ref, response)

    async def _chunks(
        self, ref: Reference, response: aiohttp.ClientResponse
    ) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                yield chunk
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError) as err:
            raise self._unavailable(ref, f"blob download broke off: {err}") from None

    async def blob_bytes(self, ref: Reference, digest: str, limit: int) -> bytes:
        """A small blob (an image config) whole; refused when larger than ``limit``."""
        async with self._get(ref, f"{self._base(ref)}/blobs/{digest}", {}) as response:
            return await _read_bounded(response, limit, f"blob {digest} of {ref}")


def _basic(credentials: Credentials) -> str:
    """The ``Authorization`` value of HTTP basic auth."""
    pair = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(pair).decode()


async def _read_bounded(response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise InvalidParameter(f"{what} is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
