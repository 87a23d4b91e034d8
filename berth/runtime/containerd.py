"""Berth's containerd client: images, snapshots, containers, tasks and exit events over gRPC.

The stubs come from ``scripts/gen_containerd_stubs.py``. The containerd namespace travels as the
``containerd-namespace`` gRPC metadata on every call. This module is the one place where gRPC
status codes become Berth errors (``_ERRORS``); callers only ever see ``berth.errors`` classes.
Teardown calls treat "not found" as success, and create calls converge when run again.

Every unary call has its own deadline (``call_timeout``, seconds: containerd answers them in
milliseconds), so a frozen or restarting containerd never holds a step for the step's whole
timeout; only the waits whose length the task decides (``wait_task``, ``wait_process``) and the
event stream have none. A deadline hit, a socket that is gone or a refused connection is
``Unavailable`` naming the call, the container and the node, and it says that it waits for
containerd on this node for ``grace_seconds`` (``berth.errors.Waiting``): the workflows retry the
step that long before giving up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import platform
import signal as signals
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

import grpc
from google.protobuf import any_pb2, empty_pb2, field_mask_pb2

from berth._containerd_api.events import task_pb2 as task_events_pb2
from berth._containerd_api.services.containers.v1 import containers_pb2, containers_pb2_grpc
from berth._containerd_api.services.content.v1 import content_pb2, content_pb2_grpc
from berth._containerd_api.services.events.v1 import events_pb2, events_pb2_grpc
from berth._containerd_api.services.images.v1 import images_pb2, images_pb2_grpc
from berth._containerd_api.services.leases.v1 import leases_pb2, leases_pb2_grpc
from berth._containerd_api.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from berth._containerd_api.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from berth._containerd_api.services.version.v1 import version_pb2_grpc
from berth._containerd_api.types.task import task_pb2
from berth.errors import (
    DEFAULT_GRACE_SECONDS,
    BerthError,
    Conflict,
    Forbidden,
    InvalidParameter,
    NotFound,
    System,
    Unavailable,
    Waiting,
)
from berth.runtime.types import Mount, TaskStatus
from berth.steps import MISSING_IMAGE

SNAPSHOTTER = "overlayfs"
RUNTIME = "io.containerd.runc.v2"
SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
NAMESPACE_HEADER = "containerd-namespace"
LEASE_HEADER = "containerd-lease"
# A lease with this label (RFC 3339) is collected by containerd's GC once the time has passed.
LEASE_EXPIRE_LABEL = "containerd.io/gc.expire"
# Snapshots that no container or image references are garbage to containerd's GC; Berth's rootfs
# snapshots outlive their containerd container (stop deletes it), so each one is a GC root.
GC_ROOT_LABEL = "containerd.io/gc.root"
# A unary containerd call's deadline: seconds, not the step's minute.
CALL_TIMEOUT_SECONDS = 10.0

_INDEX_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)
_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le"}

# The one translation from gRPC status codes to Berth's errors.
_ERRORS: dict[grpc.StatusCode, type[BerthError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: Conflict,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidParameter,
    grpc.StatusCode.FAILED_PRECONDITION: Conflict,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
    grpc.StatusCode.PERMISSION_DENIED: Forbidden,
}

T = TypeVar("T")
# A restarted containerd is reconnected to within a couple of seconds: gRPC's default backoff
# grows to two minutes, longer than a step waits for containerd.
_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


class AlreadyExists(Conflict):
    """containerd already has the object; a ``Conflict`` that create calls converge on."""


def translate_error(
    error: grpc.aio.AioRpcError,
    node: str,
    what: str,
    deadline: float | None = None,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
) -> BerthError:
    """The Berth error for a gRPC error from containerd, keeping containerd's text.

    ``deadline``: the call's own deadline, named when it was hit. An ``Unavailable`` says it
    waits for containerd on ``node`` for ``grace_seconds``.
    """
    code = error.code()
    cls: type[BerthError] = (
        AlreadyExists if code == grpc.StatusCode.ALREADY_EXISTS else _ERRORS.get(code, System)
    )
    text = error.details() or code.name
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and deadline is not None:
        text = f"containerd did not answer within {deadline:g}s ({text})"
    message = f"{what} on node {node!r}: {text}"
    if cls is Unavailable:
        return Unavailable.waiting(message, Waiting("containerd", node, grace_seconds))
    return cls(message)


@dataclass(frozen=True)
class ImageInfo:
    """An image resolved for running: its unpacked snapshot and its OCI config section."""

    ref: str
    chain_id: str
    config: dict[str, Any] = field(default_factory=dict)
    snapshotter: str = SNAPSHOTTER


@dataclass(frozen=True)
class ImageRecord:
    """An entry of containerd's image store: the name and what it points at."""

    name: str
    digest: str
    media_type: str
    # The size of the target (the index or manifest), not of the layers.
    size: int
    created_at: datetime


@dataclass(frozen=True)
class LeaseInfo:
    """A lease of the namespace: its id, when it was made, its labels."""

    id: str
    created_at: datetime
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskInfo:
    """A containerd task's init process."""

    id: str
    pid: int
    status: TaskStatus
    exit_status: int


@dataclass(frozen=True)
class TaskExit:
    """A task's init process exited."""

    container_id: str
    pid: int
    exit_status: int


def chain_id(diff_ids: list[str]) -> str:
    """The snapshot chain id of a layer stack: ``sha256(chain(n-1) + " " + diff(n))``."""
    if not diff_ids:
        raise InvalidParameter("image has no layers")
    chain = diff_ids[0]
    for diff_id in diff_ids[1:]:
        chain = "sha256:" + hashlib.sha256(f"{chain} {diff_id}".encode()).hexdigest()
    return chain


def host_platform() -> tuple[str, str]:
    """The (os, architecture) pair of this host in OCI terms."""
    machine = platform.machine()
    return "linux", _ARCHITECTURES.get(machine, machine)


def pick_manifest(index: Mapping[str, Any], ref: str, node: str) -> dict[str, Any]:
    """The entry of an image index (or Docker manifest list) for this host's os/architecture.

    Raises:
        NotFound: the index has no manifest for this platform.
    """
    want_os, want_arch = host_platform()
    for descriptor in index.get("manifests") or []:
        plat = descriptor.get("platform") or {}
        if plat.get("os", want_os) == want_os and plat.get("architecture") == want_arch:
            return dict(descriptor)
    raise NotFound(f"image {ref!r} has no manifest for {want_os}/{want_arch} on node {node!r}")


def _mounts(mounts: Any) -> list[Mount]:
    return [Mount(type=m.type, source=m.source, options=tuple(m.options)) for m in mounts]


# The one translation from containerd's task status (protobuf) to ``TaskStatus``.
_TASK_STATUSES: dict[int, TaskStatus] = {
    task_pb2.CREATED: TaskStatus.CREATED,
    task_pb2.RUNNING: TaskStatus.RUNNING,
    task_pb2.STOPPED: TaskStatus.STOPPED,
    task_pb2.PAUSED: TaskStatus.PAUSED,
    task_pb2.PAUSING: TaskStatus.PAUSING,
}


def _task_info(process: Any) -> TaskInfo:
    return TaskInfo(
        id=process.container_id or process.id,
        pid=process.pid,
        status=_TASK_STATUSES.get(process.status, TaskStatus.UNKNOWN),
        exit_status=process.exit_status,
    )


def _process_details_exec_id(value: bytes) -> str:
    """The ``exec_id`` (field 1) of the runc shim's ``ProcessDetails``; "" for init.

    The message is not among the generated stubs, and field 1 is all it has.
    """
    if len(value) < 2 or value[0] != 0x0A:
        return ""
    length, shift, index = 0, 0, 1
    while index < len(value):
        byte = value[index]
        length |= (byte & 0x7F) << shift
        index += 1
        if not byte & 0x80:
            break
        shift += 7
    return value[index : index + length].decode(errors="replace")


@dataclass(frozen=True)
class ProcessStdio:
    """Where a process's stdio goes: FIFO paths or stdio URIs; "" for none.

    With ``terminal`` the shim copies the console to ``stdout`` (``stderr`` is unused).
    """

    stdin: str
    stdout: str
    stderr: str
    terminal: bool = False


def stdio_uri(target: Path | str) -> str:
    """A task's stdio URI: a path is a ``file://`` URI; a string is already a URI."""
    return target if isinstance(target, str) else target.absolute().as_uri()


class ContainerdClient:
    """A connection to one node's containerd, scoped to one containerd namespace."""

    def __init__(
        self,
        socket: Path,
        namespace: str,
        node: str,
        call_timeout: float = CALL_TIMEOUT_SECONDS,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
    ) -> None:
        self.socket = socket
        self.namespace = namespace
        self.node = node
        self.call_timeout = call_timeout
        self.grace_seconds = grace_seconds
        self._channel = grpc.aio.insecure_channel(f"unix://{socket}", options=_CHANNEL_OPTIONS)
        self._metadata = ((NAMESPACE_HEADER, namespace),)
        self._version = version_pb2_grpc.VersionStub(self._channel)
        self._images = images_pb2_grpc.ImagesStub(self._channel)
        self._content = content_pb2_grpc.ContentStub(self._channel)
        self._snapshots = snapshots_pb2_grpc.SnapshotsStub(self._channel)
        self._containers = containers_pb2_grpc.ContainersStub(self._channel)
        self._tasks = tasks_pb2_grpc.TasksStub(self._channel)
        self._events = events_pb2_grpc.EventsStub(self._channel)
        self._leases = leases_pb2_grpc.LeasesStub(self._channel)

    async def __aenter__(self) -> ContainerdClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the gRPC channel."""
        await self._channel.close()

    async def _call(
        self,
        what: str,
        method: Callable[..., Awaitable[T]],
        request: Any,
        deadline: float | Literal["call"] | None = "call",
        lease: str | None = None,
    ) -> T:
        """One unary call with its deadline (``call_timeout`` unless given; None: no deadline).

        ``lease``: the containerd lease what the call creates is held by.
        """
        timeout = self.call_timeout if deadline == "call" else deadline
        try:
            return await method(request, metadata=self.metadata(lease), timeout=timeout)
        except grpc.aio.AioRpcError as error:
            raise self._error(error, what, timeout) from None

    def _error(self, error: grpc.aio.AioRpcError, what: str, deadline: float | None) -> BerthError:
        return translate_error(error, self.node, what, deadline, self.grace_seconds)

    # For the image store (berth.runtime.pull), which builds its own stubs on this channel.
    call = _call
    error = _error

    @property
    def channel(self) -> grpc.aio.Channel:
        """The gRPC channel to this node's containerd."""
        return self._channel

    def metadata(self, lease: str | None = None) -> tuple[tuple[str, str], ...]:
        """The call metadata: the namespace, and the lease when given."""
        return self._metadata if lease is None else (*self._metadata, (LEASE_HEADER, lease))

    # --- version -----------------------------------------------------------------------------

    async def version(self) -> str:
        """containerd's version string; also a liveness probe."""
        response = await self._call("containerd version", self._version.Version, empty_pb2.Empty())
        return str(response.version)

    # --- images ------------------------------------------------------------------------------

    async def resolve_image(self, ref: str) -> ImageInfo:
        """The unpacked image ``ref``: its snapshot chain id and OCI config section.

        Raises:
            NotFound: the image, one of its blobs, or its unpacked snapshot is missing.
        """
        try:
            return await self._resolve_image(ref)
        except NotFound as err:
            # Typed for the start saga: a pull makes this image whole (berth.steps).
            raise NotFound(err.message, {MISSING_IMAGE: ref}) from None

    async def _resolve_image(self, ref: str) -> ImageInfo:
        what = f"image {ref!r}"
        image = await self._call(what, self._images.Get, images_pb2.GetImageRequest(name=ref))
        target = image.image.target
        manifest = json.loads(await self._read_blob(ref, target.digest))
        if target.media_type in _INDEX_TYPES or "manifests" in manifest:
            entry = pick_manifest(manifest, ref, self.node)
            manifest = json.loads(await self._read_blob(ref, str(entry["digest"])))
        config_blob = json.loads(await self._read_blob(ref, manifest["config"]["digest"]))
        chain = chain_id(list(config_blob.get("rootfs", {}).get("diff_ids", [])))
        try:
            await self._call(
                what,
                self._snapshots.Stat,
                snapshots_pb2.StatSnapshotRequest(snapshotter=SNAPSHOTTER, key=chain),
            )
        except NotFound:
            raise NotFound(
                f"image {ref!r} is not unpacked for snapshotter {SNAPSHOTTER} "
                f"on node {self.node!r} (no snapshot {chain})"
            ) from None
        return ImageInfo(ref=ref, chain_id=chain, config=dict(config_blob.get("config") or {}))

    async def list_images(self) -> list[ImageRecord]:
        """Every image record of this namespace (name, target digest and media type)."""
        response = await self._call(
            "list images", self._images.List, images_pb2.ListImagesRequest()
        )
        return [
            ImageRecord(
                name=image.name,
                digest=image.target.digest,
                media_type=image.target.media_type,
                size=image.target.size,
                created_at=image.created_at.ToDatetime(tzinfo=UTC),
            )
            for image in response.images
        ]

    async def image_size(self, image: ImageRecord) -> int:
        """Bytes of the image's config and layers for this host's platform, as pulled."""
        manifest = json.loads(await self._read_blob(image.name, image.digest))
        if image.media_type in _INDEX_TYPES or "manifests" in manifest:
            entry = pick_manifest(manifest, image.name, self.node)
            manifest = json.loads(await self._read_blob(image.name, str(entry["digest"])))
        parts = [manifest.get("config") or {}, *(manifest.get("layers") or [])]
        return sum(int(part.get("size", 0)) for part in parts)

    async def delete_image(self, name: str, sync: bool = True) -> None:
        """Delete the image record; with ``sync`` containerd collects what only it kept before
        answering. A missing image is success."""
        with contextlib.suppress(NotFound):
            await self._call(
                f"delete image {name!r}",
                self._images.Delete,
                images_pb2.DeleteImageRequest(name=name, sync=sync),
            )

    async def _read_blob(self, ref: str, digest: str) -> bytes:
        chunks: list[bytes] = []
        try:
            stream = self._content.Read(
                content_pb2.ReadContentRequest(digest=digest),
                metadata=self._metadata,
                timeout=self.call_timeout,
            )
            async for chunk in stream:
                chunks.append(chunk.data)
        except grpc.aio.AioRpcError as error:
            raise self._error(error, f"image {ref!r} blob {digest}", self.call_timeout) from None
        return b"".join(chunks)

    # --- leases ------------------------------------------------------------------------------

    async def create_lease(
        self, lease: str, expires: datetime, labels: Mapping[str, str] | None = None
    ) -> None:
        """Create the lease, collectable after ``expires``, with ``labels``; an existing one is
        kept as it is."""
        request = leases_pb2.CreateRequest(
            id=lease,
            labels={
                **(labels or {}),
                LEASE_EXPIRE_LABEL: expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        )
        with contextlib.suppress(AlreadyExists):
            await self._call(f"create lease {lease}", self._leases.Create, request)

    async def delete_lease(self, lease: str) -> None:
        """Delete the lease (what only it held becomes garbage); a missing one is success."""
        with contextlib.suppress(NotFound):
            await self._call(
                f"delete lease {lease}", self._leases.Delete, leases_pb2.DeleteRequest(id=lease)
            )

    async def list_leases(self) -> list[str]:
        """The ids of every lease of this namespace."""
        return [lease.id for lease in await self.lease_infos()]

    async def lease_infos(self) -> list[LeaseInfo]:
        """Every lease of this namespace, with its creation time and labels."""
        response = await self._call("list leases", self._leases.List, leases_pb2.ListRequest())
        return [
            LeaseInfo(lease.id, lease.created_at.ToDatetime(UTC), dict(lease.labels))
            for lease in response.leases
        ]

    async def add_to_lease(self, lease: str, kind: str, resource_id: str) -> None:
        """Let ``lease`` hold an existing resource (``content``, ``snapshots/<snapshotter>``)."""
        await self._call(
            f"add {resource_id} to lease {lease}",
            self._leases.AddResource,
            leases_pb2.AddResourceRequest(
                id=lease, resource=leases_pb2.Resource(id=resource_id, type=kind)
            ),
        )

    # --- snapshots ---------------------------------------------------------------------------

    async def prepare_snapshot(self, key: str, parent: str) -> list[Mount]:
        """Prepare the active snapshot ``key`` on ``parent`` (or find it) and return its mounts."""
        request = snapshots_pb2.PrepareSnapshotRequest(
            snapshotter=SNAPSHOTTER, key=key, parent=parent, labels={GC_ROOT_LABEL: "berth"}
        )
        try:
            response = await self._call(f"snapshot {key!r}", self._snapshots.Prepare, request)
        except AlreadyExists:
            return await self.snapshot_mounts(key)
        return _mounts(response.mounts)

    async def snapshot_mounts(self, key: str) -> list[Mount]:
        """The mounts of the existing snapshot ``key``; NotFound if there is none."""
        response = await self._call(
            f"snapshot {key!r}",
            self._snapshots.Mounts,
            snapshots_pb2.MountsRequest(snapshotter=SNAPSHOTTER, key=key),
        )
        return _mounts(response.mounts)

    async def remove_snapshot(self, key: str) -> None:
        """Remove the snapshot ``key``; a missing one is success."""
        with contextlib.suppress(NotFound):
            await self._call(
                f"remove snapshot {key!r}",
                self._snapshots.Remove,
                snapshots_pb2.RemoveSnapshotRequest(snapshotter=SNAPSHOTTER, key=key),
            )

    async def list_snapshots(self) -> list[str]:
        """The keys of every snapshot of this namespace."""
        keys: list[str] = []
        try:
            stream = self._snapshots.List(
                snapshots_pb2.ListSnapshotsRequest(snapshotter=SNAPSHOTTER),
                metadata=self._metadata,
                timeout=self.call_timeout,
            )
            async for response in stream:
                keys.extend(info.name for info in response.info)
        except grpc.aio.AioRpcError as error:
            raise self._error(error, "list snapshots", self.call_timeout) from None
        return keys

    # --- containers --------------------------------------------------------------------------

    async def create_container(
        self,
        container_id: str,
        image: str,
        snapshot_key: str,
        spec: Mapping[str, Any],
        labels: Mapping[str, str],
    ) -> None:
        """Create the containerd container (runc v2); an existing one is replaced."""
        container = containers_pb2.Container(
            id=container_id,
            labels=dict(labels),
            image=image,
            runtime=containers_pb2.Container.Runtime(name=RUNTIME),
            spec=any_pb2.Any(type_url=SPEC_TYPE_URL, value=json.dumps(spec).encode()),
            snapshotter=SNAPSHOTTER,
            snapshot_key=snapshot_key,
        )
        request = containers_pb2.CreateContainerRequest(container=container)
        what = f"create container {container_id}"
        try:
            await self._call(what, self._containers.Create, request)
        except AlreadyExists:
            # A retry after a half-finished attempt: start over from a clean slate.
            await self.delete_task(container_id)
            await self.delete_container(container_id)
            await self._call(what, self._containers.Create, request)

    async def delete_container(self, container_id: str) -> None:
        """Delete the containerd container; a missing one is success."""
        with contextlib.suppress(NotFound):
            await self._call(
                f"delete container {container_id}",
                self._containers.Delete,
                containers_pb2.DeleteContainerRequest(id=container_id),
            )

    async def has_container(self, container_id: str) -> bool:
        """Whether the containerd container exists."""
        try:
            await self._call(
                f"container {container_id}",
                self._containers.Get,
                containers_pb2.GetContainerRequest(id=container_id),
            )
        except NotFound:
            return False
        return True

    async def container_spec(self, container_id: str) -> dict[str, Any]:
        """The OCI spec the containerd container holds; NotFound if there is no container."""
        response = await self._call(
            f"container {container_id}",
            self._containers.Get,
            containers_pb2.GetContainerRequest(id=container_id),
        )
        spec: dict[str, Any] = json.loads(response.container.spec.value)
        return spec

    async def set_container_spec(self, container_id: str, spec: Mapping[str, Any]) -> None:
        """Replace the containerd container's spec (its next task is created from it)."""
        container = containers_pb2.Container(
            id=container_id,
            spec=any_pb2.Any(type_url=SPEC_TYPE_URL, value=json.dumps(spec).encode()),
        )
        await self._call(
            f"update container {container_id}",
            self._containers.Update,
            containers_pb2.UpdateContainerRequest(
                container=container, update_mask=field_mask_pb2.FieldMask(paths=["spec"])
            ),
        )

    async def list_containers(self) -> list[str]:
        """The ids of every container of this namespace."""
        response = await self._call(
            "list containers", self._containers.List, containers_pb2.ListContainersRequest()
        )
        return [c.id for c in response.containers]

    # --- tasks -------------------------------------------------------------------------------

    async def create_task(
        self,
        container_id: str,
        stdout: Path | str,
        stderr: Path | str,
        stdin: str = "",
        terminal: bool = False,
    ) -> int:
        """Create (not start) the container's task; return the init pid.

        Converges: a CREATED, RUNNING or PAUSED task is kept and its pid returned; a STOPPED one
        is deleted and created again. No rootfs mounts are passed: the spec's root.path is
        already mounted by the caller. ``stdout``/``stderr``: a file (the shim's ``file://``
        copy, which writes both streams to the stdout file, unbounded) or a stdio URI, such as
        the ``binary://`` log driver's (``berth.container_logs.driver_uri``) that gets both.
        ``stdin``: a FIFO the shim reads the init's stdin from ("" for none); ``terminal``: the
        init gets a console, which the shim copies to ``stdout``.
        """
        while True:
            try:
                task = await self.get_task(container_id)
            except NotFound:
                pass
            else:
                if task.status is not TaskStatus.STOPPED:
                    return task.pid
                await self.delete_task(container_id)
            request = tasks_pb2.CreateTaskRequest(
                container_id=container_id,
                stdout=stdio_uri(stdout),
                stderr=stdio_uri(stderr),
                stdin=stdin,
                terminal=terminal,
            )
            try:
                response = await self._call(
                    f"create task {container_id}", self._tasks.Create, request
                )
            except AlreadyExists:
                continue  # created concurrently or by the attempt that timed out: look again
            return int(response.pid)

    async def start_task(self, container_id: str) -> int:
        """Start the created task and return its pid; a task already running is success."""
        try:
            response = await self._call(
                f"start task {container_id}",
                self._tasks.Start,
                tasks_pb2.StartRequest(container_id=container_id),
            )
        except (Conflict, System):
            # runc says "cannot start a running process" as UNKNOWN: look before failing.
            task = await self.get_task(container_id)
            if task.status in (TaskStatus.RUNNING, TaskStatus.PAUSED):
                return task.pid
            raise
        return int(response.pid)

    async def get_task(self, container_id: str) -> TaskInfo:
        """The container's task; NotFound if it has none."""
        response = await self._call(
            f"task {container_id}",
            self._tasks.Get,
            tasks_pb2.GetRequest(container_id=container_id),
        )
        return _task_info(response.process)

    async def list_tasks(self) -> list[TaskInfo]:
        """Every task of this namespace."""
        response = await self._call("list tasks", self._tasks.List, tasks_pb2.ListTasksRequest())
        return [_task_info(process) for process in response.tasks]

    async def kill_task(self, container_id: str, signal: int, all_processes: bool = False) -> None:
        """Signal the task's init (or every process of it); a missing task is success."""
        with contextlib.suppress(NotFound):
            await self._call(
                f"kill task {container_id}",
                self._tasks.Kill,
                tasks_pb2.KillRequest(container_id=container_id, signal=signal, all=all_processes),
            )

    async def wait_task(self, container_id: str) -> int:
        """Wait for the task's init to exit and return its exit status."""
        response = await self._call(
            f"wait task {container_id}",
            self._tasks.Wait,
            tasks_pb2.WaitRequest(container_id=container_id),
            deadline=None,  # as long as the task takes; callers bound it when they must
        )
        return int(response.exit_status)

    async def delete_task(self, container_id: str) -> int | None:
        """Delete the task (a live one is SIGKILLed and waited first); its exit status or None.

        A missing task is success and returns None.
        """
        try:
            task = await self.get_task(container_id)
        except NotFound:
            return None
        if task.status is not TaskStatus.STOPPED:
            # runc's kill --all thaws a paused cgroup after signalling, so SIGKILL suffices; a
            # CREATED task is killed too, since deleting it directly takes the shim ~2 s.
            waiter = asyncio.ensure_future(self.wait_task(container_id))
            try:
                await self.kill_task(container_id, signals.SIGKILL, all_processes=True)
                await asyncio.wait_for(waiter, self.call_timeout)
            except NotFound:
                pass
            except TimeoutError:
                raise Unavailable.waiting(
                    f"wait task {container_id} on node {self.node!r}: not gone "
                    f"{self.call_timeout:g}s after SIGKILL",
                    Waiting("containerd", self.node, self.grace_seconds),
                ) from None
            finally:
                waiter.cancel()
        try:
            response = await self._call(
                f"delete task {container_id}",
                self._tasks.Delete,
                tasks_pb2.DeleteTaskRequest(container_id=container_id),
            )
        except NotFound:
            return None
        return int(response.exit_status)

    async def pause_task(self, container_id: str) -> None:
        """Freeze every process of the task."""
        await self._call(
            f"pause task {container_id}",
            self._tasks.Pause,
            tasks_pb2.PauseTaskRequest(container_id=container_id),
        )

    async def resume_task(self, container_id: str) -> None:
        """Thaw the paused task."""
        await self._call(
            f"resume task {container_id}",
            self._tasks.Resume,
            tasks_pb2.ResumeTaskRequest(container_id=container_id),
        )

    # --- exec processes ----------------------------------------------------------------------

    async def exec_process(
        self, container_id: str, exec_id: str, process: Mapping[str, Any], output: Path | str
    ) -> None:
        """Add the exec process ``exec_id`` (an OCI process spec) to the task; not started.

        Both streams go to ``output``: a file (the shim's ``file://`` copy) or a stdio URI.
        """
        uri = stdio_uri(output)
        await self.exec_process_stdio(container_id, exec_id, process, ProcessStdio("", uri, uri))

    async def start_process(self, container_id: str, exec_id: str) -> int:
        """Start the exec process and return its pid."""
        response = await self._call(
            f"start exec {exec_id} in task {container_id}",
            self._tasks.Start,
            tasks_pb2.StartRequest(container_id=container_id, exec_id=exec_id),
        )
        return int(response.pid)

    async def wait_process(self, container_id: str, exec_id: str) -> int:
        """Wait for the exec process to exit and return its exit status."""
        response = await self._call(
            f"wait exec {exec_id} in task {container_id}",
            self._tasks.Wait,
            tasks_pb2.WaitRequest(container_id=container_id, exec_id=exec_id),
            deadline=None,  # as long as the process takes; callers bound it when they must
        )
        return int(response.exit_status)

    async def kill_process(self, container_id: str, exec_id: str, signal: int) -> None:
        """Signal the exec process; a missing or finished one is success."""
        with contextlib.suppress(NotFound, Conflict):
            await self._call(
                f"kill exec {exec_id} in task {container_id}",
                self._tasks.Kill,
                tasks_pb2.KillRequest(container_id=container_id, exec_id=exec_id, signal=signal),
            )

    async def delete_process(self, container_id: str, exec_id: str) -> None:
        """Delete the exited exec process (a live one is SIGKILLed first); missing is success."""
        what = f"delete exec {exec_id} in task {container_id}"
        request = tasks_pb2.DeleteProcessRequest(container_id=container_id, exec_id=exec_id)
        try:
            await self._call(what, self._tasks.DeleteProcess, request)
        except NotFound:
            return
        except (Conflict, System):
            # Still running (runc refuses to delete a live process): kill, wait, delete.
            await self.kill_process(container_id, exec_id, signals.SIGKILL)
            with contextlib.suppress(NotFound):
                await asyncio.wait_for(self.wait_process(container_id, exec_id), 10)
                await self._call(what, self._tasks.DeleteProcess, request)

    async def exec_ids(self, container_id: str) -> list[str]:
        """The exec ids of the task's live exec processes (from ``ListPids``)."""
        response = await self._call(
            f"list pids of task {container_id}",
            self._tasks.ListPids,
            tasks_pb2.ListPidsRequest(container_id=container_id),
        )
        found = []
        for process in response.processes:
            exec_id = _process_details_exec_id(process.info.value)
            if exec_id:
                found.append(exec_id)
        return found

    async def exec_process_stdio(
        self, container_id: str, exec_id: str, process: Mapping[str, Any], stdio: ProcessStdio
    ) -> None:
        """Add the exec process ``exec_id`` (an OCI process spec) with ``stdio``; not started."""
        await self._call(
            f"exec {exec_id} in task {container_id}",
            self._tasks.Exec,
            tasks_pb2.ExecProcessRequest(
                container_id=container_id,
                exec_id=exec_id,
                stdin=stdio.stdin,
                stdout=stdio.stdout,
                stderr=stdio.stderr,
                terminal=stdio.terminal,
                spec=any_pb2.Any(type_url=PROCESS_TYPE_URL, value=json.dumps(process).encode()),
            ),
        )

    async def resize_pty(self, container_id: str, exec_id: str, cols: int, rows: int) -> None:
        """Set the terminal size of the exec process (``exec_id`` "": the task's init)."""
        await self._call(
            f"resize pty of {exec_id or 'init'} in task {container_id}",
            self._tasks.ResizePty,
            tasks_pb2.ResizePtyRequest(
                container_id=container_id, exec_id=exec_id, width=cols, height=rows
            ),
        )

    async def close_stdin(self, container_id: str, exec_id: str) -> None:
        """Close the shim's end of the process's stdin FIFO, so the process reads its end."""
        await self._call(
            f"close stdin of {exec_id or 'init'} in task {container_id}",
            self._tasks.CloseIO,
            tasks_pb2.CloseIORequest(container_id=container_id, exec_id=exec_id, stdin=True),
        )

    # --- events ------------------------------------------------------------------------------

    async def subscribe_task_exits(self) -> AsyncGenerator[TaskExit, None]:
        """Exits of tasks' init processes in this namespace, as containerd publishes them.

        Exits of exec'd processes (whose id differs from the container id) are skipped.
        """
        request = events_pb2.SubscribeRequest(
            filters=[f'topic=="/tasks/exit",namespace=="{self.namespace}"']
        )
        try:
            async for envelope in self._events.Subscribe(request, metadata=self._metadata):
                if envelope.topic != "/tasks/exit" or envelope.namespace != self.namespace:
                    continue
                event = task_events_pb2.TaskExit.FromString(envelope.event.value)
                if event.id and event.id != event.container_id:
                    continue
                yield TaskExit(
                    container_id=event.container_id, pid=event.pid, exit_status=event.exit_status
                )
        except grpc.aio.AioRpcError as error:
            raise self._error(error, "subscribe to task exits", None) from None
