"""Placeholder until the node endpoint's verb lands (issue 16): says so and exits 125."""

from __future__ import annotations

import argparse
import sys

from berth.cli.context import Context


async def cmd_unavailable(context: Context, args: argparse.Namespace) -> int:
    del context
    print(f"berth: {args.verb_name} is not available in this build", file=sys.stderr)
    return 125


def configure(verb: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("arguments", nargs=argparse.REMAINDER)
    parser.set_defaults(handler=cmd_unavailable, verb_name=verb)
