"""Engine and session factory; built once by the worker wiring and passed in.

The database URL is a secret (it may carry a password): it is unwrapped here, at the one place
that builds an engine, and nowhere else.

This is also the one place where PostgreSQL's transport failures become Berth errors: every
connect has a deadline (``call_timeout``), every statement too (the server's
``statement_timeout``), and a psycopg ``OperationalError`` (connection refused, "the database
system is shutting down", a statement cancelled at its deadline, a serialization failure) is
``Unavailable`` naming the server's address (never the password), waiting for PostgreSQL for
``grace_seconds`` (``berth.errors.Waiting``): the workflows retry a step that long, the client
waits its own bound.
"""

from __future__ import annotations

import psycopg
from pydantic import SecretStr
from sqlalchemy import event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from berth.errors import DEFAULT_GRACE_SECONDS, Unavailable, Waiting

# A connect's and a statement's deadline unless the caller gives one (``Settings``).
CALL_TIMEOUT_SECONDS = 10.0
# libpq's connect_timeout is whole seconds, and it takes anything under 2 as 2.
_MIN_CONNECT_TIMEOUT = 2


def make_engine(
    database_url: SecretStr | str,
    call_timeout: float = CALL_TIMEOUT_SECONDS,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
) -> AsyncEngine:
    """An async engine over psycopg 3 with a small pool (a worker runs few steps at once)."""
    url = database_url.get_secret_value() if isinstance(database_url, SecretStr) else database_url
    # hide_parameters: a failed statement's error never echoes its bound values.
    engine = create_async_engine(
        url,
        pool_size=5,
        max_overflow=10,
        pool_pre_ping=True,
        hide_parameters=True,
        connect_args={
            "connect_timeout": max(_MIN_CONNECT_TIMEOUT, round(call_timeout)),
            "options": f"-c statement_timeout={round(call_timeout * 1000)}",
        },
    )
    waiting = Waiting(f"PostgreSQL at {server_address(make_url(url))}", "", grace_seconds)

    @event.listens_for(engine.sync_engine, "handle_error")
    def _unavailable(context: ExceptionContext) -> BaseException | None:
        if context.is_pre_ping:
            return None  # the pool's own ping: it replaces a dropped connection by itself
        return database_error(context.original_exception, waiting)

    return engine


def server_address(url: URL) -> str:
    """``host:port/database`` of a database URL: what a message may name (no user, no password)."""
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"


def database_error(error: BaseException, waiting: Waiting) -> Unavailable | None:
    """The ``Unavailable`` for a PostgreSQL transport failure; None for any other error."""
    if not isinstance(error, psycopg.OperationalError):
        return None
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return Unavailable.waiting(f"{waiting.dependency}: {reason}", waiting)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
