"""The one error of the CLI's own parsing: a bad flag or argument (docker exits 125 for it).

Kept free of temporalio and pydantic so that the pure CLI modules stay cheap to import. It is a
``BerthFailure``, so the entry prints it as one line and exits 125.
"""

from __future__ import annotations

from berth.cli.context import BerthFailure

# docker's exit code for a usage error or a failure of the CLI itself.
USAGE_EXIT_CODE = 125


class UsageError(BerthFailure, ValueError):
    """A flag or argument the CLI cannot take; the message names it, as docker's do."""
