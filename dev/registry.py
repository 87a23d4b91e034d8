"""A local image registry on loopback for the dev stack and the test suite, and a push into it.

The registry is Debian's ``docker-registry`` (distribution 2.8), run with its own config and
storage under the stack's state dir, started detached by pid and stopped by that pid. It speaks
plain HTTP on 127.0.0.1, so the nodes list it as insecure (``BERTH_INSECURE_REGISTRIES``).
Optionally it requires basic auth from an htpasswd file (bcrypt entries, made with Apache's
``htpasswd -nbB``).

``push_oci_layout`` copies an OCI image-layout tar (what ``berth.runtime.image`` builds) into
the registry with the distribution API: each blob by a monolithic upload (skipped when the
registry has it), then the manifests, the index last under the tag. No skopeo is needed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import shutil
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REGISTRY_MARKER = "registry-config.json"
STARTUP_TIMEOUT = 30.0


class RegistryError(Exception):
    """The registry could not be started or the push failed; the message says what."""


@dataclass(frozen=True)
class LocalRegistry:
    """One registry process: where it keeps its files and where it listens."""

    root: Path
    port: int
    # name -> password; empty: anonymous access.
    users: tuple[tuple[str, str], ...] = ()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def config_file(self) -> Path:
        # Its path is the process's marker: a stale pid never names another registry.
        return self.root / REGISTRY_MARKER

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    @property
    def htpasswd(self) -> Path:
        return self.root / "htpasswd"

    def argv(self) -> list[str]:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RegistryError("docker-registry not found (install the Debian package)")
        return [binary, "serve", str(self.config_file)]

    def write_config(self) -> None:
        """Write the registry's config (YAML is a superset of JSON) and its htpasswd file."""
        self.storage.mkdir(parents=True, exist_ok=True)
        config: dict[str, object] = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": self.address, "secret": secrets.token_hex(16)},
        }
        if self.users:
            lines = [_htpasswd_line(name, password) for name, password in self.users]
            self.htpasswd.write_text("".join(lines))
            config["auth"] = {"htpasswd": {"realm": "berth-registry", "path": str(self.htpasswd)}}
        self.config_file.write_text(json.dumps(config, indent=2))

    def answers(self) -> bool:
        """Whether ``/v2/`` answers (200, or 401 when it requires auth)."""
        try:
            with urllib.request.urlopen(f"http://{self.address}/v2/", timeout=1.0):
                return True
        except urllib.error.HTTPError as err:
            return err.code == 401
        except OSError:
            return False

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self.answers():
            if time.monotonic() > deadline:
                raise RegistryError(f"registry at {self.address} did not answer in {timeout:g}s")
            time.sleep(0.1)


def _htpasswd_line(name: str, password: str) -> str:
    binary = shutil.which("htpasswd")
    if binary is None:
        raise RegistryError("htpasswd not found (install the Debian package apache2-utils)")
    result = subprocess.run(
        [binary, "-nbB", name, password], capture_output=True, text=True, check=True
    )
    return result.stdout.strip() + "\n"


# --- push --------------------------------------------------------------------------------------


def _request(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers)


def push_blob(base: str, repository: str, digest: str, data: bytes, auth: str | None) -> None:
    """Upload one blob (monolithic POST then PUT), unless the registry already has it."""
    headers = {"Authorization": auth} if auth else {}
    status, _ = _request("HEAD", f"{base}/v2/{repository}/blobs/{digest}", headers=headers)
    if status == 200:
        return
    status, answer = _request("POST", f"{base}/v2/{repository}/blobs/uploads/", b"", headers)
    if status != 202:
        raise RegistryError(f"upload of {digest} to {repository} refused: HTTP {status}")
    location = answer["Location"]
    if location.startswith("/"):
        location = base + location
    separator = "&" if "?" in location else "?"
    status, _ = _request(
        "PUT",
        f"{location}{separator}digest={digest}",
        data,
        {**headers, "Content-Type": "application/octet-stream"},
    )
    if status != 201:
        raise RegistryError(f"upload of {digest} to {repository} failed: HTTP {status}")


def push_manifest(
    base: str, repository: str, reference: str, media_type: str, data: bytes, auth: str | None
) -> None:
    headers = {"Content-Type": media_type}
    if auth:
        headers["Authorization"] = auth
    status, _ = _request("PUT", f"{base}/v2/{repository}/manifests/{reference}", data, headers)
    if status != 201:
        raise RegistryError(f"manifest {repository}:{reference} refused: HTTP {status}")


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def push_oci_layout(
    tar: Path, address: str, repository: str, tag: str, auth: str | None = None
) -> str:
    """Push the OCI image-layout ``tar`` to ``address`` as ``repository:tag``; the top digest.

    The layout's index becomes the tag's manifest when it lists several manifests; a layout
    with one manifest is pushed as that manifest under the tag (as ``skopeo copy`` does).
    """
    base = f"http://{address}"
    with tarfile.open(tar) as archive:
        files = {
            member.name: archive.extractfile(member).read()  # type: ignore[union-attr]
            for member in archive.getmembers()
            if member.isfile()
        }
    blobs = {
        "sha256:" + name.rsplit("/", 1)[1]: data
        for name, data in files.items()
        if name.startswith("blobs/sha256/")
    }
    index = json.loads(files["index.json"])
    manifests: list[dict[str, object]] = index["manifests"]
    for descriptor in manifests:
        manifest = json.loads(blobs[str(descriptor["digest"])])
        for child in [manifest["config"], *manifest["layers"]]:
            push_blob(base, repository, child["digest"], blobs[child["digest"]], auth)
        push_manifest(
            base,
            repository,
            str(descriptor["digest"]),
            str(descriptor["mediaType"]),
            blobs[str(descriptor["digest"])],
            auth,
        )
    if len(manifests) == 1:
        top = manifests[0]
        push_manifest(
            base,
            repository,
            tag,
            str(top["mediaType"]),
            blobs[str(top["digest"])],
            auth,
        )
        return str(top["digest"])
    clean = {key: value for key, value in index.items() if key != "annotations"}
    body = json.dumps(clean).encode()
    media_type = str(index.get("mediaType", "application/vnd.oci.image.index.v1+json"))
    push_manifest(base, repository, tag, media_type, body, auth)
    return "sha256:" + hashlib.sha256(body).hexdigest()
