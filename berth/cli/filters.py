"""``--filter key=value`` for ``ps`` and ``events``, parsed and matched as docker does.

Values of one key are alternatives (any may match); different keys must all match; ``label``
filters must all match (``key`` for presence, ``key=value`` for an exact value). ``name`` is a
regular expression searched in the name, ``id`` and ``container`` a prefix of the id (``container``
also takes an exact name).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import NamedTuple

from berth.cli.status import DOCKER_STATUS
from berth.cli.usage import UsageError

PS_KEYS = frozenset({"id", "name", "label", "status", "node", "health", "exited", "ancestor"})
EVENT_KEYS = frozenset({"container", "event", "label", "node", "type", "image"})
# docker ps's status filter values.
STATUS_VALUES = frozenset(
    {"created", "restarting", "running", "removing", "paused", "exited", "dead"}
)
# An event's container labels when it has none (read-only: a default shared by every row).
_NO_LABELS: Mapping[str, str] = MappingProxyType({})
HEALTH_VALUES = frozenset({"starting", "healthy", "unhealthy", "none"})


class Filters(NamedTuple):
    """Parsed filters: each key with its values, in the order given."""

    terms: Mapping[str, tuple[str, ...]]

    def has(self, key: str) -> bool:
        """Whether any filter names ``key``."""
        return key in self.terms

    def values(self, key: str) -> tuple[str, ...]:
        return self.terms.get(key, ())


class PsRow(NamedTuple):
    """What ``ps`` filters look at in one container."""

    id: str
    name: str
    image: str
    state: str
    node: str
    labels: Mapping[str, str]
    exit_code: int | None = None
    health: str | None = None


class EventRow(NamedTuple):
    """What ``events`` filters look at in one event (``labels``: its container's, if known)."""

    container_id: str
    container_name: str
    action: str
    node: str
    image: str = ""
    labels: Mapping[str, str] = _NO_LABELS


def parse_filters(given: Iterable[str], accepted: frozenset[str]) -> Filters:
    """``["status=exited", "label=a=b"]`` as filters, checking keys and the values docker checks.

    Raises:
        UsageError: not ``key=value``, a key this verb does not take, or a status, health or
            exited value docker refuses (the message as docker's).
    """
    terms: dict[str, list[str]] = {}
    for text in given:
        key, sep, value = text.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise UsageError(f"bad format of filter (expected name=value): {text!r}")
        if key not in accepted:
            raise UsageError(f"invalid filter '{key}'")
        terms.setdefault(key, []).append(value)
    for value in terms.get("status", []):
        if value not in STATUS_VALUES:
            raise UsageError(f"invalid filter 'status={value}'")
    for value in terms.get("health", []):
        if value not in HEALTH_VALUES:
            raise UsageError(f"Unrecognised filter value for health: {value}")
    for value in terms.get("exited", []):
        try:
            int(value)
        except ValueError:
            raise UsageError(f"invalid filter 'exited={value}'") from None
    for value in terms.get("type", []):
        if value != "container":
            raise UsageError(f"invalid filter 'type={value}': Berth has container events only")
    for value in terms.get("name", []):
        try:
            re.compile(value)
        except re.error as err:
            raise UsageError(f"invalid filter 'name={value}': {err}") from None
    return Filters({key: tuple(values) for key, values in terms.items()})


def labels_match(wanted: Iterable[str], labels: Mapping[str, str]) -> bool:
    """Every ``key`` is present and every ``key=value`` holds exactly."""
    for term in wanted:
        key, sep, value = term.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def _any(values: tuple[str, ...], test: Callable[[str], bool]) -> bool:
    """No values: no constraint; else any value passes ``test``."""
    return not values or any(test(value) for value in values)


def ps_matches(filters: Filters, row: PsRow) -> bool:
    """Whether ``ps`` shows ``row`` under ``filters``."""
    status = DOCKER_STATUS.get(row.state, row.state)
    health = row.health or "none"
    return (
        _any(filters.values("id"), lambda v: row.id.startswith(v))
        and _any(filters.values("name"), lambda v: re.search(v, row.name) is not None)
        and labels_match(filters.values("label"), row.labels)
        and _any(filters.values("status"), lambda v: v == status)
        and _any(filters.values("node"), lambda v: v == row.node)
        and _any(filters.values("health"), lambda v: v == health)
        and _any(filters.values("ancestor"), lambda v: _same_image(v, row.image))
        and _any(
            filters.values("exited"),
            lambda v: status == "exited" and int(v) == (row.exit_code or 0),
        )
    )


def ps_shows_all(filters: Filters) -> bool:
    """A status or exited filter lists stopped containers without ``-a``, as docker does."""
    return filters.has("status") or filters.has("exited")


def event_matches(filters: Filters, row: EventRow) -> bool:
    """Whether ``events`` shows ``row`` under ``filters``; ``event=health_status`` matches every
    ``health_status: ...`` action, as docker's does."""
    return (
        _any(
            filters.values("container"),
            lambda v: row.container_id.startswith(v) or v.lstrip("/") == row.container_name,
        )
        and _any(
            filters.values("event"),
            lambda v: v in (row.action, row.action.partition(":")[0]),
        )
        and labels_match(filters.values("label"), row.labels)
        and _any(filters.values("node"), lambda v: v == row.node)
        and _any(filters.values("image"), lambda v: _same_image(v, row.image))
    )


def _same_image(wanted: str, image: str) -> bool:
    """``busybox`` names ``busybox:latest``, as docker's ancestor/image filters take it."""
    return image == wanted or (":" not in wanted.rsplit("/", 1)[-1] and image == f"{wanted}:latest")
