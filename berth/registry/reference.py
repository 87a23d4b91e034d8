"""Image references as Docker normalises them: ``[registry[:port]/]path[:tag][@digest]``.

``busybox`` is ``docker.io/library/busybox:latest``; a first component with a dot or a colon, or
``localhost``, names the registry. Docker Hub is served at ``registry-1.docker.io`` and its
credentials in ``config.json`` sit under ``https://index.docker.io/v1/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from berth.errors import InvalidParameter

DOCKER_HUB = "docker.io"
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
_PATH = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_DOMAIN = re.compile(r"^(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$")


@dataclass(frozen=True)
class Reference:
    """A parsed image reference; ``tag`` or ``digest`` (or both) is set."""

    domain: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def endpoint(self) -> str:
        """The host[:port] the registry API is served at."""
        return DOCKER_HUB_ENDPOINT if self.domain == DOCKER_HUB else self.domain

    @property
    def auth_key(self) -> str:
        """The key of this registry's entry in a Docker ``config.json``."""
        return DOCKER_HUB_AUTH_KEY if self.domain == DOCKER_HUB else self.domain

    @property
    def selector(self) -> str:
        """What the manifest is fetched by: the digest if given, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        text = f"{self.domain}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> Reference:
    """Parse and normalise ``text``; ``InvalidParameter`` naming it when it is malformed."""
    remainder, digest = text, None
    if "@" in remainder:
        remainder, digest = remainder.split("@", 1)
        if not _DIGEST.match(digest):
            raise InvalidParameter(f"invalid reference format: {text!r} (bad digest)")
    name, tag = remainder, None
    last = remainder.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = remainder.rsplit(":", 1)
        if not _TAG.match(tag):
            raise InvalidParameter(f"invalid reference format: {text!r} (bad tag)")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
        if not _DOMAIN.match(domain):
            raise InvalidParameter(f"invalid reference format: {text!r} (bad registry)")
    else:
        domain, path = DOCKER_HUB, name
        if "/" not in path:
            path = f"library/{path}"
    if not _PATH.match(path) or len(name) > 255:
        raise InvalidParameter(f"invalid reference format: {text!r}")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(domain=domain, repository=path, tag=tag, digest=digest)
