"""Human units as docker's flags take them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from berth.cli.units import (
    format_bytes,
    parse_bytes,
    parse_cpus,
    parse_duration,
    parse_seconds,
    parse_timestamp,
)
from berth.cli.usage import UsageError


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512m", 512 * 2**20),
        ("512M", 512 * 2**20),
        ("1g", 2**30),
        ("1.5g", 3 * 2**29),
        ("64MiB", 64 * 2**20),
        ("64mb", 64 * 2**20),
        ("100k", 102_400),
        ("1048576", 1_048_576),
        ("10b", 10),
    ],
)
def test_parse_bytes_binary_multiples_as_go_units(text: str, size: int) -> None:
    assert parse_bytes(text) == size


@pytest.mark.parametrize("text", ["", "5x", "m", "-1m", "1.2.3.4q", "99999999999p"])
def test_parse_bytes_refuses_what_is_not_a_size(text: str) -> None:
    with pytest.raises(UsageError, match="invalid size"):
        parse_bytes(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5.0), ("1m30s", 90.0), ("250ms", 0.25), ("1h", 3600.0), ("0", 0.0), ("1.5s", 1.5)],
)
def test_parse_duration_go_durations_in_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_parse_duration_bare_number_needs_a_unit() -> None:
    with pytest.raises(UsageError, match="missing unit"):
        parse_duration("5")


@pytest.mark.parametrize("text", ["-5s", "5x", "s", "", "1m-2s"])
def test_parse_duration_refuses_malformed_or_negative(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)


def test_parse_cpus_as_nano_cpus_and_refuses_finer_than_a_nano() -> None:
    assert parse_cpus("1.5") == 1_500_000_000
    assert parse_cpus("0.000000001") == 1
    with pytest.raises(UsageError, match="too precise"):
        parse_cpus("0.0000000001")
    with pytest.raises(UsageError):
        parse_cpus("two")


def test_parse_seconds_whole_non_negative() -> None:
    assert parse_seconds("10") == 10
    for bad in ("-1", "1.5", "ten"):
        with pytest.raises(UsageError):
            parse_seconds(bad)


def test_format_bytes_as_go_units_bytes_size() -> None:
    assert [format_bytes(n) for n in (100, 512 * 2**20, 3 * 2**29)] == ["100B", "512MiB", "1.5GiB"]


def test_parse_timestamp_unix_rfc3339_and_durations_ago() -> None:
    now = datetime(2026, 1, 2, 10, 0, tzinfo=UTC)
    assert parse_timestamp("1700000000.5", now) == datetime.fromtimestamp(1700000000.5, tz=UTC)
    assert parse_timestamp("2026-01-02T09:00:00Z", now) == now - timedelta(hours=1)
    assert parse_timestamp("2026-01-02T11:00:00.123456789+02:00", now) == now - timedelta(
        hours=1
    ) + timedelta(microseconds=123456)
    assert parse_timestamp("10m", now) == now - timedelta(minutes=10)
    with pytest.raises(UsageError, match="invalid time"):
        parse_timestamp("yesterday", now)
