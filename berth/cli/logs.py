"""``berth logs``: a container's output, read from its node's log files on this host.

The container is looked up in PostgreSQL (``berth.db.reads``) and its log found where the node's
log driver writes it (``berth.cli.env.log_path``): no Temporal, no settings model.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from berth.cli.context import Context, DaemonError

if TYPE_CHECKING:
    from berth.db.reads import ContainerReads, ContainerRow

# The states in which ``logs --follow`` keeps waiting for output (docker's: until it stops).
FOLLOWED_STATES = frozenset({"starting", "running", "paused", "stopping"})


def parse_tail(value: str) -> int | None:
    """docker logs' ``--tail``: a number of lines, or ``all``."""
    if value == "all":
        return None
    try:
        lines = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of lines or 'all': {value!r}") from None
    if lines < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {lines}")
    return lines


async def stream_logs(
    reader: ContainerReads, container: ContainerRow, tail: int | None, follow: bool
) -> AsyncIterator[bytes]:
    """The container's output in chunks, oldest first, across rotated files; with ``follow``,
    then what it writes until it is no longer running (or is removed)."""
    from berth.cli.env import log_path
    from berth.container_logs import stream_log

    async def still_running() -> bool:
        current = await reader.find(container.id)
        return current is not None and current.state in FOLLOWED_STATES

    path = log_path(container.node, container.id)
    async for chunk in stream_log(path, tail, follow, still_running):
        yield chunk


async def cmd_logs(context: Context, args: argparse.Namespace) -> int:
    reader = await context.reader()
    container = await reader.find(args.container)
    if container is None:
        raise DaemonError(f"No such container: {args.container}")
    out = sys.stdout.buffer
    async for chunk in stream_logs(reader, container, args.tail, args.follow):
        out.write(chunk)
        if args.follow:
            out.flush()
    return 0


def configure(verb: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container")
    parser.add_argument(
        "-n", "--tail", type=parse_tail, default=None, help="lines from the end ('all')"
    )
    parser.add_argument("-f", "--follow", action="store_true", help="follow until it stops")
    parser.set_defaults(handler=cmd_logs)
