"""The CLI's PostgreSQL reads on ``berth.db.wire``: blocking, without asyncio or asyncpg.

What a verb reads before it calls Temporal's HTTP API or a node endpoint: a container by id,
id prefix or name, whether its node's agent is live, where its node's endpoint is. Apart from
``berth.cli.transport`` so that ``berth logs`` does not import the HTTP client it never uses.
tests/berth/db/test_wire.py checks they read what ``berth.db.reads`` does.
"""

from __future__ import annotations

import re
from typing import Protocol

from berth.cli.context import BerthFailure
from berth.db.wire import Connection, ServerError, Target, WireUnreachable
from berth.endpoint.placement import Placement as Container

# As berth.db.reads: a node whose agent has not refreshed its row for this long is down, and a
# container id prefix is 12 or more lower-case hex digits (tests/berth/cli/test_transport.py).
NODE_LIVENESS_SECONDS = 30
ID_PREFIX = re.compile(r"^[0-9a-f]{12,64}$")


class Reads(Protocol):
    """The reads an operation makes before Temporal (``ContainerReads`` or :class:`WireReads`)."""

    async def find(self, ref: str) -> Container | None: ...
    async def node_is_live(self, node: str) -> bool: ...
    async def node_endpoint(self, node: str) -> str | None: ...


class Placed:
    """A container's id, name and node, as :class:`WireReads` finds them."""

    __slots__ = ("id", "name", "node")

    def __init__(self, id: str, name: str, node: str) -> None:
        self.id, self.name, self.node = id, name, node


class WireReads:
    """``ContainerReads.find``, ``node_is_live`` and ``node_endpoint`` on ``berth.db.wire``: a
    blocking connection without asyncio or asyncpg (their import is most of a writing verb's own
    CPU time). The methods are coroutines for the :class:`Reads` protocol, and never suspend."""

    def __init__(self, connection: Connection, target: Target) -> None:
        self._connection = connection
        self._target = target

    @classmethod
    def connect(cls, database_url: str, call_timeout: float, wait_seconds: float) -> WireReads:
        """Connect as ``ContainerReads.connect`` does (waiting out a restarting server);
        ``berth.db.wire.Unsupported`` for a URL this client does not speak, ``BerthFailure``
        naming the server when it cannot connect."""
        target = Target.parse(database_url)
        try:
            connection = Connection.connect(
                target, max(2.0, call_timeout), wait_seconds, statement_timeout=call_timeout
            )
        except WireUnreachable as err:
            raise cls._unreachable(target, err) from None
        return cls(connection, target)

    @staticmethod
    def _unreachable(target: Target, err: Exception) -> BerthFailure:
        where = f"{target.host}:{target.port}/{target.database}"
        return BerthFailure(f"cannot connect to PostgreSQL at {where}: {err}")

    def _rows(self, sql: str, *parameters: str) -> list[tuple[str | None, ...]]:
        try:
            return self._connection.query(sql, parameters)
        except (WireUnreachable, ServerError) as err:
            raise self._unreachable(self._target, err) from None

    async def find(self, ref: str) -> Placed | None:
        """The container whose id, unique id prefix (12+ hex digits) or name is ``ref``."""
        columns = "SELECT id, name, node FROM containers"
        found = self._rows(f"{columns} WHERE id = $1 OR name = $2 LIMIT 1", ref, ref.lstrip("/"))
        if not found and ID_PREFIX.match(ref):
            # Only hex reaches LIKE: no '%' or '_' to escape.
            found = self._rows(f"{columns} WHERE id LIKE $1 LIMIT 2", ref + "%")
            if len(found) != 1:
                return None
        if not found:
            return None
        cid, name, node = found[0]
        return Placed(str(cid), str(name), str(node))

    async def node_is_live(self, node: str) -> bool:
        """Whether the node's agent refreshed its row within the liveness window."""
        return bool(
            self._rows(
                "SELECT 1 FROM nodes WHERE name = $1"
                " AND last_seen_at > now() - $2::int * interval '1s'",
                node,
                str(NODE_LIVENESS_SECONDS),
            )
        )

    async def node_endpoint(self, node: str) -> str | None:
        """host:port of the node's endpoint, if its agent runs (refreshed within the window)."""
        found = self._rows(
            "SELECT endpoint FROM nodes WHERE name = $1"
            " AND last_seen_at > now() - $2::int * interval '1s'",
            node,
            str(NODE_LIVENESS_SECONDS),
        )
        return found[0][0] if found else None

    def close(self) -> None:
        self._connection.close()
