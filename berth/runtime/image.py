"""The test image: an OCI image-layout tar built from Debian's static busybox, and its import.

The tar is deterministic (fixed mtimes, owners and order), so its digests are stable across
builds and machines with the same busybox. Import goes through containerd's ``ctr`` and unpacks
for the overlayfs snapshotter; it is skipped when the image is already there and unpacked.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from berth.config import NodePaths
from berth.errors import InvalidParameter, NotFound, System
from berth.runtime.containerd import SNAPSHOTTER, ContainerdClient, host_platform

DEFAULT_REF = "local/busybox:latest"
BUSYBOX = Path("/bin/busybox")
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_MTIME = 0

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnobody:x:65534:\n"


@dataclass(frozen=True)
class _Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}


def _info(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.linkname = link
    info.mtime = _MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _tar(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _applets(busybox: Path) -> list[str]:
    result = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True)
    return sorted({name for name in result.stdout.split() if name and "/" not in name})


def _layer(busybox: Path) -> bytes:
    binary = busybox.read_bytes()
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = [
        (_info("bin", tarfile.DIRTYPE, 0o755), None),
        (_info("bin/busybox", tarfile.REGTYPE, 0o755, len(binary)), binary),
    ]
    entries += [
        (_info(f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox"), None)
        for applet in _applets(busybox)
        if applet != "busybox"
    ]
    for directory, mode in (("dev", 0o755), ("proc", 0o555), ("sys", 0o555), ("root", 0o700)):
        entries.append((_info(directory, tarfile.DIRTYPE, mode), None))
    entries += [
        (_info("etc", tarfile.DIRTYPE, 0o755), None),
        (_info("etc/passwd", tarfile.REGTYPE, 0o644, len(PASSWD)), PASSWD.encode()),
        (_info("etc/group", tarfile.REGTYPE, 0o644, len(GROUP)), GROUP.encode()),
        (_info("tmp", tarfile.DIRTYPE, 0o1777), None),
    ]
    return _tar(entries)


def busybox_rootfs_tar(out_tar: Path, busybox: Path = BUSYBOX) -> Path:
    """Write the busybox image's root filesystem as one plain tar (for ``docker import``)."""
    if not busybox.is_file():
        raise System(f"{busybox} not found: install the Debian package busybox-static")
    out_tar.write_bytes(_layer(busybox))
    return out_tar


def build_busybox_image(
    out_tar: Path,
    ref: str = DEFAULT_REF,
    busybox: Path = BUSYBOX,
    config: dict[str, Any] | None = None,
) -> Path:
    """Write an OCI image-layout tar of a busybox image named ``ref`` to ``out_tar``; ``config``
    adds to its image config (``ExposedPorts``, ``Env``, ...).

    Raises:
        System: ``busybox`` is missing (install Debian's ``busybox-static``).
    """
    if not busybox.is_file():
        raise System(f"{busybox} not found: install the Debian package busybox-static")
    return build_oci_layout(out_tar, ref, [_layer(busybox)], image_config=config)


def file_layer(files: dict[str, bytes]) -> bytes:
    """A layer tar of regular files (mode 0644) at the given relative paths."""
    return _tar(
        [(_info(name, tarfile.REGTYPE, 0o644, len(data)), data) for name, data in files.items()]
    )


# Layer compressions an OCI layout can be built with, and their media types.
LAYER_MEDIA_TYPES = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


def _compress(data: bytes, compression: str) -> bytes:
    if compression == "none":
        return data
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        zstd = shutil.which("zstd")
        if zstd is None:
            raise System("zstd not found: install the Debian package zstd")
        return subprocess.run(
            [zstd, "-q", "-c", "-3"], input=data, capture_output=True, check=True
        ).stdout
    raise InvalidParameter(f"unknown layer compression {compression!r}")


def build_oci_layout(
    out_tar: Path,
    ref: str,
    layers: list[bytes],
    compression: str = "none",
    image_config: dict[str, Any] | None = None,
) -> Path:
    """Write an OCI image-layout tar of an image named ``ref`` with ``layers`` (plain tars,
    bottom first, each compressed with ``compression``: none, gzip or zstd) to ``out_tar``;
    ``image_config`` adds to the image config's ``config`` section."""
    os_name, arch = host_platform()
    blobs = [
        _Blob(LAYER_MEDIA_TYPES[compression], _compress(layer, compression)) for layer in layers
    ]
    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    config = _Blob(
        "application/vnd.oci.image.config.v1+json",
        json.dumps(
            {
                "architecture": arch,
                "os": os_name,
                "created": "1970-01-01T00:00:00Z",
                "config": {"Env": [DEFAULT_PATH], "Cmd": ["sh"], **(image_config or {})},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "berth"}],
            },
            sort_keys=True,
        ).encode(),
    )
    manifest = _Blob(
        "application/vnd.oci.image.manifest.v1+json",
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config.descriptor(),
                "layers": [blob.descriptor() for blob in blobs],
            },
            sort_keys=True,
        ).encode(),
    )
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                **manifest.descriptor(),
                "platform": {"architecture": arch, "os": os_name},
                "annotations": {
                    "io.containerd.image.name": ref,
                    "org.opencontainers.image.ref.name": ref,
                },
            }
        ],
    }
    files: list[tuple[str, bytes]] = [
        ("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
        ("index.json", json.dumps(index, sort_keys=True).encode()),
    ]
    unique = {b.digest: b for b in (*blobs, config, manifest)}
    files += [
        (f"blobs/sha256/{digest.removeprefix('sha256:')}", blob.data)
        for digest, blob in unique.items()
    ]
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = [
        (_info("blobs", tarfile.DIRTYPE, 0o755), None),
        (_info("blobs/sha256", tarfile.DIRTYPE, 0o755), None),
    ]
    entries += [(_info(name, tarfile.REGTYPE, 0o644, len(data)), data) for name, data in files]
    out_tar.parent.mkdir(parents=True, exist_ok=True)
    partial = out_tar.with_name(out_tar.name + ".partial")
    partial.write_bytes(_tar(entries))
    partial.replace(out_tar)
    return out_tar


async def import_image(paths: NodePaths, namespace: str, tar: Path, ref: str = DEFAULT_REF) -> None:
    """Import the image tar into the node's containerd namespace, unpacked for overlayfs.

    Idempotent: nothing is done when ``ref`` already resolves to an unpacked snapshot.

    Raises:
        System: ``ctr`` is missing or the import failed (its output is in the message).
        NotFound: the import ran but ``ref`` is still not there (the tar names another image).
    """
    async with ContainerdClient(paths.containerd_socket, namespace, paths.root.name) as client:
        try:
            await client.resolve_image(ref)
            return
        except NotFound:
            pass
        ctr = shutil.which("ctr")
        if ctr is None:
            raise System("ctr binary not found on PATH (install the Debian package containerd)")
        process = await asyncio.create_subprocess_exec(
            ctr,
            "--address",
            str(paths.containerd_socket),
            "--namespace",
            namespace,
            "images",
            "import",
            "--snapshotter",
            SNAPSHOTTER,
            str(tar),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise System(
                f"ctr images import of {tar} on node {paths.root.name!r} failed "
                f"(exit {process.returncode}): {output.decode(errors='replace').strip()}"
            )
        await client.resolve_image(ref)
