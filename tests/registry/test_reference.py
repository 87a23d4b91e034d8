"""Image references normalised as Docker does (berth.registry.reference)."""

from __future__ import annotations

import pytest

from berth.errors import InvalidParameter
from berth.registry.reference import parse_reference


@pytest.mark.parametrize(
    ("text", "domain", "repository", "tag", "endpoint"),
    [
        ("busybox", "docker.io", "library/busybox", "latest", "registry-1.docker.io"),
        ("nginx:1.27", "docker.io", "library/nginx", "1.27", "registry-1.docker.io"),
        ("acme/app:v2", "docker.io", "acme/app", "v2", "registry-1.docker.io"),
        ("127.0.0.1:5000/berth/busybox", "127.0.0.1:5000", "berth/busybox", "latest", None),
        ("localhost/x/y:1", "localhost", "x/y", "1", None),
        ("ghcr.io/org/img:tag", "ghcr.io", "org/img", "tag", None),
    ],
)
def test_parse_reference_normalises_like_docker(
    text: str, domain: str, repository: str, tag: str, endpoint: str | None
) -> None:
    ref = parse_reference(text)

    assert (ref.domain, ref.repository, ref.tag) == (domain, repository, tag)
    assert ref.endpoint == (endpoint or domain)


def test_parse_reference_with_digest_selects_by_digest() -> None:
    digest = "sha256:" + "a" * 64

    ref = parse_reference(f"registry.example.com:443/app@{digest}")

    assert (ref.tag, ref.digest, ref.selector) == (None, digest, digest)


def test_parse_reference_docker_hub_credentials_key_is_dockers() -> None:
    assert parse_reference("busybox").auth_key == "https://index.docker.io/v1/"
    assert parse_reference("127.0.0.1:5000/a").auth_key == "127.0.0.1:5000"


@pytest.mark.parametrize(
    "text", ["UPPER/case", "busybox@sha256:short", "a:b:c/d", "busybox:bad tag", "x/" + "a" * 300]
)
def test_parse_reference_malformed_is_invalid_parameter_naming_it(text: str) -> None:
    with pytest.raises(InvalidParameter, match="invalid reference format"):
        parse_reference(text)
