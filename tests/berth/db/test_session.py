"""PostgreSQL's transport failures become ``Unavailable`` in the engine (``berth.db.session``)."""

from __future__ import annotations

import socket

import pytest
from sqlalchemy import text

from berth.db.session import make_engine
from berth.errors import Unavailable, Waiting, waiting_of

PASSWORD = "s3cret-not-to-show"


def closed_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_make_engine_closed_port_is_unavailable_naming_the_server_not_the_password() -> None:
    port = closed_loopback_port()
    engine = make_engine(
        f"postgresql+psycopg://berth:{PASSWORD}@127.0.0.1:{port}/berth", grace_seconds=7
    )
    try:
        with pytest.raises(Unavailable) as raised:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    finally:
        await engine.dispose()

    error = raised.value
    assert f"127.0.0.1:{port}/berth" in error.message
    assert PASSWORD not in f"{error.message} {error.details!r}"
    assert waiting_of(error) == Waiting(f"PostgreSQL at 127.0.0.1:{port}/berth", "", 7.0)
