"""``berth logs``: a container's output from its node's endpoint, on any host.

The container is looked up in PostgreSQL (``berth.db.wire``'s reads), its node's endpoint found
there too (``berth.endpoint.client``), and its ``Logs.Read`` stream printed as ``docker logs``
prints it: stdout lines to stdout, stderr lines to stderr, each after its RFC 3339 time (``-t``).
No Temporal, no settings model, no protobuf; grpc is imported by the handler.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from berth.cli.context import Context, DaemonError

if TYPE_CHECKING:
    from berth.endpoint.client import Placement


def parse_tail(value: str) -> int | None:
    """docker logs' ``--tail``: a number of lines, or ``all``."""
    if value == "all":
        return None
    try:
        lines = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of lines or 'all': {value!r}") from None
    if lines < 0:
        return None  # docker: a negative tail is all of it
    return lines


def parse_time(value: str) -> int:
    """docker logs' ``--since``/``--until``: RFC 3339, a Unix time or a duration (``10m``)."""
    from berth.container_logs import parse_time_argument

    try:
        return parse_time_argument(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


async def print_logs(
    context: Context,
    container: Placement,
    tail: int | None = None,
    follow: bool = False,
    since_ns: int | None = None,
    until_ns: int | None = None,
    timestamps: bool = False,
) -> None:
    """Print ``container``'s log from its node's endpoint: stdout lines to stdout, stderr lines
    to stderr (``timestamps``: each after its time); ``follow``: until it stops or is removed.

    Raises:
        berth.endpoint.client.EndpointUnreachable: its node's endpoint cannot be reached.
        berth.endpoint.client.EndpointError: the endpoint refused the call.
    """
    from berth.cli.env import endpoint_settings
    from berth.container_logs import STDERR, format_rfc3339
    from berth.endpoint.client import node_target
    from berth.endpoint.logs_wire import encode_request, read_logs

    target = await node_target(endpoint_settings(), await context.reads(), container)
    outputs = {"stdout": sys.stdout.buffer, STDERR: sys.stderr.buffer}
    request = encode_request(container.id, follow, tail, since_ns, until_ns)
    try:
        with target.calls():
            async for batch in read_logs(target.channel, request):
                current = None
                for entry in batch:
                    out = outputs.get(entry.stream, sys.stdout.buffer)
                    if out is not current and current is not None:
                        current.flush()  # keep the order of lines between the two streams
                    current = out
                    if timestamps:
                        out.write(format_rfc3339(entry.time_ns).encode() + b" ")
                    out.write(entry.line)
                if current is not None:
                    current.flush()
    finally:
        await target.close()


async def cmd_logs(context: Context, args: argparse.Namespace) -> int:
    # berth.db.wire's reads: no asyncpg to import (grpc brings asyncio, not asyncpg).
    container = await (await context.reads()).find(args.container)
    if container is None:
        raise DaemonError(f"No such container: {args.container}")
    await print_logs(
        context, container, args.tail, args.follow, args.since, args.until, args.timestamps
    )
    return 0


def configure(verb: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container")
    parser.add_argument(
        "-n", "--tail", type=parse_tail, default=None, help="lines from the end ('all')"
    )
    parser.add_argument("-f", "--follow", action="store_true", help="follow until it stops")
    parser.add_argument(
        "--since", type=parse_time, help="from this time (RFC 3339, Unix time, or 10m ago)"
    )
    parser.add_argument(
        "--until", type=parse_time, help="up to this time (RFC 3339, Unix time, or 10m ago)"
    )
    parser.add_argument("-t", "--timestamps", action="store_true", help="show each line's time")
    parser.set_defaults(handler=cmd_logs)
