"""The Python client: Berth's workflows and state behind plain methods with typed errors.

Example::

    async with await BerthClient.connect(Settings()) as berth:
        created = await berth.create(ContainerConfig(name="web-1", image="local/busybox:latest",
                                                     cmd=["sleep", "3600"]))
        started = await berth.start("web-1")
"""

from __future__ import annotations

import json
from datetime import datetime
from types import TracebackType
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from berth.config import Settings, node_task_queue
from berth.contract import (
    ContainerConfig,
    ContainerCreateInput,
    ContainerCreateOutput,
    ContainerStartInput,
    ContainerStartOutput,
)
from berth.converter import data_converter
from berth.db.models import Container, ContainerEvent
from berth.db.repository import ContainerRepository
from berth.db.session import make_engine, make_sessionmaker
from berth.errors import as_berth_error
from workflows.container_start import NodeStartInput
from workflows.metrics import ACTION_DURATION, DURATION_BUCKETS_MS
from workflows.visibility import container_attributes, start_workflow_id


async def connect(settings: Settings) -> Client:
    """A Temporal client with Berth's data converter (and metrics endpoint, if configured)."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter,
        runtime=metrics_runtime(settings.metrics_address) if settings.metrics_address else None,
    )


def metrics_runtime(bind_address: str) -> Runtime:
    """A Temporal runtime that serves the SDK's and Berth's metrics for Prometheus."""
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=bind_address,
                histogram_bucket_overrides={ACTION_DURATION: DURATION_BUCKETS_MS},
            )
        )
    )


class BerthClient:
    """Create, start and look at containers."""

    def __init__(
        self,
        temporal: Client,
        engine: AsyncEngine,
        settings: Settings,
    ) -> None:
        self.temporal = temporal
        self.settings = settings
        self._engine = engine
        self._sessions: async_sessionmaker[AsyncSession] = make_sessionmaker(engine)

    @classmethod
    async def connect(cls, settings: Settings) -> BerthClient:
        return cls(await connect(settings), make_engine(settings.database_url), settings)

    async def __aenter__(self) -> BerthClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._engine.dispose()

    async def create(self, config: ContainerConfig) -> ContainerCreateOutput:
        """Register a container (``ContainerCreate``)."""
        try:
            return await self.temporal.execute_workflow(
                "ContainerCreate",
                ContainerCreateInput(config=config),
                id=f"container-create-{config.name}",
                task_queue=self.settings.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                result_type=ContainerCreateOutput,
            )
        except WorkflowFailureError as err:
            raise as_berth_error(err.cause) from None

    async def start(self, ref: str) -> ContainerStartOutput:
        """Start a container through the saga; attaches to a start already running.

        The client knows the container's node, so it runs the saga on the node's queue directly
        (``ContainerStartOnNode``) instead of through ``ContainerStart``'s extra hop.
        """
        container = await self.get(ref)
        try:
            return await self.temporal.execute_workflow(
                "ContainerStartOnNode",
                NodeStartInput(request=ContainerStartInput(container=container.id)),
                id=start_workflow_id(container.id),
                task_queue=node_task_queue(container.node),
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                search_attributes=container_attributes(
                    container.id, container.name, container.node
                ),
                result_type=ContainerStartOutput,
            )
        except WorkflowFailureError as err:
            raise as_berth_error(err.cause) from None

    async def get(self, ref: str) -> Container:
        """The container's record; ``NotFound`` when there is none."""
        async with self._sessions() as session:
            return await ContainerRepository(session).get(ref)

    async def inspect(self, ref: str) -> dict[str, Any]:
        """The container as docker inspect shows it (the fields Berth has)."""
        return describe(await self.get(ref))

    async def ps(self, all_states: bool = False) -> list[Container]:
        async with self._sessions() as session:
            containers = await ContainerRepository(session).list()
        return [c for c in containers if all_states or c.state == "running"]

    async def events(self, ref: str | None = None, since_id: int = 0) -> list[ContainerEvent]:
        async with self._sessions() as session:
            repository = ContainerRepository(session)
            container_id = (await repository.get(ref)).id if ref else None
            return list(await repository.events(container_id, since_id))

    async def logs(self, ref: str) -> bytes:
        """The container's stdout and stderr, as the shim wrote them on this host."""
        container = await self.get(ref)
        path = self.settings.node_paths(container.node).log(container.id)
        return path.read_bytes() if path.exists() else b""


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def describe(container: Container) -> dict[str, Any]:
    return {
        "Id": container.id,
        "Name": "/" + container.name,
        "Image": container.image,
        "Node": container.node,
        "Created": _time(container.created_at),
        "State": {
            "Status": container.state,
            "Running": container.state == "running",
            "Paused": container.state == "paused",
            "Pid": container.pid or 0,
            "ExitCode": container.exit_code or 0,
            "Error": container.error or "",
            "StartedAt": _time(container.started_at),
            "FinishedAt": _time(container.finished_at),
        },
        "RestartCount": container.restart_count,
        "Operation": container.operation,
        "NetworkSettings": {"IPAddress": container.ip or ""},
        "Config": container.config,
    }


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)
