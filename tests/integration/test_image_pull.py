"""The start's pull step and image pulls on the real stack: the suite's registry (distribution
2.8 on loopback), containerd's content, snapshot, lease and image stores, Temporal.

Every test pushes an image of its own (busybox plus a layer holding a random id) to the suite's
registry, so no test finds what another one pulled.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import re
import tarfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from berth._containerd_api.services.content.v1 import content_pb2, content_pb2_grpc
from berth.db.models import Container, SagaStep
from berth.errors import Forbidden, NotFound
from berth.leaks import Finding, LeakKind, check_node
from berth.registry.client import RegistryClient
from berth.runtime.containerd import ContainerdClient, host_platform
from berth.runtime.image import build_oci_layout, busybox_rootfs_tar, file_layer
from berth.runtime.pull import PULL_WORKFLOW_LABEL, ImagePuller, pull_lease_id
from dev.registry import LocalRegistry, basic_auth, push_blob, push_manifest, push_oci_layout
from dev.stack import BackgroundProcess, start_background, stop_background
from tests.integration.conftest import Stack
from tests.integration.node_agent import Node2
from tests.integration.test_published_ports import node_reconciler
from tests.support.stack import REGISTRY_PROCESS, SuiteStack, free_port


@dataclass(frozen=True)
class PushedImage:
    """An image a test pushed: its reference and its layers' digests (bottom first)."""

    ref: str
    repository: str
    layers: list[str]


def _layers(tmp: Path, count: int) -> list[bytes]:
    rootfs = busybox_rootfs_tar(tmp / "rootfs.tar").read_bytes()
    extra = [
        file_layer({f"etc/berth-layer-{i}": f"{uuid.uuid4()}\n".encode() * 4096})
        for i in range(count - 1)
    ]
    return [rootfs, *extra]


def push_image(
    registry: LocalRegistry,
    tmp: Path,
    layers: int = 2,
    compression: str = "gzip",
    auth: str | None = None,
) -> PushedImage:
    """Build a fresh image (busybox + ``layers - 1`` random ones) and push it to ``registry``."""
    repository = f"berth/t-{uuid.uuid4().hex[:10]}"
    ref = f"{registry.address}/{repository}:v1"
    tar = build_oci_layout(tmp / f"{uuid.uuid4().hex}.tar", ref, _layers(tmp, layers), compression)
    push_oci_layout(tar, registry.address, repository, "v1", auth)
    manifest = _manifest_of(tar)
    return PushedImage(ref, repository, [layer["digest"] for layer in manifest["layers"]])


def _manifest_of(tar: Path) -> dict[str, list[dict[str, str]]]:
    with tarfile.open(tar) as archive:
        index = json.load(archive.extractfile("index.json"))  # type: ignore[arg-type]
        digest = index["manifests"][0]["digest"].removeprefix("sha256:")
        manifest = archive.extractfile(f"blobs/sha256/{digest}")
        assert manifest is not None
        return dict(json.load(manifest))


def blob_gets(log_file: Path, repository: str, digest: str) -> int:
    """How often the registry served the blob (its access log: one line per GET)."""
    log = log_file.read_text()
    return len(re.findall(rf'"GET /v2/{re.escape(repository)}/blobs/{digest} HTTP', log))


async def leases(puller: ImagePuller) -> list[str]:
    return [lease for lease in await puller.list_leases() if lease.startswith("berth-")]


async def content_digests(containerd: ContainerdClient) -> set[str]:
    """Every blob in the node's content store (``ctr content ls``)."""
    stub = content_pb2_grpc.ContentStub(containerd.channel)
    found: set[str] = set()
    request = content_pb2.ListContentRequest()
    async for response in stub.List(request, metadata=containerd.metadata()):
        found.update(info.digest for info in response.info)
    return found


async def ingests(containerd: ContainerdClient) -> list[str]:
    """Unfinished writes in the node's content store."""
    stub = content_pb2_grpc.ContentStub(containerd.channel)
    response = await stub.ListStatuses(
        content_pb2.ListStatusesRequest(), metadata=containerd.metadata()
    )
    return [status.ref for status in response.statuses]


async def lease_leaks(stack: Stack) -> list[Finding]:
    """What node-1's leak checker says about pull leases."""
    findings = await check_node(
        stack.settings.node,
        stack.settings.node_paths(),
        stack.containerd,
        stack.runtime.cni,
        stack.sessions,
    )
    return [finding for finding in findings if finding.kind is LeakKind.LEASE_OF_ENDED_PULL]


@pytest.fixture
def registry(suite_stack: SuiteStack) -> LocalRegistry:
    return suite_stack.registry


@pytest.fixture
def registry_log(suite_stack: SuiteStack) -> Path:
    return suite_stack.suite.paths.log_file(REGISTRY_PROCESS)


@pytest.fixture
def puller(stack: Stack, registry: LocalRegistry) -> ImagePuller:
    """A puller on node-1's containerd (the in-process agent's), for looking and direct pulls."""
    return ImagePuller(
        stack.containerd, lambda: RegistryClient([registry.address], node=stack.settings.node)
    )


async def test_start_pulls_missing_image_into_containerd_and_drops_its_lease(
    stack: Stack, registry: LocalRegistry, puller: ImagePuller, tmp_path: Path
) -> None:
    image = push_image(registry, tmp_path, layers=2)
    container_id = await stack.create(image=image.ref)
    assert not await puller.has_image(image.ref)

    started = await stack.berth.start(container_id)

    assert (await stack.containerd.get_task(container_id)).pid == started.pid
    resolved = await stack.containerd.resolve_image(image.ref)
    assert resolved.chain_id in await stack.containerd.list_snapshots()
    assert set(image.layers) <= await content_digests(stack.containerd)
    assert pull_lease_id(container_id) not in await leases(puller)
    assert await ingests(stack.containerd) == []
    async with stack.sessions() as session:
        steps = (
            await session.scalars(
                select(SagaStep.step)
                .where(SagaStep.container_id == container_id)
                .order_by(SagaStep.id)
            )
        ).all()
    assert list(steps) == ["pull", "mount", "network", "spec", "shim", "task"]


async def test_start_with_zstd_layers_pulls_and_runs(
    stack: Stack, registry: LocalRegistry, tmp_path: Path
) -> None:
    image = push_image(registry, tmp_path, layers=2, compression="zstd")
    container_id = await stack.create(image=image.ref, cmd=["cat", "/etc/berth-layer-0"])

    await stack.berth.start(container_id)

    assert (await stack.containerd.resolve_image(image.ref)).chain_id


async def test_start_with_pull_policy_never_and_missing_image_is_not_found(
    stack: Stack, registry: LocalRegistry, registry_log: Path, puller: ImagePuller, tmp_path: Path
) -> None:
    image = push_image(registry, tmp_path, layers=1)
    container_id = await stack.create(image=image.ref, pull_policy="never")

    with pytest.raises(NotFound, match="pull policy is never"):
        await stack.berth.start(container_id)

    assert not await puller.has_image(image.ref)
    assert blob_gets(registry_log, image.repository, image.layers[0]) == 0
    assert (await stack.berth.get(container_id)).state != "running"


async def test_start_of_unknown_image_is_not_found_naming_it_and_leaves_nothing(
    stack: Stack, registry: LocalRegistry, puller: ImagePuller
) -> None:
    ref = f"{registry.address}/berth/no-such-image-{uuid.uuid4().hex[:8]}:v1"
    container_id = await stack.create(image=ref)
    before = await content_digests(stack.containerd)

    with pytest.raises(NotFound, match=re.escape(ref.split(":v1")[0])):
        await stack.berth.start(container_id)

    assert await leases(puller) == []
    assert await content_digests(stack.containerd) == before
    assert await lease_leaks(stack) == []
    assert not await puller.has_image(ref)
    assert (await stack.footprint(container_id)).rootfs_mounts == 0


async def test_pull_of_corrupt_blob_is_refused_and_leaves_nothing(
    stack: Stack, registry: LocalRegistry, puller: ImagePuller, tmp_path: Path
) -> None:
    image = push_image(registry, tmp_path, layers=2)
    top = image.layers[-1].removeprefix("sha256:")
    data = registry.storage / "docker/registry/v2/blobs/sha256" / top[:2] / top / "data"
    blob = bytearray(data.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # same size, other bytes
    data.write_bytes(bytes(blob))
    container_id = await stack.create(image=image.ref)

    with pytest.raises(Exception, match="does not match its digest") as failure:
        await stack.berth.start(container_id)

    assert type(failure.value).__name__ == "System"
    assert image.layers[-1] not in await content_digests(stack.containerd)
    assert await leases(puller) == []
    assert await ingests(stack.containerd) == []
    assert not await puller.has_image(image.ref)


async def test_two_starts_needing_one_image_pull_it_once(
    stack: Stack, registry: LocalRegistry, registry_log: Path, tmp_path: Path
) -> None:
    image = push_image(registry, tmp_path, layers=3)
    first = await stack.create(image=image.ref)
    second = await stack.create(image=image.ref)

    results = await asyncio.gather(stack.berth.start(first), stack.berth.start(second))

    assert all(result.pid for result in results)
    gets = [blob_gets(registry_log, image.repository, layer) for layer in image.layers]
    # The busybox layer may be on the node already (another test pulled it); the others are not.
    assert gets[0] <= 1 and gets[1:] == [1, 1]


@pytest.fixture
async def auth_registry(
    suite_stack: SuiteStack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LocalRegistry]:
    """A second registry that requires basic auth (htpasswd), run by pid for this test."""
    root = suite_stack.suite.state_dir / f"registry-auth-{uuid.uuid4().hex[:6]}"
    registry = LocalRegistry(root, free_port(), users=(("berth", "s3cret-pass"),))
    registry.write_config()
    paths = suite_stack.suite.paths
    name = f"registry-auth-{registry.port}"
    start_background(paths, BackgroundProcess(name, registry.argv(), str(registry.config_file)))
    try:
        registry.wait_ready()
        yield registry
    finally:
        stop_background(paths, name, str(registry.config_file))


def _auth_file(path: Path, registry: LocalRegistry, user: str, password: str) -> Path:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {registry.address: {"auth": token}}}))
    return path


async def test_pull_from_registry_with_htpasswd_auth_needs_its_credentials(
    stack: Stack, auth_registry: LocalRegistry, tmp_path: Path
) -> None:
    image = push_image(auth_registry, tmp_path, layers=1, auth=basic_auth("berth", "s3cret-pass"))

    def puller_with(auth_file: Path | None) -> ImagePuller:
        return ImagePuller(
            stack.containerd,
            lambda: RegistryClient(
                [auth_registry.address], auth_file=auth_file, node=stack.settings.node
            ),
        )

    anonymous = puller_with(tmp_path / "none.json")
    with pytest.raises(Forbidden, match="no credentials"):
        await anonymous.pull(image.ref, "berth-pull-test-anon")
    wrong = puller_with(_auth_file(tmp_path / "wrong.json", auth_registry, "berth", "nope"))
    with pytest.raises(Forbidden, match="refused the credentials"):
        await wrong.pull(image.ref, "berth-pull-test-wrong")
    right = puller_with(_auth_file(tmp_path / "right.json", auth_registry, "berth", "s3cret-pass"))

    pulled = await right.pull(image.ref, "berth-pull-test-right")

    assert pulled is not None and await right.has_image(image.ref)
    for lease in ("berth-pull-test-anon", "berth-pull-test-wrong"):
        await right.delete_lease(lease)  # what the step's own error path does
    assert "berth-pull-test-right" not in await right.list_leases()


async def test_agent_killed_mid_pull_then_restarted_start_completes_and_nothing_is_orphaned(
    node2: Node2, registry: LocalRegistry, registry_log: Path, tmp_path: Path
) -> None:
    image = push_image(registry, tmp_path, layers=4)
    container_id = await node2.create(image=image.ref)
    node2.agent.set_faults({"point": "pull:layer:after", "action": "crash", "times": 1})
    puller = ImagePuller(
        node2.runtime.containerd, lambda: RegistryClient([registry.address], node="node-2")
    )
    # The busybox layer is in every pushed image: an earlier test may have brought it here.
    already_here = set(image.layers) & await content_digests(node2.runtime.containerd)

    handle = await node2.start_workflow(container_id)
    await node2.agent.wait_dead()
    committed = set(image.layers) & await content_digests(node2.runtime.containerd) - already_here
    assert committed, "the crash came after a layer was committed"
    assert pull_lease_id(container_id) in await puller.list_leases()
    await node2.agent.start()
    result = await asyncio.wait_for(handle.result(), 120)

    assert result.pid > 0
    assert await puller.has_image(image.ref)
    assert pull_lease_id(container_id) not in await puller.list_leases()
    assert await ingests(node2.runtime.containerd) == []
    assert [f for f in await node2.leaks() if f.kind is LeakKind.LEASE_OF_ENDED_PULL] == []
    # What the first attempt committed was not fetched again, nor what the node had before.
    assert all(blob_gets(registry_log, image.repository, layer) == 1 for layer in committed)
    assert all(blob_gets(registry_log, image.repository, layer) == 0 for layer in already_here)


async def test_leak_checker_reports_the_lease_of_a_pull_that_ended_without_dropping_it(
    stack: Stack,
) -> None:
    owner = uuid.uuid4().hex * 2  # a container id this node has no record of
    lease = pull_lease_id(owner)
    await stack.containerd.create_lease(lease, datetime.now(UTC) + timedelta(minutes=5))
    try:
        found = await lease_leaks(stack)
    finally:
        await stack.containerd.delete_lease(lease)

    assert [(f.subject, f.container_id) for f in found] == [(lease, owner)]
    assert await lease_leaks(stack) == []


class HoldAfterLayer:
    """A fault hook that holds a pull after its first fetched layer until released."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def at(self, point: str, container_id: str | None) -> None:
        if point == "pull:layer:after":
            self.reached.set()
            await self.release.wait()


async def pull_held(
    stack: Stack, registry: LocalRegistry, ref: str, lease: str, workflow: str
) -> tuple[asyncio.Task[object], HoldAfterLayer]:
    """A pull of ``ref`` under ``lease`` for ``workflow``, held after its first layer."""
    hold = HoldAfterLayer()
    puller = ImagePuller(
        stack.containerd,
        lambda: RegistryClient([registry.address], node=stack.settings.node),
        hold,
    )
    task: asyncio.Task[object] = asyncio.create_task(puller.pull(ref, lease, workflow=workflow))
    await asyncio.wait_for(hold.reached.wait(), 60)
    return task, hold


async def test_reconciler_deletes_the_lease_of_a_killed_pull_and_keeps_a_running_ones(
    stack: Stack, registry: LocalRegistry, puller: ImagePuller, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    dead_lease, live_lease = pull_lease_id(f"image-dead-{tag}"), pull_lease_id(f"image-{tag}")
    killed, _ = await pull_held(
        stack, registry, push_image(registry, tmp_path).ref, dead_lease, f"pull-dead-{tag}"
    )
    killed.cancel()  # the agent died mid-pull: nothing dropped the lease
    with pytest.raises(asyncio.CancelledError):
        await killed
    image = push_image(registry, tmp_path)
    running, hold = await pull_held(stack, registry, image.ref, live_lease, f"pull-live-{tag}")

    async def only_the_live_pull_runs(workflow: str) -> bool:
        return workflow == f"pull-live-{tag}"

    try:
        labels = {i.id: i.labels for i in await stack.containerd.lease_infos()}
        assert labels[dead_lease][PULL_WORKFLOW_LABEL] == f"pull-dead-{tag}"
        # Younger than the default bound: kept, whatever its workflow says.
        await node_reconciler(stack, only_the_live_pull_runs).reconcile()
        assert {dead_lease, live_lease} <= set(await leases(puller))

        repairs = await node_reconciler(
            stack, only_the_live_pull_runs, stale_pull_lease_age=timedelta(0)
        ).reconcile()

        assert [r.subject for r in repairs if r.kind == "pull-lease-leftover"] == [dead_lease]
        assert dead_lease not in await leases(puller)
        assert live_lease in await leases(puller)
    finally:
        hold.release.set()
    await asyncio.wait_for(running, 60)
    assert await puller.has_image(image.ref)
    assert live_lease not in await leases(puller)


async def test_reconciler_keeps_the_pull_lease_of_a_container_an_operation_holds(
    stack: Stack, puller: ImagePuller
) -> None:
    """A start's pull holds its container: the lease stays, even when its workflow looks gone;
    once no operation holds the container, the lease goes."""
    container_id = await stack.create()
    lease = pull_lease_id(container_id)
    await puller.create_lease(lease, f"container-start-{container_id}")
    operation = f"container-start-{container_id}@run"
    async with stack.sessions.begin() as session:
        container = await session.get(Container, container_id)
        assert container is not None
        container.operation = operation

    async def only_the_operation_runs(workflow: str) -> bool:
        return workflow == operation  # not the lease's label, a bare workflow id

    reconciler = node_reconciler(stack, only_the_operation_runs, timedelta(0))
    try:
        repairs = await reconciler.reconcile()
        assert lease in await leases(puller)
        assert [r for r in repairs if r.kind == "pull-lease-leftover"] == []
    finally:
        async with stack.sessions.begin() as session:
            container = await session.get(Container, container_id)
            assert container is not None
            container.operation = None

    repairs = await reconciler.reconcile()

    assert [(r.kind, r.container_id) for r in repairs] == [("pull-lease-leftover", container_id)]
    assert lease not in await leases(puller)


def _push_manifest_image(
    registry: LocalRegistry,
    repository: str,
    tag: str,
    layers: list[bytes],
    architecture: str,
    docker: bool = False,
) -> tuple[str, int]:
    """Push one image (gzip layers) by hand: an OCI or Docker schema 2 manifest, under ``tag``
    (None: by digest only). Its manifest's digest and size."""
    layer_type = (
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
        if docker
        else "application/vnd.oci.image.layer.v1.tar+gzip"
    )
    config_type = (
        "application/vnd.docker.container.image.v1+json"
        if docker
        else "application/vnd.oci.image.config.v1+json"
    )
    manifest_type = (
        "application/vnd.docker.distribution.manifest.v2+json"
        if docker
        else "application/vnd.oci.image.manifest.v1+json"
    )
    base = f"http://{registry.address}"
    compressed = [gzip.compress(layer, mtime=0) for layer in layers]
    config = json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers],
            },
        }
    ).encode()

    def descriptor(media_type: str, data: bytes) -> dict[str, object]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        push_blob(base, repository, digest, data, None)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": descriptor(config_type, config),
            "layers": [descriptor(layer_type, blob) for blob in compressed],
        }
    ).encode()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    push_manifest(base, repository, tag or digest, manifest_type, manifest, None)
    return digest, len(manifest)


async def test_start_pulls_a_docker_schema2_image(
    stack: Stack, registry: LocalRegistry, tmp_path: Path
) -> None:
    repository = f"berth/docker-{uuid.uuid4().hex[:8]}"
    layers = _layers(tmp_path, 2)
    _push_manifest_image(registry, repository, "v1", layers, host_platform()[1], docker=True)
    ref = f"{registry.address}/{repository}:v1"
    container_id = await stack.create(image=ref, cmd=["cat", "/etc/berth-layer-0"])

    await stack.berth.start(container_id)

    assert (await stack.containerd.resolve_image(ref)).config["Cmd"] == ["sh"]


async def test_pull_of_a_multi_arch_index_takes_the_nodes_platform_only(
    stack: Stack, registry: LocalRegistry, registry_log: Path, puller: ImagePuller, tmp_path: Path
) -> None:
    repository = f"berth/multi-{uuid.uuid4().hex[:8]}"
    arch = host_platform()[1]
    other = "arm64" if arch != "arm64" else "amd64"
    layers = _layers(tmp_path, 2)
    mine = _push_manifest_image(registry, repository, "", layers, arch)
    foreign = _push_manifest_image(registry, repository, "", _layers(tmp_path, 2), other)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest,
                    "size": size,
                    "platform": {"os": "linux", "architecture": architecture},
                }
                for (digest, size), architecture in ((foreign, other), (mine, arch))
            ],
        }
    ).encode()
    push_manifest(
        f"http://{registry.address}",
        repository,
        "v1",
        "application/vnd.oci.image.index.v1+json",
        index,
        None,
    )
    ref = f"{registry.address}/{repository}:v1"

    pulled = await puller.pull(ref, f"berth-pull-test-{uuid.uuid4().hex[:8]}")

    assert pulled is not None
    assert pulled.digest == "sha256:" + hashlib.sha256(index).hexdigest()
    assert await puller.has_image(ref)
    log = registry_log.read_text()
    assert f"GET /v2/{repository}/manifests/{mine[0]}" in log
    assert f"GET /v2/{repository}/manifests/{foreign[0]}" not in log


async def test_start_of_image_from_a_registry_the_node_does_not_pull_from_is_not_found(
    stack: Stack, puller: ImagePuller
) -> None:
    # The suite's nodes pull from its loopback registry only (BERTH_ALLOWED_REGISTRIES): this
    # start sends nothing to Docker Hub and fails at once.
    container_id = await stack.create(image="library/no-such-image:latest")

    with pytest.raises(NotFound, match=r"registry docker\.io is not among the registries"):
        await asyncio.wait_for(stack.berth.start(container_id), 20)

    assert await leases(puller) == []
    assert (await stack.footprint(container_id)).empty
