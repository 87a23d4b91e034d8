"""docker ps's status words and go-units' human durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from berth.cli.status import ago, human_duration, status_words

NOW = datetime(2026, 1, 2, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("elapsed", "words"),
    [
        (timedelta(milliseconds=500), "Less than a second"),
        (timedelta(seconds=1), "1 second"),
        (timedelta(seconds=59), "59 seconds"),
        (timedelta(seconds=90), "About a minute"),
        (timedelta(minutes=5), "5 minutes"),
        (timedelta(minutes=59), "59 minutes"),
        (timedelta(minutes=70), "About an hour"),
        (timedelta(hours=47), "47 hours"),
        (timedelta(days=3), "3 days"),
        (timedelta(days=20), "2 weeks"),
        (timedelta(days=100), "3 months"),
        (timedelta(days=800), "2 years"),
    ],
)
def test_human_duration_as_go_units(elapsed: timedelta, words: str) -> None:
    assert human_duration(elapsed) == words


def test_status_words_running_with_health_and_paused() -> None:
    started = NOW - timedelta(minutes=5)
    common = {"now": NOW, "started_at": started, "finished_at": None, "exit_code": None}
    assert status_words("running", **common) == "Up 5 minutes"
    assert status_words("running", health="healthy", **common) == "Up 5 minutes (healthy)"
    assert status_words("running", health="starting", **common) == "Up 5 minutes (health: starting)"
    assert status_words("paused", health="healthy", **common) == "Up 5 minutes (Paused)"


def test_status_words_exited_created_dead_removing() -> None:
    assert (
        status_words(
            "exited",
            now=NOW,
            started_at=NOW - timedelta(minutes=1),
            finished_at=NOW - timedelta(seconds=2),
            exit_code=137,
        )
        == "Exited (137) 2 seconds ago"
    )
    never = {"now": NOW, "started_at": None, "finished_at": None, "exit_code": None}
    assert status_words("created", **never) == "Created"
    assert status_words("dead", **never) == "Dead"
    assert status_words("removing", **never) == "Removal In Progress"


def test_ago_as_the_created_column() -> None:
    assert ago(NOW - timedelta(hours=3), NOW) == "3 hours ago"
    assert ago(None, NOW) == ""
