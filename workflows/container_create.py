"""``ContainerCreate``: validate and register a container (docker create)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.state import StateActivities
    from berth.contract import ContainerCreateInput, ContainerCreateOutput
    from berth.errors import BerthError
    from workflows.policies import STATE_RETRY


@workflow.defn(name="ContainerCreate", failure_exception_types=[BerthError])
class ContainerCreate:
    @workflow.run
    async def run(self, request: ContainerCreateInput) -> ContainerCreateOutput:
        return await workflow.execute_local_activity_method(
            StateActivities.create_container,
            request,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=STATE_RETRY,
            summary=f"register container {request.config.name}",
        )
