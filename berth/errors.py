"""Berth's one error taxonomy, mirroring moby's errdefs.

Every error is a Temporal ``ApplicationError`` whose ``type`` is the class name, so clients in any
language match on the type string. Retryability is decided here, where each class is defined.
"""

from __future__ import annotations

from typing import ClassVar

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


def as_berth_error(err: BaseException) -> BerthError:
    """The typed error an activity or child-workflow failure carries (``Unknown`` if none)."""
    cause = application_cause(err)
    if cause is None:
        return Unknown(str(err) or type(err).__name__)
    if isinstance(cause, BerthError):
        return cause
    return error_from_type(cause.type, cause.message)
