"""Earlier shapes of the public start, for :mod:`bench.type_name_bench` to time in the same run.

``ContainerStartAsChild`` is ``ContainerStart`` as it ran before the patch ``continue-on-node``
(berth.workflows.routing): find the container's node, run ``ContainerStartOnNode`` there as a
child and wait for its result. The bench runs it as a worker process of its own on the queue
:data:`CHILD_SHAPE_QUEUE`, with the bench's ``BERTH_*`` environment::

    python -m bench.route_shapes
"""

from __future__ import annotations

import asyncio
import signal

from temporalio import workflow
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

with workflow.unsafe.imports_passed_through():
    from berth.contract import ContainerStartInput, ContainerStartOutput
    from berth.errors import BerthError
    from berth.steps import NodeStartInput
    from berth.workflows.container_start import ContainerStartOnNode
    from berth.workflows.routing import locate, run_on_node

CHILD_SHAPE_QUEUE = "berth-child-shape"
READY_LINE = "child-shape worker running"


@workflow.defn(name="ContainerStartAsChild", failure_exception_types=[BerthError])
class ContainerStartAsChild:
    """``ContainerStart`` before ``continue-on-node``: the saga as a child on the node."""

    @workflow.run
    async def run(self, request: ContainerStartInput) -> ContainerStartOutput:
        where = await locate(request.container)
        return await run_on_node(
            "start", ContainerStartOnNode.run, NodeStartInput(request=request), where
        )


async def serve() -> None:
    """This shape's worker with the locate and abort steps, until SIGTERM."""
    from berth.activities.state import StateActivities
    from berth.client import connect
    from berth.config import Settings
    from berth.db.session import make_engine, make_sessionmaker

    settings = Settings()
    engine = make_engine(settings.database_url)
    state = StateActivities(
        make_sessionmaker(engine), settings.allowed_host_paths, settings.allowed_seccomp_paths
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    worker = Worker(
        await connect(settings),
        task_queue=CHILD_SHAPE_QUEUE,
        workflows=[ContainerStartAsChild],
        activities=[state.locate_container, state.abort_operation],
        # As the workers' own sandbox (berth.worker.workflow_runner), this module passed too.
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(
                "berth", "pydantic", "pydantic_core", "bench"
            )
        ),
    )
    try:
        async with worker:
            print(READY_LINE, flush=True)
            await stop.wait()
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(serve())
