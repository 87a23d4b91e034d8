"""Pull an image from a registry into a node's containerd: content store, snapshots, image store.

The same work containerd's own ``Pull`` does, through its services:

1. A **lease** (``lease_id``, an id derivable from what asked for the pull) holds everything the
   pull creates; it expires after :data:`LEASE_EXPIRY` so that a pull that crashed leaves
   nothing the garbage collector keeps for good, and a retry with the same lease id finds what
   the first attempt wrote and reuses it. It is labelled with the workflow whose pull made it
   (:data:`PULL_WORKFLOW_LABEL`): once that workflow no longer runs, no retry will come, and the
   node's reconciler deletes the lease well before it expires (:func:`pull_leases`).
2. The manifest (an index is resolved to the node's platform), the config and the layers are
   written into the **content store** through ``Content.Write`` in 1 MiB chunks, each checked
   against its digest and size as it streams (containerd checks again at commit). A blob the
   store already has is only added to the lease.
3. Each layer is applied through containerd's **diff service** onto a snapshot committed under
   its chain id (gzip, zstd and plain tar layers: containerd 1.6 decompresses them itself), and
   the applied digest is checked against the config's ``diff_ids``.
4. The GC labels tie it together (index → manifest → config and layers; config → top
   snapshot), the image is recorded in the **image store** under the name asked for, and the
   lease is deleted.

One pull per image per node at a time: a second pull of the same name waits for the first and
then finds the image there (:class:`ImagePuller` keeps the locks; one puller per node agent).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import tarfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import grpc
from google.protobuf import field_mask_pb2

from berth._containerd_api.services.content.v1 import content_pb2, content_pb2_grpc
from berth._containerd_api.services.diff.v1 import diff_pb2, diff_pb2_grpc
from berth._containerd_api.services.images.v1 import images_pb2, images_pb2_grpc
from berth._containerd_api.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from berth._containerd_api.types import descriptor_pb2, mount_pb2
from berth.errors import InvalidParameter, NotFound, System
from berth.faults import NO_FAULTS, FaultHook
from berth.registry.client import (
    DOCKER_MANIFEST,
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_MANIFEST_BYTES,
    Fetched,
    RegistryClient,
)
from berth.registry.reference import Reference, parse_reference
from berth.runtime.containerd import (
    SNAPSHOTTER,
    AlreadyExists,
    ContainerdClient,
    LeaseInfo,
    chain_id,
    pick_manifest,
)

# A crashed pull's lease, and with it what it held, is collectable after this long.
LEASE_EXPIRY = timedelta(hours=1)
SNAPSHOT_RESOURCE = f"snapshots/{SNAPSHOTTER}"
WRITE_CHUNK = 1024 * 1024
# An unfinished write's abort is retried while containerd still closes it.
ABORT_ATTEMPTS = 5
# Layers fetched at once (containerd's default is 3).
FETCH_PARALLEL = 3
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
# What a layer may be: the OCI and Docker layer types, compressed with gzip or zstd or not.
LAYER_TYPES = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.diff.tar",
    }
)

Progress = Callable[[str, int, int], None]


def _no_progress(phase: str, done: int, total: int) -> None:
    return None


@dataclass(frozen=True)
class PulledImage:
    """What a pull recorded: the image's name, its target digest, its top snapshot, its size."""

    name: str
    digest: str
    chain_id: str
    size: int


@dataclass(frozen=True)
class _Descriptor:
    media_type: str
    digest: str
    size: int

    @classmethod
    def of(cls, raw: Mapping[str, Any], what: str) -> _Descriptor:
        try:
            digest, size = str(raw["digest"]), int(raw["size"])
        except (KeyError, TypeError, ValueError):
            raise InvalidParameter(f"{what}: a descriptor without digest or size") from None
        if not digest.startswith("sha256:") or len(digest) != 71 or size < 0:
            raise InvalidParameter(f"{what}: unsupported digest {digest[:80]!r}")
        return cls(str(raw.get("mediaType") or ""), digest, size)

    def as_json(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    def proto(self) -> descriptor_pb2.Descriptor:
        return descriptor_pb2.Descriptor(
            media_type=self.media_type, digest=self.digest, size=self.size
        )


# The leases of pulls: the prefix, then the owner (berth.leaks reports those of ended pulls).
PULL_LEASE_PREFIX = "berth-pull-"


# The label of a pull's lease naming the workflow (its id) whose pull made it.
PULL_WORKFLOW_LABEL = "berth/pull-workflow"


def pull_lease_id(owner: str) -> str:
    """The lease of the pull ``owner`` asked for (a container id, a pull workflow's id)."""
    return f"{PULL_LEASE_PREFIX}{owner}"


@dataclass(frozen=True)
class PullLease:
    """A pull's lease: who asked for the pull, the workflow whose pull made it (None for a
    lease made without one), and when."""

    lease: str
    owner: str
    workflow: str | None
    created_at: datetime


def pull_leases(leases: Iterable[LeaseInfo]) -> list[PullLease]:
    """The pulls' leases among ``leases`` (``ContainerdClient.lease_infos``), oldest first."""
    return sorted(
        (
            PullLease(
                lease.id,
                lease.id.removeprefix(PULL_LEASE_PREFIX),
                lease.labels.get(PULL_WORKFLOW_LABEL),
                lease.created_at,
            )
            for lease in leases
            if lease.id.startswith(PULL_LEASE_PREFIX)
        ),
        key=lambda found: (found.created_at, found.lease),
    )


class ImagePuller:
    """Pulls into one node's containerd (one namespace); one per node agent."""

    def __init__(
        self,
        containerd: ContainerdClient,
        registry: Callable[[], RegistryClient],
        faults: FaultHook = NO_FAULTS,
    ) -> None:
        """``registry`` makes the registry client of one pull (closed when the pull ends);
        ``faults`` is called at ``pull:layer:after`` once each layer it fetched is in the content
        store."""
        self._containerd = containerd
        self._registry = registry
        self._faults = faults
        channel = containerd.channel
        self._content = content_pb2_grpc.ContentStub(channel)
        self._diff = diff_pb2_grpc.DiffStub(channel)
        self._snapshots = snapshots_pb2_grpc.SnapshotsStub(channel)
        self._images = images_pb2_grpc.ImagesStub(channel)
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def node(self) -> str:
        return self._containerd.node

    async def has_image(self, name: str) -> bool:
        """Whether ``name`` is in the image store and unpacked."""
        try:
            await self._containerd.resolve_image(name)
        except NotFound:
            return False
        return True

    async def pull(
        self,
        name: str,
        lease: str,
        *,
        only_if_missing: bool = False,
        progress: Progress = _no_progress,
        workflow: str | None = None,
    ) -> PulledImage | None:
        """Pull ``name`` under ``lease`` (deleted when done); None when ``only_if_missing``
        found it already there (a concurrent pull of the same name is waited for first).
        ``workflow``: the id of the workflow the pull runs for, labelled on a new lease.

        Raises:
            InvalidParameter: the reference is malformed, or the registry served something
                that is not an image.
            NotFound: the registry has no such image, or none for this node's platform.
            Forbidden: the registry refused access.
            System: a blob did not match its digest, or containerd refused a step.
            Unavailable: the registry or containerd could not be reached.
        """
        ref = parse_reference(name)
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            if only_if_missing and await self.has_image(name):
                return None
            await self.create_lease(lease, workflow)
            async with self._registry() as registry:
                pulled = await self._pull(registry, name, ref, lease, progress)
            await self.delete_lease(lease)
            return pulled

    async def load(
        self,
        archive: IO[bytes],
        lease: str,
        progress: Progress = _no_progress,
        workflow: str | None = None,
    ) -> list[PulledImage]:
        """Load the images of a ``docker save`` archive or an OCI image-layout tar (plain or
        gzip) under ``lease`` (deleted when done): every blob checked against its digest,
        unpacked and recorded under the archive's names (``RepoTags``; for a layout without
        ``manifest.json``, its ``io.containerd.image.name`` or ``org.opencontainers.image.ref.name``
        annotations). ``workflow`` as for :meth:`pull`.

        Raises:
            InvalidParameter: the archive is neither, names no image, or is malformed.
            System: a blob does not match its digest, or containerd refused a step.
        """
        try:
            tar = await asyncio.to_thread(tarfile.open, fileobj=archive, mode="r:*")
            members = {
                member.name.removeprefix("./"): member
                for member in await asyncio.to_thread(tar.getmembers)
                if member.isfile()
            }
        except (tarfile.TarError, EOFError, OSError) as err:
            raise InvalidParameter(f"image archive: not a readable tar ({err})") from None
        source = _Archive(tar, members)
        await self.create_lease(lease, workflow)
        if "manifest.json" in members:
            loaded = await self._load_docker(source, lease, progress)
        elif "index.json" in members:
            loaded = await self._load_layout(source, lease, progress)
        else:
            raise InvalidParameter(
                "image archive: neither a docker save archive (manifest.json) nor an OCI "
                "image layout (index.json)"
            )
        await self.delete_lease(lease)
        return loaded

    async def _load_docker(
        self, source: _Archive, lease: str, progress: Progress
    ) -> list[PulledImage]:
        entries = json.loads(await source.small("manifest.json"))
        if not isinstance(entries, list) or not entries:
            raise InvalidParameter("image archive: manifest.json lists no image")
        loaded = []
        for entry in entries:
            tags = [str(tag) for tag in entry.get("RepoTags") or []]
            for tag in tags:
                parse_reference(tag)  # a malformed name is refused before anything is written
            config_data = await source.small(str(entry.get("Config", "")))
            config_desc = _Descriptor(DOCKER_CONFIG, _digest(config_data), len(config_data))
            layers = []
            for path in entry.get("Layers") or []:
                digest, size, head = await source.hash(str(path))
                layer = _Descriptor(_layer_type(head), digest, size)
                await self._load_blob(source, str(path), layer, lease)
                layers.append(layer)
            diff_ids = _diff_ids(config_data, layers, "image archive")
            manifest_data = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": DOCKER_MANIFEST,
                    "config": config_desc.as_json(),
                    "layers": [layer.as_json() for layer in layers],
                },
                sort_keys=True,
            ).encode()
            manifest_desc = _Descriptor(DOCKER_MANIFEST, _digest(manifest_data), len(manifest_data))
            chain = await self._store_image(
                tags[0] if tags else "image archive",
                manifest_data,
                manifest_desc,
                config_data,
                config_desc,
                layers,
                diff_ids,
                lease,
                progress,
            )
            size = sum(layer.size for layer in layers) + len(config_data)
            for tag in tags:
                await self._record(tag, manifest_desc)
                loaded.append(PulledImage(tag, manifest_desc.digest, chain, size))
        if not loaded:
            raise InvalidParameter("image archive: no image in it has a name (RepoTags)")
        return loaded

    async def _load_layout(
        self, source: _Archive, lease: str, progress: Progress
    ) -> list[PulledImage]:
        index = _json(await source.small("index.json"), "image layout")
        loaded = []
        for entry in index.get("manifests") or []:
            annotations = entry.get("annotations") or {}
            names = [
                str(name)
                for name in (
                    annotations.get("io.containerd.image.name"),
                    annotations.get("org.opencontainers.image.ref.name"),
                )
                if name and ("/" in str(name) or ":" in str(name))
            ][:1]
            if not names:
                continue
            name = names[0]
            parse_reference(name)
            top_desc = _Descriptor.of(entry, f"index of {name}")
            top_data = await source.blob(top_desc, name)
            top = Fetched(top_desc.media_type, top_data, top_desc.digest)
            manifest_blob, index_labels = top, {}
            if _media_type(top) in INDEX_TYPES:
                chosen = _Descriptor.of(
                    pick_manifest(_json(top_data, name), name, self.node), f"index of {name}"
                )
                manifest_blob = Fetched(
                    chosen.media_type, await source.blob(chosen, name), chosen.digest
                )
                index_labels = {"containerd.io/gc.ref.content.m.0": chosen.digest}
            config_desc, layers = _manifest_parts(manifest_blob, name)
            config_data = await source.blob(config_desc, name)
            diff_ids = _diff_ids(config_data, layers, name)
            for layer in layers:
                await self._load_blob(source, _blob_path(layer.digest), layer, lease)
            manifest_desc = _Descriptor(
                manifest_blob.media_type, manifest_blob.digest, len(manifest_blob.data)
            )
            chain = await self._store_image(
                name,
                manifest_blob.data,
                manifest_desc,
                config_data,
                config_desc,
                layers,
                diff_ids,
                lease,
                progress,
            )
            if index_labels:
                await self._write_small(top_data, top_desc, lease, index_labels)
            await self._record(name, top_desc)
            size = sum(layer.size for layer in layers) + len(config_data)
            loaded.append(PulledImage(name, top_desc.digest, chain, size))
        if not loaded:
            raise InvalidParameter("image archive: its index.json names no image")
        return loaded

    async def _load_blob(self, source: _Archive, path: str, desc: _Descriptor, lease: str) -> None:
        if await self._has_blob(desc.digest):
            await self._hold(lease, "content", desc.digest)
            return
        await self._write(
            desc, source.chunks(path), lease, {}, lambda _: None, f"{path} of the image archive"
        )

    # --- leases -------------------------------------------------------------------------------

    async def create_lease(self, lease: str, workflow: str | None = None) -> None:
        """Create the lease (expiring, labelled with ``workflow``), or keep the one a crashed
        attempt left."""
        labels = {PULL_WORKFLOW_LABEL: workflow} if workflow else {}
        await self._containerd.create_lease(lease, datetime.now(UTC) + LEASE_EXPIRY, labels)

    async def delete_lease(self, lease: str) -> None:
        """Delete the lease; what it alone held becomes garbage. A missing one is success."""
        await self._containerd.delete_lease(lease)

    async def list_leases(self) -> list[str]:
        """The ids of every lease of this namespace."""
        return await self._containerd.list_leases()

    async def _hold(self, lease: str, kind: str, resource_id: str) -> None:
        await self._containerd.add_to_lease(lease, kind, resource_id)

    # --- the pull -----------------------------------------------------------------------------

    async def _pull(
        self,
        registry: RegistryClient,
        name: str,
        ref: Reference,
        lease: str,
        progress: Progress,
    ) -> PulledImage:
        top = await registry.manifest(ref)
        manifest_blob, top_desc = top, _Descriptor(top.media_type, top.digest, len(top.data))
        index_labels: dict[str, str] = {}
        if _media_type(top) in INDEX_TYPES:
            entry = pick_manifest(_json(top.data, name), name, self.node)
            chosen = _Descriptor.of(entry, f"index of {name}")
            manifest_blob = await registry.manifest(ref, chosen.digest)
            index_labels = {"containerd.io/gc.ref.content.m.0": chosen.digest}
        config_desc, layers = _manifest_parts(manifest_blob, name)
        config_data = await registry.blob_bytes(ref, config_desc.digest, MAX_MANIFEST_BYTES)
        _verify(config_data, config_desc, name)
        diff_ids = _diff_ids(config_data, layers, name)
        total = sum(layer.size for layer in layers)
        done = 0

        def advanced(count: int) -> None:
            nonlocal done
            done += count
            progress("download", done, total)

        gate = asyncio.Semaphore(FETCH_PARALLEL)

        async def fetch(layer: _Descriptor) -> None:
            async with gate:
                if await self._fetch_layer(registry, ref, name, layer, lease, advanced):
                    await self._faults.at("pull:layer:after", None)

        await asyncio.gather(*(fetch(layer) for layer in layers))
        manifest_desc = _Descriptor(
            manifest_blob.media_type, manifest_blob.digest, len(manifest_blob.data)
        )
        top_chain = await self._store_image(
            name,
            manifest_blob.data,
            manifest_desc,
            config_data,
            config_desc,
            layers,
            diff_ids,
            lease,
            progress,
        )
        if index_labels:
            await self._write_small(top.data, top_desc, lease, index_labels)
        await self._record(name, top_desc)
        return PulledImage(
            name=name, digest=top_desc.digest, chain_id=top_chain, size=total + len(config_data)
        )

    async def _store_image(
        self,
        name: str,
        manifest_data: bytes,
        manifest_desc: _Descriptor,
        config_data: bytes,
        config_desc: _Descriptor,
        layers: list[_Descriptor],
        diff_ids: list[str],
        lease: str,
        progress: Progress,
    ) -> str:
        """With the layers in the content store: unpack them, then write the config and the
        manifest with their GC labels; the top snapshot's chain id."""
        top_chain = await self._unpack(name, layers, diff_ids, lease, progress)
        await self._write_small(
            config_data,
            config_desc,
            lease,
            {f"containerd.io/gc.ref.snapshot.{SNAPSHOTTER}": top_chain},
        )
        manifest_labels = {"containerd.io/gc.ref.content.config": config_desc.digest}
        manifest_labels |= {
            f"containerd.io/gc.ref.content.l.{i}": layer.digest for i, layer in enumerate(layers)
        }
        await self._write_small(manifest_data, manifest_desc, lease, manifest_labels)
        return top_chain

    async def _record(self, name: str, target: _Descriptor) -> None:
        """Create the image record, or point the existing one at ``target``."""
        image = images_pb2.Image(name=name, target=target.proto())
        what = f"record image {name!r}"
        try:
            await self._containerd.call(
                what, self._images.Create, images_pb2.CreateImageRequest(image=image)
            )
        except AlreadyExists:
            await self._containerd.call(
                what,
                self._images.Update,
                images_pb2.UpdateImageRequest(
                    image=image, update_mask=field_mask_pb2.FieldMask(paths=["target"])
                ),
            )

    # --- content ------------------------------------------------------------------------------

    async def _has_blob(self, digest: str) -> bool:
        try:
            await self._containerd.call(
                f"content {digest}", self._content.Info, content_pb2.InfoRequest(digest=digest)
            )
        except NotFound:
            return False
        return True

    async def _label(self, desc: _Descriptor, labels: Mapping[str, str]) -> None:
        info = content_pb2.Info(digest=desc.digest, labels=dict(labels))
        await self._containerd.call(
            f"label content {desc.digest}",
            self._content.Update,
            content_pb2.UpdateRequest(
                info=info,
                update_mask=field_mask_pb2.FieldMask(paths=[f"labels.{key}" for key in labels]),
            ),
        )

    async def _write_small(
        self, data: bytes, desc: _Descriptor, lease: str, labels: Mapping[str, str]
    ) -> None:
        async def one() -> AsyncIterator[bytes]:
            yield data

        await self._write(desc, one(), lease, labels, lambda _: None, desc.digest)

    async def _fetch_layer(
        self,
        registry: RegistryClient,
        ref: Reference,
        name: str,
        layer: _Descriptor,
        lease: str,
        advanced: Callable[[int], None],
    ) -> bool:
        """Bring the layer into the content store under ``lease``; whether it was fetched
        (False: the store had it already)."""
        if await self._has_blob(layer.digest):
            await self._hold(lease, "content", layer.digest)
            advanced(layer.size)
            return False
        async with registry.blob(ref, layer.digest) as chunks:
            await self._write(layer, chunks, lease, {}, advanced, f"layer {layer.digest} of {name}")
        return True

    async def _write(
        self,
        desc: _Descriptor,
        chunks: AsyncIterator[bytes],
        lease: str,
        labels: Mapping[str, str],
        advanced: Callable[[int], None],
        what: str,
    ) -> None:
        """Stream ``chunks`` into the content store as ``desc``, checked against its digest.

        A blob already there is added to the lease and given ``labels``.
        """
        ref = f"berth-{lease}-{desc.digest}"
        stream = self._content.Write(metadata=self._containerd.metadata(lease))
        digest = hashlib.sha256()
        offset = 0
        try:
            async for chunk in _rechunk(chunks):
                if offset + len(chunk) > desc.size:
                    raise System(
                        f"{what} is larger than its descriptor's {desc.size} bytes; refused"
                    )
                digest.update(chunk)
                await stream.write(
                    content_pb2.WriteContentRequest(
                        action=content_pb2.WRITE,
                        ref=ref,
                        total=desc.size,
                        expected=desc.digest,
                        offset=offset,
                        data=chunk,
                    )
                )
                await stream.read()
                offset += len(chunk)
                advanced(len(chunk))
            actual = "sha256:" + digest.hexdigest()
            if actual != desc.digest or offset != desc.size:
                raise System(
                    f"{what} does not match its digest: expected {desc.digest} "
                    f"({desc.size} bytes), got {actual} ({offset} bytes); corrupt blob refused"
                )
            await stream.write(
                content_pb2.WriteContentRequest(
                    action=content_pb2.COMMIT,
                    ref=ref,
                    total=desc.size,
                    expected=desc.digest,
                    offset=offset,
                    labels=dict(labels),
                )
            )
            await stream.read()
            await stream.done_writing()
        except grpc.aio.AioRpcError as error:
            failure = self._containerd.error(error, f"write {what}", None)
            if not isinstance(failure, AlreadyExists):
                await self._abort(ref)
                raise failure from None
            stream.cancel()
            await self._hold(lease, "content", desc.digest)
            if labels:
                await self._label(desc, labels)
        except BaseException:
            await _close(stream)
            await self._abort(ref)
            raise

    async def _abort(self, ref: str) -> None:
        """Drop the unfinished write ``ref``; containerd may still be closing it, so retried."""
        for attempt in range(ABORT_ATTEMPTS):
            try:
                await self._containerd.call(
                    f"abort write {ref}", self._content.Abort, content_pb2.AbortRequest(ref=ref)
                )
                return
            except NotFound:
                return
            except System:
                if attempt == ABORT_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.1 * (attempt + 1))

    # --- unpack -------------------------------------------------------------------------------

    async def _unpack(
        self,
        name: str,
        layers: list[_Descriptor],
        diff_ids: list[str],
        lease: str,
        progress: Progress,
    ) -> str:
        """Apply each layer onto its chain-id snapshot (existing ones are reused); the top one."""
        parent = ""
        for i, layer in enumerate(layers):
            chain = chain_id(diff_ids[: i + 1])
            progress("unpack", i, len(layers))
            if await self._has_snapshot(chain):
                await self._hold(lease, SNAPSHOT_RESOURCE, chain)
            else:
                await self._apply(name, layer, str(diff_ids[i]), chain, parent, lease)
            parent = chain
        progress("unpack", len(layers), len(layers))
        return parent

    async def _has_snapshot(self, key: str) -> bool:
        try:
            await self._containerd.call(
                f"snapshot {key}",
                self._snapshots.Stat,
                snapshots_pb2.StatSnapshotRequest(snapshotter=SNAPSHOTTER, key=key),
            )
        except NotFound:
            return False
        return True

    async def _apply(
        self, name: str, layer: _Descriptor, diff_id: str, chain: str, parent: str, lease: str
    ) -> None:
        key = f"extract-{uuid.uuid4().hex}-{chain}"
        what = f"unpack layer {layer.digest} of {name}"
        prepared = await self._containerd.call(
            what,
            self._snapshots.Prepare,
            snapshots_pb2.PrepareSnapshotRequest(snapshotter=SNAPSHOTTER, key=key, parent=parent),
            lease=lease,
        )
        try:
            mounts = [
                mount_pb2.Mount(type=m.type, source=m.source, options=list(m.options))
                for m in prepared.mounts
            ]
            applied = await self._containerd.call(
                what,
                self._diff.Apply,
                diff_pb2.ApplyRequest(diff=layer.proto(), mounts=mounts),
                deadline=None,  # as long as the layer takes to unpack
                lease=lease,
            )
            if applied.applied.digest != diff_id:
                raise System(
                    f"{what}: its content is {applied.applied.digest}, the config says "
                    f"{diff_id}; refused"
                )
            try:
                await self._containerd.call(
                    what,
                    self._snapshots.Commit,
                    snapshots_pb2.CommitSnapshotRequest(
                        snapshotter=SNAPSHOTTER, name=chain, key=key
                    ),
                    lease=lease,
                )
            except AlreadyExists:
                await self._hold(lease, SNAPSHOT_RESOURCE, chain)
                raise
        except AlreadyExists:
            await self._remove_snapshot(key)  # another pull committed the same chain
        except BaseException:
            await self._remove_snapshot(key)
            raise

    async def _remove_snapshot(self, key: str) -> None:
        await self._containerd.remove_snapshot(key)


async def _close(stream: Any) -> None:
    """End a write stream from this side and wait until containerd has ended it too."""
    try:
        await stream.done_writing()
        while await stream.read() is not grpc.aio.EOF:
            pass
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
        stream.cancel()


class _Archive:
    """An image archive's tar, read in a thread (a member at a time, never a layer whole)."""

    def __init__(self, tar: tarfile.TarFile, members: Mapping[str, tarfile.TarInfo]) -> None:
        self._tar = tar
        self._members = members

    def _open(self, path: str) -> IO[bytes]:
        member = self._members.get(path.removeprefix("./"))
        handle = self._tar.extractfile(member) if member is not None else None
        if handle is None:
            raise InvalidParameter(f"image archive: {path!r} is not a file in it")
        return handle

    async def small(self, path: str) -> bytes:
        """A JSON member whole, bounded."""

        def read() -> bytes:
            data = self._open(path).read(MAX_MANIFEST_BYTES + 1)
            if len(data) > MAX_MANIFEST_BYTES:
                raise InvalidParameter(f"image archive: {path!r} is larger than 4 MiB")
            return data

        return await asyncio.to_thread(read)

    async def blob(self, desc: _Descriptor, name: str) -> bytes:
        """A small blob of an OCI layout, checked against its descriptor."""
        data = await self.small(_blob_path(desc.digest))
        _verify(data, desc, name)
        return data

    async def hash(self, path: str) -> tuple[str, int, bytes]:
        """A member's digest, size and first bytes (one pass, in chunks)."""

        def digest() -> tuple[str, int, bytes]:
            handle, hasher, size, head = self._open(path), hashlib.sha256(), 0, b""
            while chunk := handle.read(WRITE_CHUNK):
                head = head or chunk[:8]
                hasher.update(chunk)
                size += len(chunk)
            return "sha256:" + hasher.hexdigest(), size, head

        return await asyncio.to_thread(digest)

    async def chunks(self, path: str) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(self._open, path)
        while chunk := await asyncio.to_thread(handle.read, WRITE_CHUNK):
            yield chunk


def _blob_path(digest: str) -> str:
    algorithm, _, encoded = digest.partition(":")
    return f"blobs/{algorithm}/{encoded}"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer_type(head: bytes) -> str:
    """A docker save layer's media type, by its first bytes (gzip, zstd or a plain tar)."""
    if head.startswith(b"\x1f\x8b"):
        return "application/vnd.docker.image.rootfs.diff.tar.gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "application/vnd.oci.image.layer.v1.tar+zstd"
    return "application/vnd.docker.image.rootfs.diff.tar"


def _manifest_parts(manifest_blob: Fetched, name: str) -> tuple[_Descriptor, list[_Descriptor]]:
    """The config and layer descriptors of an image manifest, their types checked."""
    if _media_type(manifest_blob) not in MANIFEST_TYPES:
        raise InvalidParameter(f"{name}: unsupported manifest type {manifest_blob.media_type!r}")
    manifest = _json(manifest_blob.data, name)
    config_desc = _Descriptor.of(manifest.get("config") or {}, f"config of {name}")
    layers = [_Descriptor.of(raw, f"layer of {name}") for raw in manifest.get("layers") or []]
    for layer in layers:
        if layer.media_type not in LAYER_TYPES:
            raise InvalidParameter(f"{name}: unsupported layer type {layer.media_type!r}")
    return config_desc, layers


def _diff_ids(config_data: bytes, layers: list[_Descriptor], name: str) -> list[str]:
    """The config's diff ids, one per layer."""
    config = _json(config_data, name)
    diff_ids = [str(d) for d in (config.get("rootfs") or {}).get("diff_ids") or []]
    if len(diff_ids) != len(layers) or not layers:
        raise InvalidParameter(
            f"{name}: the config lists {len(diff_ids)} layers, the manifest {len(layers)}"
        )
    return diff_ids


def _media_type(fetched: Fetched) -> str:
    """The served type, or the one the document declares when the server sent none."""
    if fetched.media_type in INDEX_TYPES | MANIFEST_TYPES:
        return fetched.media_type
    try:
        declared = json.loads(fetched.data).get("mediaType")
    except (ValueError, AttributeError):
        return fetched.media_type
    return str(declared or fetched.media_type)


def _json(data: bytes, name: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise InvalidParameter(f"{name}: the registry served a document that is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidParameter(f"{name}: the registry served a document that is not an object")
    return value


def _verify(data: bytes, desc: _Descriptor, name: str) -> None:
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if actual != desc.digest or len(data) != desc.size:
        raise System(
            f"blob {desc.digest} of {name} does not match its digest (got {actual}); "
            "corrupt blob refused"
        )


async def _rechunk(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Regroup a download's chunks into pieces of at most :data:`WRITE_CHUNK` bytes."""
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        while len(buffer) >= WRITE_CHUNK:
            yield bytes(buffer[:WRITE_CHUNK])
            del buffer[:WRITE_CHUNK]
    if buffer:
        yield bytes(buffer)
