"""Reads for the command line: containers, their events, health and nodes, in SQL on psycopg.

Each ``berth`` call is a fresh interpreter, and ``berth ps`` must answer in about the time Python
takes to start: SQLAlchemy's asyncio stack and Berth's ORM models cost several hundred
milliseconds to import, psycopg about 90 ms of CPU, asyncpg about 30. So the CLI's reads are
plain SQL here on asyncpg, beside the ORM repositories they mirror (``ContainerRepository.find``,
``HealthRepository``, ``NodeRepository.is_live``); importing this module loads asyncpg and the
standard library only. Queries are written with ``%s`` placeholders, as the ORM's driver
(psycopg) takes them, and numbered for asyncpg here.

Rows carry the attribute names of ``berth.db.models``' classes (``state`` is the state's value, a
string, which compares equal to a ``ContainerState``), so code that formats a container takes
either (tests/berth/db/test_reads.py keeps the columns in step with the models).
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg

# A container id prefix as docker takes it: 12 or more lower-case hex digits.
ID_PREFIX = re.compile(r"^[0-9a-f]{12,64}$")
# A node whose agent has not refreshed its row for this long counts as down
# (``berth.db.repository.NODE_LIVENESS``).
NODE_LIVENESS_SECONDS = 30
# How long a read waits between two tries while PostgreSQL restarts (doubling).
_FIRST_PAUSE_SECONDS = 0.2
_MAX_PAUSE_SECONDS = 2.0


@dataclass(frozen=True)
class ContainerRow:
    """A ``containers`` row (``berth.db.models.Container``)."""

    id: str
    name: str
    image: str
    node: str
    config: dict[str, Any]
    state: str
    pid: int | None
    exit_code: int | None
    error: str | None
    ip: str | None
    operation: str | None
    restart_count: int
    restart_backoff_ms: int
    stop_signal: str | None
    has_been_started_before: bool
    has_been_manually_stopped: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class EventRow:
    """A ``container_events`` row (``berth.db.models.ContainerEvent``)."""

    id: int
    container_id: str
    container_name: str
    node: str
    action: str
    attributes: dict[str, Any]
    time: datetime


@dataclass(frozen=True)
class HealthRow:
    """A ``container_health`` row (``berth.db.models.ContainerHealth``), its check's state."""

    container_id: str
    node: str
    pid: int | None
    status: str
    failing_streak: int
    log: list[dict[str, Any]]
    exec_id: str | None
    updated_at: datetime


def _columns(row: type[Any], prefix: str = "") -> str:
    return ", ".join(prefix + field.name for field in fields(row))


_CONTAINERS = f"SELECT {_columns(ContainerRow)} FROM containers"
_EVENTS = f"SELECT {_columns(EventRow)} FROM container_events"
_HEALTH = f"SELECT {_columns(HealthRow)} FROM container_health"


class DatabaseUnreachable(Exception):
    """PostgreSQL cannot be reached (refused, timed out, dropped); the message names where."""


def libpq_url(database_url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://...``) as libpq takes it (``postgresql://...``)."""
    scheme, sep, rest = database_url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


def server_address(database_url: str) -> str:
    """``host:port/database``: what a message may name (never the user or the password)."""
    try:
        url = urlsplit(libpq_url(database_url))
        port = url.port or 5432
    except ValueError:
        return "(unparsable BERTH_DATABASE_URL)"
    return f"{url.hostname or 'localhost'}:{port}/{unquote(url.path.lstrip('/'))}"


def _numbered(query: str) -> str:
    """``%s`` placeholders as asyncpg's ``$1``, ``$2``, ..."""
    parts = query.split("%s")
    return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)) + parts[-1]


def _json_fields(row: type[Any]) -> frozenset[str]:
    """The fields of a row type that hold JSONB (asyncpg hands it over as text)."""
    return frozenset(f.name for f in fields(row) if str(f.type).startswith(("dict", "list")))


# What a lost or refused connection raises in asyncpg (and under it, the socket).
_TRANSPORT_ERRORS = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
)


def _unreachable(database_url: str, error: BaseException) -> DatabaseUnreachable:
    lines = str(error).strip().splitlines()
    reason = lines[0] if lines else type(error).__name__
    return DatabaseUnreachable(
        f"cannot connect to PostgreSQL at {server_address(database_url)}: {reason}"
    )


def _worth_waiting(error: BaseException) -> bool:
    """A server that refuses connections or says it is starting: it may be restarting."""
    return isinstance(error, ConnectionRefusedError | asyncpg.CannotConnectNowError)


class ContainerReads:
    """Read-only queries on one connection (each read sees what is committed)."""

    def __init__(self, connection: asyncpg.Connection, database_url: str) -> None:
        self._connection = connection
        self._database_url = database_url

    @classmethod
    async def connect(
        cls, database_url: str, call_timeout: float, wait_seconds: float
    ) -> ContainerReads:
        """Connect, waiting up to ``wait_seconds`` for a PostgreSQL that refuses (restarting).

        Every connect and statement has the deadline ``call_timeout``. ``DatabaseUnreachable``
        when it cannot connect in time. TLS rides on the URL as libpq reads it (``sslmode``,
        ``sslrootcert``, ``sslcert``, ``sslkey``).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        pause = _FIRST_PAUSE_SECONDS
        while True:
            try:
                connection = await asyncpg.connect(
                    libpq_url(database_url),
                    timeout=max(2.0, call_timeout),
                    command_timeout=call_timeout,
                    server_settings={"statement_timeout": str(round(call_timeout * 1000))},
                )
                return cls(connection, database_url)
            except (*_TRANSPORT_ERRORS, asyncpg.PostgresError, ValueError) as err:
                if not _worth_waiting(err) or loop.time() + pause > deadline:
                    raise _unreachable(database_url, err) from None
            await asyncio.sleep(pause)
            pause = min(pause * 2, _MAX_PAUSE_SECONDS)

    async def close(self) -> None:
        await self._connection.close()

    async def _rows(self, row: type[Any], query: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """``query`` (``%s`` placeholders) as ``row`` objects, JSONB decoded."""
        try:
            records = await self._connection.fetch(_numbered(query), *params)
        except _TRANSPORT_ERRORS as err:
            raise _unreachable(self._database_url, err) from None
        decoded = _json_fields(row)
        return [
            row(**{k: json.loads(v) if k in decoded and v is not None else v for k, v in r.items()})
            for r in records
        ]

    async def find(self, ref: str) -> ContainerRow | None:
        """The container whose id, unique id prefix (12+ hex digits) or name is ``ref``."""
        found = await self._rows(
            ContainerRow,
            f"{_CONTAINERS} WHERE id = %s OR name = %s LIMIT 1",
            (ref, ref.lstrip("/")),
        )
        if not found and ID_PREFIX.match(ref):
            # Only hex reaches LIKE: no '%' or '_' to escape.
            found = await self._rows(
                ContainerRow, f"{_CONTAINERS} WHERE id LIKE %s LIMIT 2", (ref + "%",)
            )
            return found[0] if len(found) == 1 else None
        return found[0] if found else None

    async def containers(self) -> list[ContainerRow]:
        """Every container, oldest first."""
        rows: list[ContainerRow] = await self._rows(
            ContainerRow, f"{_CONTAINERS} ORDER BY created_at"
        )
        return rows

    async def health(self, container_id: str) -> HealthRow | None:
        """The container's health record, if it has a check."""
        found = await self._rows(HealthRow, f"{_HEALTH} WHERE container_id = %s", (container_id,))
        return found[0] if found else None

    async def health_statuses(self) -> dict[str, str]:
        """Each container's health status whose record belongs to the task it runs now."""
        rows = await self._rows(
            HealthRow,
            f"SELECT {_columns(HealthRow, 'h.')} "
            "FROM container_health h JOIN containers c ON c.id = h.container_id "
            "WHERE h.pid = c.pid",
        )
        return {row.container_id: row.status for row in rows}

    async def events(self, container_id: str | None = None, since_id: int = 0) -> list[EventRow]:
        """Events after ``since_id`` (of one container, if given), oldest first."""
        if container_id is None:
            query, params = f"{_EVENTS} WHERE id > %s ORDER BY id", (since_id,)
        else:
            query = f"{_EVENTS} WHERE id > %s AND container_id = %s ORDER BY id"
            params = (since_id, container_id)  # type: ignore[assignment]
        rows: list[EventRow] = await self._rows(EventRow, query, params)
        return rows

    async def node_endpoint(self, node: str) -> str | None:
        """host:port of the node's endpoint, if its agent runs (refreshed within the window)."""
        try:
            found: str | None = await self._connection.fetchval(
                "SELECT endpoint FROM nodes"
                " WHERE name = $1 AND last_seen_at > now() - $2 * interval '1s'",
                node,
                NODE_LIVENESS_SECONDS,
            )
        except _TRANSPORT_ERRORS as err:
            raise _unreachable(self._database_url, err) from None
        return found

    async def node_is_live(self, node: str) -> bool:
        """Whether the node's agent refreshed its row within the liveness window."""
        try:
            found = await self._connection.fetchval(
                "SELECT 1 FROM nodes WHERE name = $1 AND last_seen_at > now() - $2 * interval '1s'",
                node,
                NODE_LIVENESS_SECONDS,
            )
        except _TRANSPORT_ERRORS as err:
            raise _unreachable(self._database_url, err) from None
        return found is not None
