"""Registry credentials from a Docker config.json (berth.registry.auth)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from berth.errors import InvalidParameter
from berth.registry.auth import load_credentials


def _config(path: Path, auths: dict[str, object]) -> Path:
    path.write_text(json.dumps({"auths": auths}))
    return path


def test_load_credentials_decodes_the_auth_field(tmp_path: Path) -> None:
    token = base64.b64encode(b"berth:s3cret:with:colons").decode()
    path = _config(tmp_path / "c.json", {"127.0.0.1:5000": {"auth": token}})

    found = load_credentials("127.0.0.1:5000", path)

    assert found is not None
    assert (found.username, found.password) == ("berth", "s3cret:with:colons")
    assert "s3cret" not in repr(found)


def test_load_credentials_matches_a_url_key_by_host(tmp_path: Path) -> None:
    path = _config(
        tmp_path / "c.json",
        {"https://registry.example.com/v2/": {"username": "u", "password": "p"}},
    )

    found = load_credentials("registry.example.com", path)

    assert found is not None and (found.username, found.password) == ("u", "p")


def test_load_credentials_without_file_or_entry_is_none(tmp_path: Path) -> None:
    assert load_credentials("x.io", tmp_path / "missing.json") is None
    assert load_credentials("x.io", _config(tmp_path / "c.json", {"y.io": {}})) is None


def test_load_credentials_of_a_malformed_file_is_invalid_parameter(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text("{not json")

    with pytest.raises(InvalidParameter, match=r"not a Docker config\.json"):
        load_credentials("x.io", path)
