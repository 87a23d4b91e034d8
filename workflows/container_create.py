"""``ContainerCreate``: validate and register a container (docker create)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from berth.contract import ContainerCreateInput, ContainerCreateOutput
    from berth.errors import BerthError
    from berth.workflows import steps
    from berth.workflows.steps import run_step


@workflow.defn(name="ContainerCreate", failure_exception_types=[BerthError])
class ContainerCreate:
    @workflow.run
    async def run(self, request: ContainerCreateInput) -> ContainerCreateOutput:
        return await run_step(
            steps.CREATE_CONTAINER, request, f"register container {request.config.name}"
        )
