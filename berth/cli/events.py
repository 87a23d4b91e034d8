"""``berth events``: the containers' recorded events."""

from __future__ import annotations

import argparse

from berth.cli.context import Context


async def cmd_events(context: Context, args: argparse.Namespace) -> int:
    berth = await context.berth()
    for event in await berth.events(args.container):
        attributes = ", ".join(f"{k}={v}" for k, v in event.attributes.items())
        print(
            f"{event.time.isoformat()} container {event.action} {event.container_id} "
            f"(name={event.container_name}, node={event.node}{', ' if attributes else ''}"
            f"{attributes})"
        )
    return 0


def configure(verb: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", nargs="?")
    parser.set_defaults(handler=cmd_events)
