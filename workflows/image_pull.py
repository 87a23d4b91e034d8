"""The start saga's pull step: the container's image onto its node, before ``mount``.

A local check decides by the container's pull policy whether to pull (``missing``: the node
lacks it; ``always``; ``never``: a missing image fails the start with ``NotFound``); only then
does the saga register the pull's undo (drop its containerd lease) and run the pull, a regular
activity on the node's queue that heartbeats its progress. With the image present and the
default policy, a start costs one local activity more than before.

Starts recorded before the step existed replay without it (patch :data:`PULL_STEP_PATCH`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from berth.contract import PullPolicy
    from berth.steps import CheckImageInput, PullImageInput, ReleasePullInput, StartPlan
    from berth.workflows import steps
    from berth.workflows.saga import Saga
    from berth.workflows.steps import run_step

PULL_STEP_PATCH = "pull-step"


async def pull_for_start(
    saga: Saga,
    plan: StartPlan,
    enter: Callable[[str, str], None],
    done: Callable[[str, dict[str, Any]], None],
) -> None:
    """Pull ``plan``'s image onto its node if its pull policy says so.

    ``enter(phase, details)`` and ``done(step, handle)`` are the saga's own journal calls.
    """
    image, node, name = plan.config.image, plan.node, plan.name
    policy = plan.config.pull_policy
    enter("pull", f"check image {image} of {name} on {node} (pull policy {policy})")
    need = await run_step(
        steps.CHECK_IMAGE,
        CheckImageInput(node=node, image=image, policy=policy),
        f"check image {image} of {name} on {node}",
    )
    if not need.pull:
        return
    owner = plan.container_id
    summary = f"pull image {image} for {name} on {node}"
    enter("pull", summary)
    saga.register(
        "pull",
        lambda: run_step(
            steps.RELEASE_PULL,
            ReleasePullInput(node=node, owner=owner),
            f"drop the pull lease of {name} on {node}",
        ),
    )
    pulled = await run_step(
        steps.PULL_IMAGE,
        PullImageInput(
            node=node, image=image, owner=owner, only_if_missing=policy is PullPolicy.MISSING
        ),
        summary,
    )
    done("pull", {"image": image, "pulled": pulled.pulled, "digest": pulled.digest})
