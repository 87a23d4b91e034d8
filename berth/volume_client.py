"""Berth's volume verbs for the CLI and Python callers: create, remove, list and inspect.

Creation and removal change the node's files, so they run ``VolumeCreateOnNode`` /
``VolumeRemoveOnNode`` on the node's own queue (after checking that its agent is alive: a
workflow on a dead node's queue would wait for it unbounded). Listing and inspecting read
PostgreSQL, where every volume is recorded before its directory is made.
"""

from __future__ import annotations

import builtins
import uuid
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowFailureError

from berth.config import Settings
from berth.db.models import Volume
from berth.db.repository import NodeRepository
from berth.db.session import make_engine, make_sessionmaker
from berth.db.volume_repository import VolumeRepository
from berth.errors import NotFound, Unavailable, as_berth_error
from berth.steps import (
    VolumeCreateInput,
    VolumeInfo,
    VolumeRemoveInput,
    VolumeRemoveOutput,
    node_task_queue,
)
from berth.volumes_host import data_dir

T = TypeVar("T")


class VolumeClient:
    """Named volumes through Temporal (``client``) and PostgreSQL (``engine``, owned)."""

    def __init__(self, client: Client | None, engine: AsyncEngine, settings: Settings) -> None:
        """``client`` None: only ``list`` and ``inspect`` (PostgreSQL reads) are served."""
        self._client = client
        self._engine = engine
        self._sessions = make_sessionmaker(engine)
        self._settings = settings

    @classmethod
    def connect(cls, client: Client | None, settings: Settings) -> VolumeClient:
        """A client on ``settings``' database (connected at the first query)."""
        engine = make_engine(
            settings.database_url,
            settings.runtime_call_timeout_seconds,
            settings.client_wait_seconds,
        )
        return cls(client, engine, settings)

    async def close(self) -> None:
        await self._engine.dispose()

    async def create(
        self, node: str, name: str, labels: dict[str, str] | None = None
    ) -> VolumeInfo:
        """Create ``name`` on ``node`` (an existing volume is returned as it is)."""
        request = VolumeCreateInput(node=node, name=name, labels=labels or {})
        return await self._on_node("VolumeCreateOnNode", node, request, VolumeInfo, "create")

    async def remove(self, node: str, name: str, force: bool = False) -> VolumeRemoveOutput:
        """Remove ``name`` and its data from ``node``; ``Conflict`` while a container uses it."""
        request = VolumeRemoveInput(node=node, name=name, force=force)
        return await self._on_node(
            "VolumeRemoveOnNode", node, request, VolumeRemoveOutput, "remove"
        )

    async def list(self, node: str | None = None) -> builtins.list[VolumeInfo]:
        """Every volume (or ``node``'s), by node then name, with the containers using each."""
        return await self._infos(node)

    async def inspect(self, name: str, node: str | None = None) -> builtins.list[VolumeInfo]:
        """The volumes called ``name`` (one per node that has one, or ``node``'s).

        Raises:
            NotFound: no node (or not ``node``) has such a volume.
        """
        found = await self._infos(node, name)
        if not found:
            raise NotFound(f"get {name}: no such volume")
        return found

    async def _infos(self, node: str | None, name: str | None = None) -> builtins.list[VolumeInfo]:
        """The volumes of ``node`` (or every node), only those called ``name`` if given, each
        with its users (looked up for those kept only)."""
        async with self._sessions() as session:
            volumes = VolumeRepository(session)
            return [
                self._info(volume, await volumes.users(volume.node, volume.name))
                for volume in await volumes.list(node)
                if name is None or volume.name == name
            ]

    def _info(self, volume: Volume, users: builtins.list[str]) -> VolumeInfo:
        return VolumeInfo(
            node=volume.node,
            name=volume.name,
            labels=volume.labels,
            created_at=volume.created_at,
            mountpoint=str(data_dir(self._settings.node_paths(volume.node), volume.name)),
            used_by=users,
        )

    async def _on_node(
        self, workflow: str, node: str, request: object, result_type: type[T], op: str
    ) -> T:
        async with self._sessions() as session:
            live = await NodeRepository(session).is_live(node)
        if not live:
            raise Unavailable(f"node {node} has no running agent; nothing was done")
        assert self._client is not None, "a volume client for reads only"
        try:
            return await self._client.execute_workflow(
                workflow,
                request,
                id=f"volume-{op}-{node}-{uuid.uuid4().hex[:8]}",
                task_queue=node_task_queue(node),
                result_type=result_type,
            )
        except WorkflowFailureError as err:
            raise as_berth_error(err) from None
