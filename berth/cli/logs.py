"""``berth logs``: a container's output, from its node's log files."""

from __future__ import annotations

import argparse
import sys

from berth.cli.context import Context


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


async def cmd_logs(context: Context, args: argparse.Namespace) -> int:
    berth = await context.berth()
    out = sys.stdout.buffer
    async for chunk in berth.stream_logs(args.container, tail=args.tail, follow=args.follow):
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
