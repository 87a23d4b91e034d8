"""Human units as docker's flags take them: sizes (``-m 512m``), durations (``5s``), CPUs (``1.5``).

Sizes follow go-units' ``RAMInBytes`` (binary multiples, ``k`` = 1024, an optional ``i``/``b``
suffix, case-insensitive); durations follow Go's ``time.ParseDuration`` (``300ms``, ``1m30s``;
a bare number other than ``0`` is refused, as docker refuses it); CPUs follow docker's
``NanoCPUs`` (a decimal number of CPUs with at most nine decimals).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from berth.cli.usage import UsageError

_SIZE = re.compile(r"^(\d+(?:\.\d+)*) ?([kmgtp])?i?b?$", re.IGNORECASE)
_BINARY = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
# Go's duration units, in seconds.
_DURATION_UNITS = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),
    "μs": Decimal("1e-6"),
    "ms": Decimal("1e-3"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}
_DURATION_PART = re.compile(r"(\d*\.?\d*)(ns|us|µs|μs|ms|s|m|h)")
_NANO = Decimal(1_000_000_000)
# The largest value an int64 field (memory, nanoseconds) holds.
_INT64_MAX = 2**63 - 1


def parse_bytes(value: str) -> int:
    """A size like ``512m``, ``1.5g``, ``64MiB`` or ``1048576`` in bytes (binary multiples).

    Raises:
        UsageError: not a size, as go-units says it (``invalid size: '5x'``).
    """
    match = _SIZE.match(value.strip())
    if not match:
        raise UsageError(f"invalid size: {value!r}")
    number, unit = match.groups()
    try:
        size = Decimal(number)
    except InvalidOperation:
        raise UsageError(f"invalid size: {value!r}") from None
    if unit:
        size *= _BINARY[unit.lower()]
    if size > _INT64_MAX:
        raise UsageError(f"invalid size: {value!r} is too large")
    return int(size)


def parse_duration(value: str) -> float:
    """A Go duration like ``5s``, ``1m30s``, ``250ms`` or ``0``, in seconds.

    Raises:
        UsageError: malformed, a bare number other than 0, or negative.
    """
    text = value.strip()
    if text in ("0", "+0", "-0"):
        return 0.0
    if text.startswith("-"):
        raise UsageError(f"duration cannot be negative: {value!r}")
    text = text.removeprefix("+")
    total = Decimal(0)
    position = 0
    while position < len(text):
        part = _DURATION_PART.match(text, position)
        if part is None and re.fullmatch(r"\d*\.?\d*", text[position:]):
            raise UsageError(f"time: missing unit in duration {value!r}")
        if part is None or part.group(1) in ("", "."):
            raise UsageError(f"time: invalid duration {value!r}")
        total += Decimal(part.group(1)) * _DURATION_UNITS[part.group(2)]
        position = part.end()
    if not text:
        raise UsageError(f"time: invalid duration {value!r}")
    if total * _NANO > _INT64_MAX:
        raise UsageError(f"time: invalid duration {value!r}: too large")
    return float(total)


def parse_cpus(value: str) -> int:
    """A number of CPUs like ``1.5`` as nano-CPUs (``1500000000``), as docker's ``--cpus``.

    Raises:
        UsageError: not a number, negative, or finer than a nano-CPU.
    """
    try:
        cpus = Decimal(value.strip())
    except InvalidOperation:
        raise UsageError(f"failed to parse {value!r} as a rational number") from None
    if not cpus.is_finite() or cpus < 0:
        raise UsageError(f"invalid value {value!r} for cpus: must be a positive number")
    nanos = cpus * _NANO
    if nanos != nanos.to_integral_value():
        raise UsageError(f"value is too precise: {value!r}")
    if nanos > _INT64_MAX:
        raise UsageError(f"invalid value {value!r} for cpus: too large")
    return int(nanos)


def parse_seconds(value: str) -> int:
    """A whole number of seconds (``-t 10``); 0 or more.

    Raises:
        UsageError: not a whole number, or negative.
    """
    try:
        seconds = int(value.strip())
    except ValueError:
        raise UsageError(f"invalid number of seconds: {value!r}") from None
    if seconds < 0:
        raise UsageError(f"invalid number of seconds: {value!r} is negative")
    return seconds


def format_bytes(size: int) -> str:
    """A size as go-units' ``BytesSize`` prints it: ``512MiB``, ``1.5GiB``, ``100B``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:.4g}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


_DATE_FORMATS = (
    "%Y-%m-%dT%H:%M:%S.%f%z",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d",
)


def parse_timestamp(value: str, now: datetime) -> datetime:
    """docker's ``--since``/``--until``: a Unix time (``1700000000.5``), an RFC 3339 date or time
    (local time without a zone), or a Go duration before ``now`` (``10m``).

    Raises:
        UsageError: none of these.
    """
    text = value.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return datetime.fromtimestamp(float(text), tz=UTC)
    iso = re.sub(r"Z$", "+00:00", text)
    iso = re.sub(r"(\.\d{6})\d+", r"\1", iso)  # Python takes microseconds, Go nanoseconds
    for form in _DATE_FORMATS:
        try:
            moment = datetime.strptime(iso, form)
        except ValueError:
            continue
        return moment if moment.tzinfo else moment.astimezone()
    try:
        return now - timedelta(seconds=parse_duration(text))
    except UsageError:
        raise UsageError(
            f"invalid time {value!r}: not a Unix time, an RFC 3339 time or a duration"
        ) from None
