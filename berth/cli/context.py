"""What a verb's handler asks for: settings, the client, each built on first use, closed after.

Light at import: Berth's settings and clients are imported when a handler first asks for them, so
a verb pays only for what it uses.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from berth.cli.transport import HttpOperations
    from berth.cli.wire_reads import Reads, WireReads
    from berth.client import BerthClient
    from berth.config import Settings
    from berth.db.reads import ContainerReads
    from berth.endpoint.client import NodeTarget


# How long a derived HTTP address gets to accept a connection before the SDK serves instead
# (derived only without TLS: a local or LAN frontend, which answers in well under this).
_PROBE_SECONDS = 0.5


class BerthFailure(Exception):
    """Berth itself cannot serve the command (settings, Temporal or PostgreSQL): exit 125.

    The message is one line that says which service and where.
    """


class DaemonError(Exception):
    """An error the daemon side reports (``Error response from daemon: <message>``): exit 1.

    For the light paths, which do not import ``berth.errors`` (and with it temporalio); any
    ``berth.errors.BerthError`` is reported the same way.
    """


class NeedsEventLoop(Exception):
    """A loopless context was asked for what needs asyncio (the SDK's client, asyncpg's reads):
    nothing was done yet, so the verb runs again under an event loop."""


class Context:
    """A verb's dependencies, each made on first use; ``close`` releases what was made.

    A ``loopless`` context makes only what blocks (Temporal's HTTP API, ``berth.db.wire``) and
    raises :class:`NeedsEventLoop` where it would need asyncio (``berth.cli.main`` runs such a
    verb's coroutine without an event loop, and under one when this is raised).
    """

    def __init__(self, loopless: bool = False) -> None:
        self.loopless = loopless
        self._wire: WireReads | None = None
        self._settings: Settings | None = None
        self._berth: BerthClient | None = None
        self._reader: ContainerReads | None = None
        self._operations: HttpOperations | None = None

    @property
    def settings(self) -> Settings:
        """Berth's settings from the environment (``BERTH_*``); the CLI serves no metrics."""
        if self._settings is None:
            from pydantic import ValidationError

            from berth.config import Settings
            from berth.converter import describe_validation_error

            try:
                # The workers own the metrics ports (BERTH_METRICS_ADDRESS may be set in an
                # environment shared with them, as the dev stack's is).
                settings = Settings(metrics_address=None)
            except ValidationError as err:
                raise BerthFailure(f"bad settings: {describe_validation_error(err)}") from None
            self._settings = settings
        return self._settings

    async def berth(self) -> BerthClient:
        """The client (Temporal and PostgreSQL), connected on first use."""
        if self._berth is None:
            from berth.client import BerthClient
            from berth.errors import Unavailable

            try:
                self._berth = await BerthClient.connect(self.settings)
            except Unavailable as err:
                raise BerthFailure(err.message) from None
        return self._berth

    async def reader(self) -> ContainerReads:
        """PostgreSQL reads (containers, events, health, nodes) without Temporal or SQLAlchemy.

        Connected on first use, waiting out a restarting PostgreSQL for ``client_wait_seconds``;
        ``BerthFailure`` naming the server when it cannot connect.
        """
        if self._reader is None:
            from berth.cli.env import read_settings
            from berth.db.reads import ContainerReads, DatabaseUnreachable

            settings = read_settings()
            try:
                self._reader = await ContainerReads.connect(
                    settings.database_url,
                    settings.runtime_call_timeout_seconds,
                    settings.client_wait_seconds,
                )
            except DatabaseUnreachable as err:
                raise BerthFailure(str(err)) from None
        return self._reader

    async def operations(self) -> HttpOperations | BerthClient:
        """What the writing verbs call (``create``, ``start``, ``stop``, ``restart``, ``pause``,
        ``unpause``, ``remove``): over Temporal's HTTP API (no SDK to import, no native threads)
        at ``BERTH_TEMPORAL_HTTP_ADDRESS``, or when that is not set, beside
        ``BERTH_TEMPORAL_ADDRESS`` (gRPC port + 10) if something listens there; else (set empty,
        or nothing listening at the derived address) the SDK's client."""
        if self._operations is not None:
            return self._operations
        if self._berth is not None:
            return self._berth
        from berth.cli.env import read_settings, temporal_http_settings

        http = temporal_http_settings()
        if http is None:
            return await self._sdk()
        from berth.cli.transport import HttpOperations
        from berth.temporal_http import (
            HttpTarget,
            Sealer,
            TemporalHttp,
            TemporalUnreachable,
            tls_context,
        )

        reads = read_settings()
        try:
            keys = http.codec_keys
            if keys is None and http.codec_keys_file is not None:
                with open(http.codec_keys_file) as file:
                    keys = file.read()
            sealer = Sealer.parse(keys) if keys is not None else None
            tls = None
            if http.tls:
                ca = None
                if http.tls_ca_file:
                    with open(http.tls_ca_file, "rb") as file:
                        ca = file.read()
                tls = tls_context(ca, http.tls_cert_file, http.tls_key_file)
        except (OSError, ValueError) as err:
            raise BerthFailure(f"bad settings: {err}") from None
        target = HttpTarget(
            address=http.http_address,
            namespace=http.namespace,
            tls=tls,
            server_name=http.tls_server_name,
            api_key=http.api_key,
            sealer=sealer,
            wait_seconds=reads.client_wait_seconds,
            call_timeout=reads.runtime_call_timeout_seconds,
        )
        temporal = TemporalHttp(target)
        # Only a derived address may be absent (a frontend without the HTTP API): the connect
        # it costs is the first call's (the connection is kept), about 0.05 ms on loopback.
        try:
            listening = not http.derived or temporal.listening(_PROBE_SECONDS)
        except TemporalUnreachable as err:
            raise BerthFailure(str(err)) from None
        if not listening:
            return await self._sdk()
        self._operations = HttpOperations(await self.reads(), temporal, http.task_queue)
        return self._operations

    async def _sdk(self) -> BerthClient:
        if self.loopless:
            raise NeedsEventLoop("the SDK's client")
        return await self.berth()

    async def reads(self) -> Reads:
        """The reads before an operation or a node endpoint's call: on ``berth.db.wire`` (no
        asyncio, no asyncpg), or :meth:`reader`'s where that client does not speak the database
        URL. Made on first use."""
        if self._wire is not None:
            return self._wire
        from berth.cli.env import read_settings
        from berth.cli.wire_reads import WireReads
        from berth.db.wire import Unsupported

        settings = read_settings()
        try:
            self._wire = WireReads.connect(
                settings.database_url,
                settings.runtime_call_timeout_seconds,
                settings.client_wait_seconds,
            )
        except Unsupported:
            if self.loopless:
                raise NeedsEventLoop("asyncpg's reads") from None
            return await self.reader()
        return self._wire

    async def node_target(self, ref: str) -> NodeTarget:
        """Container ``ref`` and a channel to its node's endpoint (``DaemonError`` if no
        container is named so, ``EndpointUnreachable`` if its node has no endpoint)."""
        from berth.cli.env import endpoint_settings
        from berth.endpoint.client import node_target

        reads = await self.reads()
        container = await reads.find(ref)
        if container is None:
            raise DaemonError(f"No such container: {ref}")
        return await node_target(endpoint_settings(), reads, container)

    async def close(self) -> None:
        if self._operations is not None:
            self._operations.close()
            self._operations = None
        if self._wire is not None:
            self._wire.close()
            self._wire = None
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        if self._berth is not None:
            await self._berth.__aexit__(None, None, None)
            self._berth = None


# The dependencies whose ``Unavailable`` means Berth itself cannot serve (exit 125), as
# ``berth.errors.Waiting.dependency`` names them: "Temporal at <address>", "PostgreSQL at <...>".
_OWN_SERVICES = ("Temporal at ", "PostgreSQL at ")


def berth_failure(err: BaseException) -> str | None:
    """The one line for a failure of Berth itself (exit 125), or None for any other error.

    ``BerthFailure``; a light read that lost PostgreSQL; a node endpoint that cannot be reached
    (``berth.endpoint.client.EndpointUnreachable``, or a gRPC call's transport failure); an
    ``Unavailable`` waiting for Temporal or PostgreSQL (not one a saga reports for containerd or
    a node: that is the daemon's).
    """
    if isinstance(err, BerthFailure):
        return str(err)
    reads = sys.modules.get("berth.db.reads")
    if reads is not None and isinstance(err, reads.DatabaseUnreachable):
        return str(err)
    endpoint = sys.modules.get("berth.endpoint.client")
    if endpoint is not None:
        # A node endpoint that cannot be reached (no agent, refused connection or TLS).
        failure = endpoint.endpoint_failure(err)
        if isinstance(failure, endpoint.EndpointUnreachable):
            return str(failure)
    errors = sys.modules.get("berth.errors")
    if errors is not None and isinstance(err, errors.Unavailable):
        waiting = errors.waiting_of(err)
        if waiting is not None and waiting.dependency.startswith(_OWN_SERVICES):
            return str(err.message)
    return None


def daemon_error(context: Context, err: BaseException) -> str | None:
    """The message of a daemon-side error (a typed Berth error, a Temporal call's transport
    failure, a node endpoint's answer), or None for anything else.

    Reads the error classes from ``sys.modules``: a module never imported raised nothing, and
    importing it here would cost the start-up time this package saves.
    """
    if isinstance(err, DaemonError):
        return str(err)
    errors = sys.modules.get("berth.errors")
    if errors is not None and isinstance(err, errors.BerthError):
        return str(err.message)
    endpoint = sys.modules.get("berth.endpoint.client")
    if endpoint is not None:
        failure = endpoint.endpoint_failure(err)
        if isinstance(failure, endpoint.EndpointError):
            return str(failure)
    service = sys.modules.get("temporalio.service")
    if service is not None and isinstance(err, service.RPCError):
        from berth.client import call_error

        error = call_error(context.settings.temporal_address, err)
        return None if error is None else str(error.message)
    return None
