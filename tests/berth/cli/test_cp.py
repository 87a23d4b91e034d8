"""berth cp's arguments: which side is a container, and when a source means its contents."""

from __future__ import annotations

import pytest

from berth.cli.cp import copies_contents, parse_location


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("web:/etc", ("web", "/etc")),
        ("web:relative/path", ("web", "relative/path")),
        ("web:/a:b", ("web", "/a:b")),
        ("-", (None, "-")),
        ("/abs/with:colon", (None, "/abs/with:colon")),
        ("./rel:colon", (None, "./rel:colon")),
        ("plain", (None, "plain")),
    ],
)
def test_parse_location_splits_container_and_path_as_docker(
    argument: str, expected: tuple[str | None, str]
) -> None:
    assert parse_location(argument) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [("dir/.", True), (".", True), ("dir/./", True), ("dir", False), ("dir/", False)],
)
def test_copies_contents_only_for_a_trailing_dot(source: str, expected: bool) -> None:
    assert copies_contents(source) is expected
