"""rich tables at a terminal: docker's columns, a coloured STATUS, --no-trunc wraps."""

from __future__ import annotations

import io
import re

from berth.cli.terminal import is_terminal, print_table, status_style

HEADERS = ["CONTAINER ID", "STATUS", "NAMES"]
ROWS = [
    ["c0ffee123456", "Up 5 minutes (healthy)", "web-1"],
    [
        "deadbeef0000",
        "Exited (137) 2 seconds ago",
        "a-rather-long-container-name-for-a-narrow-terminal",
    ],
]


def test_status_style_green_up_red_failures() -> None:
    assert status_style("Up 5 minutes") == "green"
    assert status_style("Up 5 minutes (unhealthy)") == "red"
    assert status_style("Exited (137) 2 seconds ago") == "red"
    assert status_style("Exited (0) 1 second ago") == "default"
    assert status_style("Removal In Progress") == "yellow"


def test_print_table_colours_status_and_ellipsizes_without_no_trunc() -> None:
    out = io.StringIO()

    print_table(HEADERS, ROWS, out, width=60)

    text = out.getvalue()
    assert "CONTAINER ID" in text and "c0ffee123456" in text
    assert "\x1b[32mUp 5 minutes" in text  # green
    assert "…" in text and "a-rather-long-container-name-for-a-narrow-terminal" not in text


def test_print_table_no_trunc_wraps_instead_of_cutting() -> None:
    out = io.StringIO()

    print_table(HEADERS, ROWS, out, no_trunc=True, width=60)

    lines = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue()).splitlines()
    names_at = lines[0].index("NAMES")
    names = "".join(line[names_at:].strip() for line in lines[1:])
    assert "…" not in out.getvalue()
    assert names == "web-1a-rather-long-container-name-for-a-narrow-terminal"


def test_is_terminal_false_for_a_pipe_or_a_buffer() -> None:
    assert is_terminal(io.StringIO()) is False
