"""``berth volume create|ls|inspect|rm``: named volumes on nodes (``berth.volume_client``).

``create [--label K=V] [--node N] [NAME]`` makes a volume on this CLI's node (``BERTH_NODE``)
by default (a random name when none is given, as docker does); ``ls [-q] [--format json]
[--node N]`` and ``inspect NAME...`` read PostgreSQL (every node, or one); ``rm [-f] NAME...``
removes volumes no container references (``-f``: a missing one is no error).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from berth.cli.context import Context, daemon_error

if TYPE_CHECKING:
    from berth.steps import VolumeInfo
    from berth.volume_client import VolumeClient

LS_HEADER = ("NODE", "DRIVER", "VOLUME NAME")


async def _volumes(context: Context, *, writes: bool) -> VolumeClient:
    from berth.volume_client import VolumeClient

    temporal = (await context.berth()).temporal if writes else None
    return VolumeClient.connect(temporal, context.settings)


def _refused(context: Context, err: BaseException) -> None:
    message = daemon_error(context, err)
    if message is None:
        raise err
    print(f"Error response from daemon: {message}", file=sys.stderr)


def _docker_view(volume: VolumeInfo) -> dict[str, object]:
    """``docker volume inspect``'s fields, with the node and the containers using it."""
    return {
        "CreatedAt": volume.created_at.isoformat(),
        "Driver": "local",
        "Labels": volume.labels,
        "Mountpoint": volume.mountpoint,
        "Name": volume.name,
        "Options": None,
        "Scope": "local",
        "Node": volume.node,
        "UsedBy": volume.used_by,
    }


def _labels(values: list[str]) -> dict[str, str]:
    labels = {}
    for value in values:
        key, _, val = value.partition("=")
        labels[key] = val
    return labels


async def cmd_create(context: Context, args: argparse.Namespace) -> int:
    import secrets

    volumes = await _volumes(context, writes=True)
    node = args.node or context.settings.node
    try:
        created = await volumes.create(
            node, args.name or secrets.token_hex(32), _labels(args.label)
        )
    finally:
        await volumes.close()
    print(created.name)
    return 0


async def cmd_ls(context: Context, args: argparse.Namespace) -> int:
    client = await _volumes(context, writes=False)
    try:
        volumes = await client.list(args.node)
    finally:
        await client.close()
    if args.quiet:
        for volume in volumes:
            print(volume.name)
        return 0
    if args.format == "json":
        for volume in volumes:
            view = _docker_view(volume)
            print(json.dumps({key: view[key] for key in ("Driver", "Labels", "Name", "Node")}))
        return 0
    rows = [LS_HEADER, *((v.node, "local", v.name) for v in volumes)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(LS_HEADER))]
    for row in rows:
        print("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


async def cmd_inspect(context: Context, args: argparse.Namespace) -> int:
    from berth.errors import NotFound

    volumes = await _volumes(context, writes=False)
    shown: list[dict[str, object]] = []
    code = 0
    try:
        for name in args.names:
            try:
                found = await volumes.inspect(name, args.node)
            except NotFound as err:
                _refused(context, err)
                code = 1
                continue
            shown += [_docker_view(volume) for volume in found]
    finally:
        await volumes.close()
    print(json.dumps(shown, indent=4))
    return code


async def cmd_rm(context: Context, args: argparse.Namespace) -> int:
    from berth.errors import BerthError

    volumes = await _volumes(context, writes=True)
    node = args.node or context.settings.node
    code = 0
    try:
        for name in args.names:
            try:
                await volumes.remove(node, name, force=args.force)
            except BerthError as err:
                _refused(context, err)
                code = 1
                continue
            print(name)
    finally:
        await volumes.close()
    return code


def _label(value: str) -> str:
    if not value.partition("=")[0]:
        raise argparse.ArgumentTypeError(f"invalid label {value!r}: expected KEY[=VALUE]")
    return value


def configure(verb: str, parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="volume_command", metavar="COMMAND", required=True)
    create = commands.add_parser("create", help="create a volume on a node")
    create.add_argument("name", metavar="NAME", nargs="?", help="default: a random name")
    create.add_argument(
        "--label", action="append", default=[], type=_label, help="KEY=VALUE metadata"
    )
    create.add_argument("--node", help="the node (default: BERTH_NODE)")
    create.set_defaults(handler=cmd_create)
    listing = commands.add_parser("ls", help="list volumes")
    listing.add_argument("-q", "--quiet", action="store_true", help="only volume names")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.add_argument("--node", help="only this node (default: every node)")
    listing.set_defaults(handler=cmd_ls)
    inspect = commands.add_parser("inspect", help="show volumes as JSON")
    inspect.add_argument("names", metavar="NAME", nargs="+")
    inspect.add_argument("--node", help="only this node (default: every node)")
    inspect.set_defaults(handler=cmd_inspect)
    remove = commands.add_parser("rm", help="remove volumes no container references")
    remove.add_argument("names", metavar="NAME", nargs="+")
    remove.add_argument("-f", "--force", action="store_true", help="no error for a missing one")
    remove.add_argument("--node", help="the node (default: BERTH_NODE)")
    remove.set_defaults(handler=cmd_rm)
