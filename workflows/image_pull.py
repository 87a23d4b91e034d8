"""The start saga's pull step: the container's image onto its node, for its ``mount``.

Since patch :data:`PULL_ON_MISSING_PATCH` (:func:`mount_pulling`): with the default policy
``missing`` the saga mounts first, and only when the mount finds the image missing on the node
(``NotFound`` carrying :data:`berth.steps.MISSING_IMAGE`) does it register the pull's undo (drop
its containerd lease), pull (a regular activity on the node's queue that heartbeats its
progress) and mount again; with the image present a start runs exactly the steps it ran before
images could be pulled. ``always`` pulls before the mount; ``never`` turns the missing image into
``NotFound`` naming the policy.

Histories recorded between the two patches checked first, as a local activity, then pulled
(:func:`pull_for_start`, patch :data:`PULL_STEP_PATCH`); those recorded before either replay
without a pull.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from berth.contract import PullPolicy
    from berth.errors import NotFound, application_cause
    from berth.steps import (
        MISSING_IMAGE,
        CheckImageInput,
        MountRootfsOutput,
        PullImageInput,
        ReleasePullInput,
        StartPlan,
    )
    from berth.workflows import steps
    from berth.workflows.saga import Saga
    from berth.workflows.steps import run_step

PULL_STEP_PATCH = "pull-step"
PULL_ON_MISSING_PATCH = "pull-on-missing"


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
    if need.pull:
        await _pull(saga, plan, enter, done, only_if_missing=policy is PullPolicy.MISSING)


Enter = Callable[[str, str], None]
Done = Callable[[str, dict[str, Any]], None]


def missing_image_of(err: BaseException) -> str | None:
    """The image a step's ``NotFound`` says the node lacks (None: any other failure)."""
    cause = application_cause(err)
    if cause is None or cause.type != NotFound.type_name or not cause.details:
        return None
    details = cause.details[0]
    if isinstance(details, dict) and details.get(MISSING_IMAGE):
        return str(details[MISSING_IMAGE])
    return None


async def mount_pulling(
    saga: Saga,
    plan: StartPlan,
    enter: Enter,
    done: Done,
    mount: Callable[[], Awaitable[MountRootfsOutput]],
) -> MountRootfsOutput:
    """Mount the rootfs, pulling the image first (``always``) or when it is missing."""
    policy = plan.config.pull_policy
    if policy is PullPolicy.ALWAYS:
        await _pull(saga, plan, enter, done, only_if_missing=False)
        return await mount()
    try:
        return await mount()
    except Exception as err:
        if missing_image_of(err) is None:
            raise
        if policy is PullPolicy.NEVER:
            raise NotFound(
                f"image {plan.config.image!r} is not on node {plan.node!r} and the container's "
                "pull policy is never"
            ) from None
    await _pull(saga, plan, enter, done, only_if_missing=True)
    return await mount()


async def _pull(
    saga: Saga, plan: StartPlan, enter: Enter, done: Done, *, only_if_missing: bool
) -> None:
    image, node, name, owner = plan.config.image, plan.node, plan.name, plan.container_id
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
        PullImageInput(node=node, image=image, owner=owner, only_if_missing=only_if_missing),
        summary,
    )
    done("pull", {"image": image, "pulled": pulled.pulled, "digest": pulled.digest})
