"""Failure injection for tests: make a saga step or compensation fail, stall, or kill its agent.

A node agent's activities call their :class:`FaultHook` at named points: ``<step>:before`` and
``<step>:after`` around every step (``mount``, ``network``, ``spec``, ``shim``, ``task``,
``export``) and ``undo-<step>:before`` / ``undo-<step>:after`` around every compensation.
Production wires :data:`NO_FAULTS`, which does nothing. Injection is honoured only when BOTH
``BERTH_FAULT_INJECTION=enabled-for-tests`` and ``BERTH_FAULT_FILE=<path>`` are set, so one stray
variable never enables it.

The fault file is JSON, re-read at every point so a test changes faults without restarting the
agent::

    {"faults": [
        {"point": "mount:after", "action": "fail", "error": "System", "times": 1,
         "container": "<container id, optional>"},
        {"point": "task:after", "action": "crash", "times": 1},
        {"point": "network:before", "action": "sleep", "seconds": 30}
    ]}

``fail`` raises the named Berth error class (``System`` by default, ``Unavailable`` is retried);
``crash`` SIGKILLs the agent at once; ``sleep`` stalls the step (cancellable). ``times`` limits
how often a fault fires; hits are counted in ``<fault file>.hits``, which survives the crash it
causes, so a restarted agent does not crash again.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from berth.errors import ERROR_CLASSES, System

log = logging.getLogger("berth.faults")

ENABLE_VARIABLE = "BERTH_FAULT_INJECTION"
ENABLE_VALUE = "enabled-for-tests"
FILE_VARIABLE = "BERTH_FAULT_FILE"


class Fault(BaseModel):
    """One fault: where it fires, what it does, and how often."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    point: str
    action: Literal["fail", "crash", "sleep"]
    error: str = System.type_name
    message: str = ""
    times: int | None = Field(default=None, ge=1)
    container: str | None = None
    seconds: float = Field(default=0.0, ge=0)

    @property
    def key(self) -> str:
        """Identifies the fault in the hit counter, whatever its position in the file."""
        return self.model_dump_json()


class FaultPlan(BaseModel):
    """The fault file's content."""

    model_config = ConfigDict(extra="forbid")

    faults: list[Fault] = Field(default_factory=list)


class FaultHook(Protocol):
    """What activities call at each named point."""

    async def at(self, point: str, container_id: str | None) -> None:
        """Fail, stall or crash if a fault is set for ``point``; else return at once."""


class NoFaults:
    """The production hook: never does anything."""

    async def at(self, point: str, container_id: str | None) -> None:
        return None


NO_FAULTS = NoFaults()


class FileFaults:
    """Faults read from a JSON file at every point (tests only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.hits_path = path.with_name(path.name + ".hits")

    async def at(self, point: str, container_id: str | None) -> None:
        for fault in self._plan().faults:
            if fault.point != point or fault.container not in (None, container_id):
                continue
            if fault.times is not None and self._hit(fault) > fault.times:
                continue
            await self._act(fault, point, container_id)

    def _plan(self) -> FaultPlan:
        try:
            return FaultPlan.model_validate_json(self.path.read_text() or "{}")
        except FileNotFoundError:
            return FaultPlan()

    def _hit(self, fault: Fault) -> int:
        """Count one more hit of ``fault``; durable before the fault acts (it may crash)."""
        try:
            hits: dict[str, int] = json.loads(self.hits_path.read_text())
        except (FileNotFoundError, ValueError):
            hits = {}
        hits[fault.key] = hits.get(fault.key, 0) + 1
        partial = self.hits_path.with_name(self.hits_path.name + ".partial")
        with partial.open("w") as stream:
            json.dump(hits, stream)
            stream.flush()
            os.fsync(stream.fileno())
        partial.replace(self.hits_path)
        return hits[fault.key]

    async def _act(self, fault: Fault, point: str, container_id: str | None) -> None:
        where = f"{point} of {container_id or '-'}"
        if fault.action == "sleep":
            log.warning("fault injection: sleeping %.1fs at %s", fault.seconds, where)
            await asyncio.sleep(fault.seconds)
        elif fault.action == "crash":
            log.warning("fault injection: killing this agent (pid %d) at %s", os.getpid(), where)
            logging.shutdown()
            os.kill(os.getpid(), signal.SIGKILL)
        else:
            cls = ERROR_CLASSES.get(fault.error, System)
            raise cls(fault.message or f"injected {fault.error} fault at {where}")


def faults_from_env(environ: Mapping[str, str]) -> FaultHook:
    """:class:`FileFaults` when both variables enable it, else :data:`NO_FAULTS`."""
    enabled = environ.get(ENABLE_VARIABLE, "")
    path = environ.get(FILE_VARIABLE, "")
    if enabled == ENABLE_VALUE and path:
        log.warning("FAULT INJECTION IS ENABLED from %s: this agent is for tests only", path)
        return FileFaults(Path(path))
    if enabled or path:
        log.warning(
            "fault injection stays off: it needs %s=%s and %s together",
            ENABLE_VARIABLE,
            ENABLE_VALUE,
            FILE_VARIABLE,
        )
    return NO_FAULTS


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def fault_point(step: str) -> Callable[[F], F]:
    """Wrap an activity method with the ``<step>:before`` and ``<step>:after`` points.

    The method's class keeps its hook in ``self._faults``; its request carries ``container_id``.
    """

    def decorate(method: F) -> F:
        @functools.wraps(method)
        async def wrapper(self: Any, request: Any) -> Any:
            hook: FaultHook = getattr(self, "_faults", NO_FAULTS)
            container_id = getattr(request, "container_id", None)
            await hook.at(f"{step}:before", container_id)
            result = await method(self, request)
            await hook.at(f"{step}:after", container_id)
            return result

        return wrapper  # type: ignore[return-value]

    return decorate
