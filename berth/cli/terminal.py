"""Tables for a person at a terminal: rich's, with docker's columns and a coloured STATUS.

Only for a terminal: piped output stays docker's plain tab-aligned text (scripts parse it, and
it costs no import). rich is imported inside :func:`print_table` (about 30 ms), never at the
CLI's start-up. Without ``--no-trunc`` cells that do not fit the terminal end with ``…``; with
it they wrap instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, Any

# A column keeps up to this many characters when the terminal is too narrow for all.
MIN_COLUMN_WIDTH = 14


def is_terminal(stream: IO[str]) -> bool:
    """Whether ``stream`` is a terminal (a person reads it), not a pipe or a file."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def status_style(status: str) -> str:
    """The colour of a docker STATUS: green when up, red for a failed exit, yellow otherwise."""
    if status.startswith("Up"):
        return "red" if "(unhealthy)" in status else "green"
    if status.startswith("Exited (0)") or status == "Created":
        return "default"
    if status.startswith("Exited") or status == "Dead":
        return "red"
    return "yellow"


def print_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    stream: IO[str],
    no_trunc: bool = False,
    width: int | None = None,
) -> None:
    """``rows`` under ``headers`` as a rich table on ``stream``; a ``STATUS`` column coloured."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=stream, width=width, highlight=False, force_terminal=True)
    table = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
    for at, header in enumerate(headers):
        longest = max((len(row[at]) for row in rows), default=0)
        table.add_column(
            header,
            overflow="fold" if no_trunc else "ellipsis",
            no_wrap=not no_trunc,
            # Short columns (ids, states) stay whole; only long ones give way to the width.
            min_width=min(max(longest, len(header)), MIN_COLUMN_WIDTH),
        )
    status_at = list(headers).index("STATUS") if "STATUS" in headers else -1
    for row in rows:
        cells: list[Any] = list(row)
        if status_at >= 0:
            cells[status_at] = Text(row[status_at], style=status_style(row[status_at]))
        table.add_row(*cells)
    console.print(table)
