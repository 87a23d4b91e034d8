"""Registry credentials from a Docker ``config.json``.

Read from the node's ``registry_auth_file`` (``BERTH_REGISTRY_AUTH_FILE``) when set, else
``~/.docker/config.json`` (Docker's own place). Each entry of ``auths`` holds ``auth`` (base64
of ``user:password``) or ``username`` and ``password``, and an ``identitytoken`` when the login
gave one. The file is read at each pull, so a new login needs no agent restart; credential
helpers are not run.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path

from berth.errors import InvalidParameter

# A config.json bigger than this is not a Docker config.
MAX_AUTH_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Credentials:
    """A user and password (or identity token) for one registry; never logged."""

    username: str
    password: str
    identity_token: str | None = None

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<hidden>)"


def default_auth_file() -> Path:
    """Docker's own place, used when the node sets no ``registry_auth_file``."""
    return Path.home() / ".docker" / "config.json"


def _hosts_of(key: str) -> str:
    """``https://host:port/v1/`` and ``host:port`` both name ``host:port``."""
    host = key.split("://", 1)[-1]
    return host.split("/", 1)[0]


def load_credentials(auth_key: str, path: Path | None = None) -> Credentials | None:
    """The credentials for the registry ``auth_key`` (see ``Reference.auth_key``), or None.

    Raises:
        InvalidParameter: the file is there but is not a readable Docker config.
    """
    path = path or default_auth_file()
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_AUTH_FILE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise InvalidParameter(f"registry auth file {path}: {err.strerror}") from None
    if len(raw) > MAX_AUTH_FILE_BYTES:
        raise InvalidParameter(f"registry auth file {path} is larger than 1 MiB")
    try:
        auths = json.loads(raw).get("auths") or {}
    except (ValueError, AttributeError):
        raise InvalidParameter(f"registry auth file {path} is not a Docker config.json") from None
    wanted = _hosts_of(auth_key)
    for key, entry in auths.items():
        if key != auth_key and _hosts_of(key) != wanted:
            continue
        if not isinstance(entry, dict):
            continue
        return _entry_credentials(path, key, entry)
    return None


def _entry_credentials(path: Path, key: str, entry: dict[str, object]) -> Credentials | None:
    token = entry.get("identitytoken")
    identity = str(token) if token else None
    encoded = entry.get("auth")
    if encoded:
        try:
            user, _, password = base64.b64decode(str(encoded)).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidParameter(f"registry auth file {path}: bad 'auth' for {key}") from None
        return Credentials(user, password, identity)
    if entry.get("username"):
        return Credentials(str(entry["username"]), str(entry.get("password") or ""), identity)
    if identity:
        return Credentials("<token>", "", identity)
    return None
