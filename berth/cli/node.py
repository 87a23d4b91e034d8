"""``berth node ls``: the nodes, their agents' liveness, containers and addresses used and free.

Read-only: it reads PostgreSQL (``berth.db.node_reads``, no SQLAlchemy) and never connects to
Temporal.
"""

from __future__ import annotations

import argparse
import json

from berth.cli.context import BerthFailure, Context

HEADER = ("NODE", "STATUS", "BRIDGE", "SUBNET", "CONTAINERS", "RUNNING", "IPS USED", "IPS FREE")


async def cmd_node_ls(context: Context, args: argparse.Namespace) -> int:
    from berth.cli.env import read_settings
    from berth.db.node_reads import NodeReads
    from berth.db.reads import DatabaseUnreachable

    settings = read_settings()
    try:
        reads = await NodeReads.connect(
            settings.database_url,
            settings.runtime_call_timeout_seconds,
            settings.client_wait_seconds,
        )
    except DatabaseUnreachable as err:
        raise BerthFailure(str(err)) from None
    assert isinstance(reads, NodeReads)  # connect builds its own class
    try:
        usage = await reads.node_usage()
    except DatabaseUnreachable as err:
        raise BerthFailure(str(err)) from None
    finally:
        await reads.close()
    if args.format == "json":
        for node in usage:
            print(
                json.dumps(
                    {
                        "Name": node.name,
                        "Status": "ready" if node.live else "down",
                        "Bridge": node.bridge,
                        "Subnet": node.subnet,
                        "Containers": node.containers,
                        "ContainersRunning": node.running,
                        "IPsUsed": node.ips_used,
                        "IPsFree": node.ips_free,
                        "IPsTotal": node.ips_total,
                    }
                )
            )
        return 0
    rows = [HEADER] + [
        (
            node.name,
            "ready" if node.live else "down",
            node.bridge,
            node.subnet,
            str(node.containers),
            str(node.running),
            str(node.ips_used),
            str(node.ips_free),
        )
        for node in usage
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    for row in rows:
        print("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def configure(verb: str, parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="node_command", metavar="COMMAND", required=True)
    listing = commands.add_parser("ls", help="list nodes with their containers and IPs used/free")
    listing.add_argument(
        "--format", choices=("table", "json"), default="table", help="a table or JSON lines"
    )
    listing.set_defaults(handler=cmd_node_ls)
