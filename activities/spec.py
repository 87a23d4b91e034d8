"""Step ``spec``: the OCI runtime spec, built from the image config and the container config.

Do: build the spec (root at the mounted rootfs, the netns path, resources, the named volumes'
directories, made and filled on first use) and persist it at ``<node>/specs/<id>.json``.
Undo: drop the file; a missing file is success (a volume is kept: it outlives containers).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path

from temporalio import activity

from berth import capabilities
from berth.config import NodePaths, make_private_dir
from berth.contract import NetworkMode
from berth.errors import Forbidden
from berth.faults import NO_FAULTS, FaultHook, fault_point
from berth.host_paths import open_confined, resolve_bind_sources
from berth.runtime import seccomp
from berth.runtime.etc_files import EtcFiles
from berth.runtime.oci_spec import build_spec
from berth.steps import ContainerRef, WriteSpecInput, WriteSpecOutput
from berth.volumes_host import prepare_volumes

# The spec holds the container's environment (its secrets): the agent's alone.
SPEC_FILE_MODE = 0o600


class SpecActivities:
    """OCI specs of one node."""

    def __init__(
        self,
        paths: NodePaths,
        faults: FaultHook = NO_FAULTS,
        allowed_host_paths: Sequence[Path] = (),
        *,
        allowed_seccomp_paths: Sequence[Path] = (),
        allow_unconfined_seccomp: bool = False,
        allow_host_network: bool = False,
        allowed_capabilities: Sequence[str] = (),
    ) -> None:
        self._paths = paths
        self._faults = faults
        self._allowed_host_paths = allowed_host_paths
        self._allowed_seccomp_paths = allowed_seccomp_paths
        self._allow_unconfined_seccomp = allow_unconfined_seccomp
        self._allow_host_network = allow_host_network
        self._allowed_capabilities = allowed_capabilities

    @activity.defn(name="write_spec")
    @fault_point("spec")
    async def write_spec(self, request: WriteSpecInput) -> WriteSpecOutput:
        """Check the node's permissions and host paths, build the spec and persist it.

        Raises:
            Forbidden: host networking, capabilities beyond Docker's default set, an
                unconfined or a seccomp profile or bind source outside this node's allow-lists,
                where the node does not permit it.
            InvalidParameter: a bind source that does not exist, or a profile that is not one.
        """
        config = request.config
        if config.network_mode is NetworkMode.HOST and not self._allow_host_network:
            raise Forbidden(
                f"config.network_mode: host networking is not permitted on node {request.node} "
                "(its setting allow_host_network is off)"
            )
        capabilities.check_permitted(
            config.cap_add, config.cap_drop, self._allowed_capabilities, f"on node {request.node}"
        )
        # In a thread: resolving host paths and reading a profile may touch slow filesystems.
        bind_sources, profile = await asyncio.to_thread(self._host_inputs, request)
        # Named volumes: made on first use and filled from the image (berth.volumes_host).
        volume_sources = (
            await asyncio.to_thread(
                prepare_volumes,
                self._paths,
                request.container_id,
                config.volumes,
                Path(request.rootfs),
            )
            if config.volumes
            else []
        )
        # In a thread: it reads the rootfs' passwd and group files, which the container controls.
        spec = await asyncio.to_thread(
            build_spec,
            request.container_id,
            request.config,
            request.image_config,
            Path(request.rootfs),
            Path(request.netns) if request.netns else None,
            bind_sources=bind_sources,
            seccomp=profile,
            etc_files=await asyncio.to_thread(self._etc_files, request.container_id),
            volume_sources=volume_sources,
        )
        path = self._paths.spec(request.container_id)
        await asyncio.to_thread(_write_atomically, path, json.dumps(spec, indent=2))
        return WriteSpecOutput(path=str(path), spec=spec)

    def _host_inputs(
        self, request: WriteSpecInput
    ) -> tuple[list[str], seccomp.SeccompProfile | None]:
        """The bind sources resolved on this node, and the seccomp profile (None: unconfined)."""
        config = request.config
        sources = resolve_bind_sources(config.binds, self._allowed_host_paths)
        choice = config.seccomp_profile or seccomp.DEFAULT
        if choice == seccomp.DEFAULT:
            return sources, seccomp.default_profile()
        if choice == seccomp.UNCONFINED:
            if not self._allow_unconfined_seccomp:
                raise Forbidden(
                    f"{seccomp.FIELD}: unconfined is not permitted on node {request.node} "
                    "(its setting allow_unconfined_seccomp is off)"
                )
            return sources, None
        fd = open_confined(choice, self._allowed_seccomp_paths, seccomp.FIELD)
        try:
            return sources, seccomp.read_profile_fd(fd, choice)
        finally:
            os.close(fd)

    def _etc_files(self, container_id: str) -> list[tuple[str, Path]]:
        """The generated /etc files the network step wrote; none if it wrote none (an older
        agent's step)."""
        files = EtcFiles(self._paths.container_dir(container_id))
        return files.mounts() if files.complete() else []

    @activity.defn(name="drop_spec")
    @fault_point("undo-spec")
    async def drop_spec(self, request: ContainerRef) -> None:
        """Remove the persisted spec."""
        self._paths.spec(request.container_id).unlink(missing_ok=True)


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: 0600 in a 0700 directory (a spec holds the env)."""
    make_private_dir(path.parent)
    partial = path.with_suffix(".partial")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(partial, flags, SPEC_FILE_MODE)
    with os.fdopen(fd, "w") as out:
        os.fchmod(fd, SPEC_FILE_MODE)  # a partial an older version left with the umask's mode
        out.write(text)
    partial.replace(path)
