"""Berth's one error taxonomy, mirroring moby's errdefs.

Every error is a Temporal ``ApplicationError`` whose ``type`` is the class name, so clients in any
language match on the type string. Retryability is decided here, where each class is defined.

An ``Unavailable`` raised for a dependency that may come back (containerd, the CNI plugins' locks,
PostgreSQL) says which one and on which node, and how long the raiser's operator lets a step wait
for it (:class:`Waiting`, carried as the error's details, so a workflow reads it from history):
the workflows retry such a step for that grace and show "waiting for containerd on node-2"
meanwhile (:func:`berth.workflows.steps.run_step`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from temporalio.exceptions import ApplicationError


class BerthError(ApplicationError):
    """Base of every Berth error; never raised itself."""

    type_name: ClassVar[str] = "Unknown"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *details: object) -> None:
        super().__init__(message, *details, type=self.type_name, non_retryable=not self.retryable)


class NotFound(BerthError):
    """The container, image, node or resource does not exist."""

    type_name = "NotFound"


class InvalidParameter(BerthError):
    """The caller's input is malformed or out of range; the message names the field."""

    type_name = "InvalidParameter"


class Conflict(BerthError):
    """The request conflicts with the container's current state or a running operation."""

    type_name = "Conflict"


class NotModified(BerthError):
    """Nothing to do: the container is already in the requested state (HTTP 304)."""

    type_name = "NotModified"


class Forbidden(BerthError):
    """The request is well formed but not allowed."""

    type_name = "Forbidden"


class Unavailable(BerthError):
    """A dependency (containerd, PostgreSQL, a node) cannot be reached now; retry later."""

    type_name = "Unavailable"
    retryable = True

    @classmethod
    def waiting(cls, message: str, waiting: Waiting) -> Unavailable:
        """An ``Unavailable`` that says what it waits for (see :func:`waiting_of`)."""
        return cls(message, waiting.as_details())


# How long a step may wait for a dependency that went away unless its raiser says otherwise.
DEFAULT_GRACE_SECONDS = 60.0


@dataclass(frozen=True)
class Waiting:
    """What a transient ``Unavailable`` waits for: a dependency on a node, for at most a grace."""

    dependency: str
    node: str
    grace_seconds: float = DEFAULT_GRACE_SECONDS

    def as_details(self) -> dict[str, Any]:
        return {
            "waiting_for": self.dependency,
            "node": self.node,
            "grace_seconds": self.grace_seconds,
        }

    def __str__(self) -> str:
        return f"{self.dependency} on {self.node}" if self.node else self.dependency


class System(BerthError):
    """The runtime or host failed in a way the caller cannot fix."""

    type_name = "System"


class Unknown(BerthError):
    """An error that fits no other class."""

    type_name = "Unknown"


ERROR_CLASSES: dict[str, type[BerthError]] = {
    cls.type_name: cls
    for cls in (NotFound, InvalidParameter, Conflict, NotModified, Forbidden, Unavailable, System)
}
ERROR_CLASSES[Unknown.type_name] = Unknown


def error_from_type(type_name: str | None, message: str) -> BerthError:
    """Rebuild the typed error a client received as an ApplicationError type string."""
    return ERROR_CLASSES.get(type_name or "", Unknown)(message)


def exit_code_from_runtime_error(message: str) -> int:
    """The exit code moby's ``setExitCodeFromError`` derives from a runtime's error message."""
    lowered = message.lower()
    if "executable file not found" in lowered or "no such file or directory" in lowered:
        return 127
    if "not a directory" in lowered:
        return 127
    if "permission denied" in lowered or "is a directory" in lowered:
        return 126
    return 128


def application_cause(err: BaseException) -> ApplicationError | None:
    """The innermost ``ApplicationError`` under an activity or child-workflow error."""
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, ApplicationError):
            return cause
        cause = cause.__cause__
    return None


def waiting_of(err: BaseException) -> Waiting | None:
    """What the ``Unavailable`` under ``err`` waits for; None for any other error.

    An ``Unavailable`` without details (a node agent that is down, an older raiser) waits for
    "a dependency" for the default grace.
    """
    cause = application_cause(err)
    if cause is None or cause.type != Unavailable.type_name:
        return None
    details = cause.details[0] if cause.details else None
    if not isinstance(details, dict) or "waiting_for" not in details:
        return Waiting("a dependency", "")
    try:
        return Waiting(
            str(details["waiting_for"]),
            str(details.get("node") or ""),
            float(details.get("grace_seconds", DEFAULT_GRACE_SECONDS)),
        )
    except (TypeError, ValueError):
        return Waiting(str(details["waiting_for"]), str(details.get("node") or ""))


def as_berth_error(err: BaseException) -> BerthError:
    """The typed error an activity or child-workflow failure carries (``Unknown`` if none)."""
    cause = application_cause(err)
    if cause is None:
        return Unknown(str(err) or type(err).__name__)
    if isinstance(cause, BerthError):
        return cause
    rebuilt = ERROR_CLASSES.get(cause.type or "", Unknown)
    return rebuilt(cause.message, *cause.details)
