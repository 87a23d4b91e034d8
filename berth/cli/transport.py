"""How the writing verbs reach a container's node saga without the Temporal SDK.

With ``BERTH_TEMPORAL_HTTP_ADDRESS`` set, ``Context.operations()`` gives :class:`HttpOperations`:
the container and its node's liveness from PostgreSQL (``berth.cli.wire_reads`` on
``berth.db.wire``, or ``berth.db.reads`` where that client does not serve the URL), the saga
through the frontend's HTTP API (``berth.temporal_http``): the same workflow, id, queue, input
and search attributes as ``BerthClient`` sends (tests/berth/cli/test_transport.py compares them),
so a call from either attaches to the other's run. Without it, ``BerthClient`` (temporalio)
serves; both have the same method names.

Neither path here waits on an event loop: every call blocks (the process does nothing else
meanwhile), so the verbs that only need these run without importing asyncio
(``berth.cli.main``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from berth.cli.context import BerthFailure, DaemonError
from berth.cli.wire_reads import NODE_LIVENESS_SECONDS, Container, Reads
from berth.temporal_http import TemporalCallError, TemporalHttp, TemporalUnreachable, WorkflowFailed

if TYPE_CHECKING:
    from berth.contract import ContainerConfig, ContainerCreateOutput

# Where the control worker serves ContainerCreate (``berth.config.CONTROL_TASK_QUEUE``).
CONTROL_TASK_QUEUE = "berth"


def node_task_queue(node: str) -> str:
    """The queue a node's agent polls (``berth.steps.node_task_queue``)."""
    return f"berth-node-{node}"


def operation_id(verb: str, container_id: str) -> str:
    """The workflow id of a container's operation: one run per container and verb at a time."""
    return f"container-{verb}-{container_id}"


def search_attributes(container: Container) -> dict[str, str]:
    """The container's search attributes, as ``berth.steps.container_attributes`` sets them."""
    return {"ContainerId": container.id, "ContainerName": container.name, "Node": container.node}


class HttpOperations:
    """create, start, stop, restart, pause, unpause and remove over Temporal's HTTP API."""

    def __init__(
        self, reader: Reads, temporal: TemporalHttp, task_queue: str = CONTROL_TASK_QUEUE
    ) -> None:
        self._reader = reader
        self._temporal = temporal
        self._task_queue = task_queue

    def _execute(
        self,
        workflow_type: str,
        workflow_id: str,
        task_queue: str,
        argument: dict[str, Any],
        attributes: dict[str, str],
        use_existing: bool = True,
    ) -> Any:
        try:
            # Blocking calls: this process does nothing else meanwhile.
            return self._temporal.execute(
                workflow_type, workflow_id, task_queue, argument, attributes, use_existing
            )
        except TemporalUnreachable as err:
            raise BerthFailure(str(err)) from None
        except (WorkflowFailed, TemporalCallError) as err:
            raise DaemonError(err.message) from None

    async def create(self, config: ContainerConfig) -> ContainerCreateOutput:
        """Register a container (``ContainerCreate`` on the control queue), as
        ``BerthClient.create``: one create per name at a time (a second is refused)."""
        from berth.contract import ContainerCreateInput, ContainerCreateOutput

        created = self._execute(
            "ContainerCreate",
            f"container-create-{config.name}",
            self._task_queue,
            ContainerCreateInput(config=config).model_dump(mode="json"),
            {},
            use_existing=False,
        )
        return ContainerCreateOutput.model_validate(created)

    async def _container(self, ref: str) -> Container:
        container = await self._reader.find(ref)
        if container is None:
            raise DaemonError(f"No such container: {ref}")
        return container

    async def _on_node(
        self,
        workflow_type: str,
        verb: str,
        ref: str,
        request: Callable[[Container], dict[str, Any]],
    ) -> Any:
        container = await self._container(ref)
        if not await self._reader.node_is_live(container.node):
            raise DaemonError(
                f"node {container.node} has no running agent (no heartbeat in the last "
                f"{NODE_LIVENESS_SECONDS}s); nothing was done to {container.name}"
            )
        return self._execute(
            workflow_type,
            operation_id(verb, container.id),
            node_task_queue(container.node),
            request(container),
            search_attributes(container),
        )

    async def start(self, ref: str) -> Any:
        return await self._on_node(
            "ContainerStartOnNode", "start", ref, lambda c: {"request": {"container": c.id}}
        )

    async def stop(self, ref: str, timeout: int | None = None) -> Any:
        return await self._on_node(
            "ContainerStopOnNode",
            "stop",
            ref,
            lambda c: {"request": {"container": c.id, "timeout": timeout}},
        )

    async def restart(self, ref: str, timeout: int | None = None) -> Any:
        return await self._on_node(
            "ContainerRestartOnNode",
            "restart",
            ref,
            lambda c: {"request": {"container": c.id, "timeout": timeout}},
        )

    async def pause(self, ref: str) -> Any:
        return await self._on_node(
            "ContainerPauseOnNode",
            "pause",
            ref,
            lambda c: {"request": {"container": c.id}, "pause": True},
        )

    async def unpause(self, ref: str) -> Any:
        return await self._on_node(
            "ContainerPauseOnNode",
            "unpause",
            ref,
            lambda c: {"request": {"container": c.id}, "pause": False},
        )

    async def remove(self, ref: str, force: bool = False) -> Any:
        return await self._on_node(
            "ContainerRemoveOnNode",
            "remove",
            ref,
            lambda c: {"request": {"container": c.id, "force": force}},
        )

    def close(self) -> None:
        self._temporal.close()
