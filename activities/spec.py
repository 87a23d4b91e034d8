"""Step ``spec``: the OCI runtime spec, built from the image config and the container config.

Do: build the spec (root at the mounted rootfs, the netns path, resources) and persist it at
``<node>/specs/<id>.json``. Undo: drop the file; a missing file is success.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from temporalio import activity

from activities.types import ContainerRef, StepModel
from berth.config import NodePaths, make_private_dir
from berth.contract import ContainerConfig
from berth.faults import NO_FAULTS, FaultHook, fault_point
from berth.host_paths import check_bind_sources
from berth.runtime.oci_spec import build_spec

# The spec holds the container's environment (its secrets): the agent's alone.
SPEC_FILE_MODE = 0o600


class WriteSpecInput(StepModel):
    container_id: str
    node: str
    config: ContainerConfig
    image_config: dict[str, Any]
    rootfs: str
    netns: str | None


class WriteSpecOutput(StepModel):
    path: str
    spec: dict[str, Any]


class SpecActivities:
    """OCI specs of one node."""

    def __init__(
        self,
        paths: NodePaths,
        faults: FaultHook = NO_FAULTS,
        allowed_host_paths: Sequence[Path] = (),
    ) -> None:
        self._paths = paths
        self._faults = faults
        self._allowed_host_paths = allowed_host_paths

    @activity.defn(name="write_spec")
    @fault_point("spec")
    async def write_spec(self, request: WriteSpecInput) -> WriteSpecOutput:
        """Check bind sources on this host, build the spec and persist it."""
        check_bind_sources(request.config.binds, self._allowed_host_paths, resolve=True)
        # In a thread: it reads the rootfs' passwd and group files, which the container controls.
        spec = await asyncio.to_thread(
            build_spec,
            request.container_id,
            request.config,
            request.image_config,
            Path(request.rootfs),
            Path(request.netns) if request.netns else None,
        )
        path = self._paths.spec(request.container_id)
        await asyncio.to_thread(_write_atomically, path, json.dumps(spec, indent=2))
        return WriteSpecOutput(path=str(path), spec=spec)

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
