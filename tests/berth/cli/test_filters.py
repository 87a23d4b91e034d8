"""ps and events filters, parsed and matched as docker's."""

from __future__ import annotations

import pytest

from berth.cli.filters import (
    EVENT_KEYS,
    PS_KEYS,
    EventRow,
    event_matches,
    parse_filters,
    ps_matches,
    ps_shows_all,
)
from berth.cli.usage import UsageError

WEB = dict(
    id="a1b2c3" + "0" * 58,
    name="web-1",
    image="local/busybox:latest",
    state="running",
    node="node-1",
    labels={"tier": "front", "team": "a"},
    health="healthy",
)


def ps(*given: str, **row: object) -> bool:
    from berth.cli.filters import PsRow

    return ps_matches(parse_filters(given, PS_KEYS), PsRow(**{**WEB, **row}))  # type: ignore[arg-type]


def test_ps_filter_values_of_one_key_are_alternatives_keys_all_must_match() -> None:
    assert ps("status=exited", "status=running")
    assert ps("status=running", "node=node-1")
    assert not ps("status=running", "node=node-2")


def test_ps_filter_labels_all_must_match_key_or_key_value() -> None:
    assert ps("label=tier", "label=team=a")
    assert not ps("label=tier", "label=team=b")
    assert not ps("label=missing")


def test_ps_filter_name_regex_id_prefix_health_ancestor_exited() -> None:
    assert ps("name=^web-") and not ps("name=^db")
    assert ps("id=a1b2") and not ps("id=b2")
    assert ps("health=healthy") and not ps("health=none")
    assert ps("health=none", health=None)
    assert ps("ancestor=local/busybox") and not ps("ancestor=other")
    assert ps("exited=137", state="exited", exit_code=137)
    assert not ps("exited=0", state="exited", exit_code=137)
    assert not ps("exited=0")  # a running container has no exit code to match


def test_ps_status_filter_speaks_docker_words_for_berth_states() -> None:
    assert ps("status=created", state="starting")
    assert ps("status=running", state="stopping")


def test_ps_status_or_exited_filter_lists_every_state() -> None:
    assert ps_shows_all(parse_filters(["status=exited"], PS_KEYS))
    assert not ps_shows_all(parse_filters(["name=web"], PS_KEYS))


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("nokey", "bad format of filter"),
        ("color=red", "invalid filter 'color'"),
        ("status=sleeping", "invalid filter 'status=sleeping'"),
        ("health=fine", "Unrecognised filter value for health: fine"),
        ("exited=x", "invalid filter 'exited=x'"),
        ("name=(", "invalid filter 'name=('"),
    ],
)
def test_parse_filters_refuses_what_docker_refuses(given: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        parse_filters([given], PS_KEYS)


def test_event_filters_container_by_id_prefix_or_name_and_event_by_action_prefix() -> None:
    row = EventRow(
        container_id="ffee" + "0" * 60,
        container_name="web-1",
        action="health_status: healthy",
        node="node-2",
        labels={"tier": "front"},
    )

    def matches(*given: str) -> bool:
        return event_matches(parse_filters(given, EVENT_KEYS), row)

    assert matches("container=ffee") and matches("container=web-1")
    assert not matches("container=web")
    assert matches("event=health_status") and matches("event=health_status: healthy")
    assert not matches("event=start")
    assert matches("label=tier=front", "node=node-2", "type=container")
    assert not matches("node=node-1")
    with pytest.raises(UsageError):
        parse_filters(["type=image"], EVENT_KEYS)
