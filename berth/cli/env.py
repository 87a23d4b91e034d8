"""The few settings the read verbs need, from the environment as ``berth.config.Settings`` reads
them, without importing pydantic-settings (about 100 ms, most of ``berth ps``' budget).

Only what a PostgreSQL read needs: verbs that need more use ``Context.settings`` (the full
``Settings``). tests/berth/cli/test_env.py checks that both read the same values and defaults.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from berth.cli.context import BerthFailure

# Settings' defaults (berth.config.Settings), for the fields read here.
DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/berth"
DEFAULT_CALL_TIMEOUT_SECONDS = 10.0
DEFAULT_CLIENT_WAIT_SECONDS = 30.0


class ReadSettings(NamedTuple):
    """``database_url``, ``runtime_call_timeout_seconds`` and ``client_wait_seconds``."""

    database_url: str
    runtime_call_timeout_seconds: float
    client_wait_seconds: float


def _environment() -> dict[str, str]:
    # pydantic-settings matches BERTH_* names case-insensitively by default; so does this.
    return {name.upper(): value for name, value in os.environ.items()}


def _seconds(env: dict[str, str], field: str, default: float, positive: bool) -> float:
    name = f"BERTH_{field.upper()}"
    if name not in env:
        return default
    try:
        value = float(env[name])
    except ValueError:
        raise BerthFailure(f"bad settings: {field}: not a number: {env[name]!r}") from None
    if value < 0 or (positive and value == 0):
        bound = "greater than 0" if positive else "0 or more"
        raise BerthFailure(f"bad settings: {field}: must be {bound}, not {value:g}")
    return value


def read_settings() -> ReadSettings:
    """The read verbs' settings from ``BERTH_*``; ``BerthFailure`` for a malformed value."""
    env = _environment()
    return ReadSettings(
        database_url=env.get("BERTH_DATABASE_URL", DEFAULT_DATABASE_URL),
        runtime_call_timeout_seconds=_seconds(
            env, "runtime_call_timeout_seconds", DEFAULT_CALL_TIMEOUT_SECONDS, positive=True
        ),
        client_wait_seconds=_seconds(
            env, "client_wait_seconds", DEFAULT_CLIENT_WAIT_SECONDS, positive=False
        ),
    )
