"""Engine and session factory; built once by the worker wiring and passed in.

The database URL is a secret (it may carry a password): it is unwrapped here, at the one place
that builds an engine, and nowhere else.
"""

from __future__ import annotations

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def make_engine(database_url: SecretStr | str) -> AsyncEngine:
    """An async engine over psycopg 3 with a small pool (a worker runs few steps at once)."""
    url = database_url.get_secret_value() if isinstance(database_url, SecretStr) else database_url
    # hide_parameters: a failed statement's error never echoes its bound values.
    return create_async_engine(
        url, pool_size=5, max_overflow=10, pool_pre_ping=True, hide_parameters=True
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
