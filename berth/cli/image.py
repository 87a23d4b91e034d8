"""``berth image pull|ls|rm|load``: images on nodes (``berth.image_client``, through Temporal).

``pull REF [--node N | --all-nodes]`` pulls onto this CLI's node (``BERTH_NODE``) by default,
showing each node's progress on a terminal; ``ls [--node N]`` lists every live node's images
(or one node's); ``rm REF [--node N | --all-nodes] [-f]`` removes an image a node's containers
do not use (``-f``: even then); ``load -i PATH [--node N]`` loads a ``docker save`` or OCI
layout tar that is on the node (in its imports directory or an ``allowed_import_paths`` one).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from berth.cli.context import BerthFailure, Context
from berth.cli.status import ago
from berth.cli.units import format_bytes

if TYPE_CHECKING:
    from berth.image_client import ImageClient, NodeProgress

LS_HEADER = ("NODE", "REPOSITORY", "TAG", "DIGEST", "CREATED", "SIZE")


async def _images(context: Context) -> ImageClient:
    from berth.image_client import ImageClient

    berth = await context.berth()
    return ImageClient(berth.temporal, context.settings.task_queue)


async def _live_nodes(context: Context) -> list[str]:
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
    assert isinstance(reads, NodeReads)
    try:
        usage = await reads.node_usage()
    finally:
        await reads.close()
    return [node.name for node in usage if node.live]


async def _nodes(context: Context, args: argparse.Namespace) -> list[str]:
    if getattr(args, "all_nodes", False):
        nodes = await _live_nodes(context)
        if not nodes:
            raise BerthFailure("no node's agent is running")
        return nodes
    return [args.node or context.settings.node]


def _show_progress(progress: list[NodeProgress]) -> None:
    if not sys.stderr.isatty():
        return
    parts = [
        f"{item.node}: {item.phase} {format_bytes(item.done)}/{format_bytes(item.total)}"
        if item.phase == "download"
        else f"{item.node}: {item.phase} {item.done}/{item.total}"
        for item in progress
    ]
    print("\r" + "   ".join(parts).ljust(78), end="", file=sys.stderr, flush=True)


async def cmd_pull(context: Context, args: argparse.Namespace) -> int:
    images = await _images(context)
    nodes = await _nodes(context, args)
    result = await images.pull(args.reference, nodes, progress=_show_progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    for entry in sorted(result.nodes, key=lambda e: e.node):
        state = "Downloaded newer image" if entry.pulled else "Image is up to date"
        print(f"{entry.node}: {state} for {entry.reference}")
        print(f"{entry.node}: Digest: {entry.digest}")
    return 0


def _split(name: str) -> tuple[str, str]:
    repository, _, digest = name.partition("@")
    last = repository.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = repository.rsplit(":", 1)
        return repository, tag
    return repository, "<none>" if not digest else digest[:19]


async def cmd_ls(context: Context, args: argparse.Namespace) -> int:
    images = await _images(context)
    nodes = [args.node] if args.node else await _live_nodes(context)
    now = datetime.now(UTC)
    rows = [LS_HEADER]
    for node in nodes:
        listed = await images.list(node)
        for image in listed.images:
            repository, tag = _split(image.name)
            rows.append(
                (
                    node,
                    repository,
                    tag,
                    image.digest.removeprefix("sha256:")[:12],
                    ago(image.created_at, now),
                    format_bytes(image.size),
                )
            )
    if args.quiet:
        for row in rows[1:]:
            print(f"{row[1]}:{row[2]}")
        return 0
    widths = [max(len(row[i]) for row in rows) for i in range(len(LS_HEADER))]
    for row in rows:
        print("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


async def cmd_rm(context: Context, args: argparse.Namespace) -> int:
    images = await _images(context)
    code = 0
    for node in await _nodes(context, args):
        for reference in args.references:
            result = await images.remove(node, reference, force=args.force)
            if result.removed:
                print(f"{node}: Untagged: {reference}")
            else:
                print(f"{node}: No such image: {reference}", file=sys.stderr)
                code = 1
    return code


async def cmd_load(context: Context, args: argparse.Namespace) -> int:
    import os

    images = await _images(context)
    node = args.node or context.settings.node
    loaded = await images.load(node, os.path.abspath(args.input))
    for image in loaded.images:
        print(f"{node}: Loaded image: {image.reference}")
    return 0


def _node_flags(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--node", help="the node (default: BERTH_NODE)")
    where.add_argument("--all-nodes", action="store_true", help="every node whose agent runs")


def configure(verb: str, parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="image_command", metavar="COMMAND", required=True)
    pull = commands.add_parser("pull", help="pull an image from a registry onto nodes")
    pull.add_argument("reference", metavar="REF")
    _node_flags(pull)
    pull.set_defaults(handler=cmd_pull)
    listing = commands.add_parser("ls", help="list the images of nodes")
    listing.add_argument("--node", help="only this node (default: every live node)")
    listing.add_argument("-q", "--quiet", action="store_true", help="only REPOSITORY:TAG")
    listing.set_defaults(handler=cmd_ls)
    remove = commands.add_parser("rm", help="remove images from nodes")
    remove.add_argument("references", metavar="REF", nargs="+")
    remove.add_argument("-f", "--force", action="store_true", help="even while containers use it")
    _node_flags(remove)
    remove.set_defaults(handler=cmd_rm)
    load = commands.add_parser(
        "load", help="load a docker save or OCI layout tar that is on the node"
    )
    load.add_argument(
        "-i", "--input", required=True, help="the archive's path on the node (its imports dir)"
    )
    load.add_argument("--node", help="the node (default: BERTH_NODE)")
    load.set_defaults(handler=cmd_load)
