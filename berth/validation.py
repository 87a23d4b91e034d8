"""Pydantic validation errors as one line of text, for every client of the contract.

Standard library only at import (the command line formats with it without loading the Temporal
SDK; ``berth.converter`` re-exports it for the workers' data converter).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


def describe_validation_error(err: ValidationError) -> str:
    """One line per bad field: ``config.name: Value error, Invalid container name ...``."""
    parts = []
    for item in err.errors():
        location = ".".join(str(part) for part in item["loc"]) or "input"
        parts.append(f"{location}: {item['msg']}")
    return "invalid input: " + "; ".join(parts)
