"""``berth inspect``: containers as docker inspect's JSON."""

from __future__ import annotations

import argparse

from berth.cli.context import Context


async def cmd_inspect(context: Context, args: argparse.Namespace) -> int:
    from berth.client import dumps

    berth = await context.berth()
    print(dumps([await berth.inspect(ref) for ref in args.containers]))
    return 0


def configure(verb: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("containers", nargs="+")
    parser.set_defaults(handler=cmd_inspect)
