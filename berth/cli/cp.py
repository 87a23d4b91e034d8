"""``berth cp`` and ``berth export``: tar streams through the container's node endpoint.

``cp [-aL] C:SRC DEST`` and ``cp [-aL] SRC C:DEST`` copy as ``docker cp`` does: ``-`` as DEST
writes the tar of SRC to stdout, ``-`` as SRC extracts a tar from stdin into the directory DEST;
otherwise a directory lands in DEST when DEST is an existing directory, or becomes DEST when
DEST does not exist, and ``SRC/.`` copies a directory's contents rather than itself. What a copy
writes into a container is owned by its root, what it writes here by the user running it; ``-a``
keeps the tar's owners, ``-L`` copies what a symlink SRC names (in a container, resolved inside
its rootfs); device nodes are not made on this host. ``export C [-o FILE]`` writes
the container's filesystem as a tar on this host (to stdout without ``-o`` unless stdout is a
terminal, as docker).

The node endpoint (``berth.node_api.files``) walks and extracts inside the rootfs; here a
local source is walked, and a tar extracted, by the same code (:mod:`berth.runtime.rootfs_tar`):
no member leaves the destination, no link on the way is followed.

Light at import: grpc, the endpoint client and rootfs_tar are imported by handlers. The container
and its node's endpoint are read on ``berth.db.wire`` (``Context.reads``) and the messages encoded
on the standard library (``berth.endpoint.files_wire``): no asyncpg, protobuf or settings model.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, BinaryIO

from berth.cli.context import Context, DaemonError

if TYPE_CHECKING:
    import asyncio
    import tarfile
    import threading

STDIN_CHUNK = 256 * 1024


def parse_location(argument: str) -> tuple[str | None, str]:
    """``(container, path)`` of a cp argument, docker's way: ``C:PATH`` names a container, a
    path starting with ``/`` or ``.`` (or without ``:``) is local, ``-`` is a stream."""
    if argument == "-" or argument.startswith(("/", ".")) or ":" not in argument:
        return None, argument
    container, _, path = argument.partition(":")
    return container, path


@contextlib.contextmanager
def local_errors() -> Iterator[None]:
    """A failure of this host's files (a missing directory, a full disk) as a one-line error."""
    try:
        yield
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        raise DaemonError(f"{where}{err.strerror or err}") from None


async def cmd_cp(context: Context, args: argparse.Namespace) -> int:
    with local_errors():
        await copy(context, args.source, args.destination, args.archive, args.follow_link)
    return 0


async def copy(
    context: Context, source_argument: str, dest_argument: str, archive: bool, follow: bool
) -> None:
    """docker cp between this host and a container, one side named ``C:PATH``."""
    source_container, source = parse_location(source_argument)
    dest_container, dest = parse_location(dest_argument)
    if source_container is not None and dest_container is not None:
        raise DaemonError("copying between containers is not supported")
    if source_container is None and dest_container is None:
        raise DaemonError("must specify at least one container source")
    if source_container is not None:
        if not source:
            raise DaemonError("copy: the path in the container is empty")
        await copy_from(context, source_container, source, dest, archive, follow)
    else:
        assert dest_container is not None
        if not dest:
            raise DaemonError("copy: the path in the container is empty")
        await copy_to(context, source, dest_container, dest, archive, follow)


async def copy_from(
    context: Context, ref: str, path: str, dest: str, archive: bool, follow: bool = False
) -> None:
    """The tar of ``path`` in container ``ref`` to stdout (``-``) or extracted at ``dest``."""
    from berth.endpoint import files_wire

    target = await context.node_target(ref)
    try:
        with target.calls():
            request = files_wire.encode_copy_from(target.container.id, path, follow)
            chunks = files_wire.copy_from(target.channel, request)
            if dest == "-":
                await _write_all(chunks, sys.stdout.buffer)
            else:
                await _extract_here(chunks, dest, path, archive)
    finally:
        await target.close()


async def copy_to(
    context: Context, source: str, ref: str, path: str, archive: bool, follow: bool = False
) -> None:
    """``source`` (``-``: a tar on stdin) copied to ``path`` in container ``ref``."""
    import asyncio
    import threading

    from berth.endpoint import files_wire

    if source != "-" and not os.path.lexists(source):
        raise DaemonError(f"could not find the file {source} on this host")
    target = await context.node_target(ref)
    stop = threading.Event()
    work: asyncio.Future[None] | None = None
    if source == "-":
        mode, data = files_wire.COPY_MODE_ARCHIVE, _stdin_chunks()
    else:
        contents = copies_contents(source)
        mode = files_wire.COPY_MODE_CONTENTS if contents else files_wire.COPY_MODE_SOURCE
        data, work = _local_tar(source, stop, follow)
    first = files_wire.encode_copy_target(target.container.id, path, mode, archive)

    async def inputs() -> AsyncIterator[bytes]:
        yield first
        async for chunk in data:
            yield files_wire.encode_copy_data(chunk)
        if work is not None:
            await work  # a failed local walk cuts the call rather than sending half a tar

    try:
        with target.calls():
            await files_wire.copy_to(target.channel, inputs())
    except BaseException:
        if work is not None and work.done() and not work.cancelled() and work.exception():
            raise work.exception() from None  # type: ignore[misc]
        raise
    finally:
        stop.set()
        if work is not None:
            await asyncio.wait({work})
        await target.close()


def copies_contents(source: str) -> bool:
    """docker cp's ``SRC/.``: a directory's contents rather than the directory itself."""
    return os.path.basename(source.rstrip("/")) == "." or source.rstrip("/") == ""


async def cmd_export(context: Context, args: argparse.Namespace) -> int:
    from berth.endpoint import files_wire

    if args.output is None and sys.stdout.isatty():
        raise DaemonError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    target = await context.node_target(args.container)
    try:
        with local_errors(), target.calls():
            request = files_wire.encode_export(target.container.id)
            chunks = files_wire.export(target.channel, request)
            if args.output is None:
                await _write_all(chunks, sys.stdout.buffer)
            else:
                await _write_file(chunks, args.output)
    finally:
        await target.close()
    return 0


async def _write_all(chunks: AsyncIterator[bytes], out: BinaryIO) -> None:
    async for chunk in chunks:
        out.write(chunk)
    out.flush()


async def _write_file(chunks: AsyncIterator[bytes], output: str) -> None:
    """The stream into ``output``; a failed stream leaves no partial file behind."""
    with open(output, "wb") as out:
        try:
            await _write_all(chunks, out)
        except BaseException:
            os.unlink(output)
            raise


async def _stdin_chunks() -> AsyncIterator[bytes]:
    import asyncio

    stdin = sys.stdin.buffer
    while chunk := await asyncio.to_thread(stdin.read1, STDIN_CHUNK):  # type: ignore[union-attr]
        yield chunk


def _local_tar(
    source: str, stop: threading.Event, follow: bool = False
) -> tuple[AsyncIterator[bytes], asyncio.Future[None]]:
    """The tar of the local ``source`` as chunks, and the thread's work writing it."""
    import asyncio
    from pathlib import Path

    from berth.endpoint.streams import ThreadWriter
    from berth.runtime.rootfs_tar import Progress, write_path

    absolute = os.path.abspath(source)
    top = None
    if copies_contents(source):
        root, path = Path(os.path.realpath(absolute)), "/."
    elif follow and os.path.islink(absolute):
        # -L: what the link names on this host, under the link's own name.
        resolved = os.path.realpath(absolute)
        root, path = Path(os.path.dirname(resolved)), os.path.basename(resolved)
        top = os.path.basename(absolute)
    else:
        root, path = Path(os.path.realpath(os.path.dirname(absolute))), os.path.basename(absolute)
    out = ThreadWriter(asyncio.get_running_loop(), stop)

    def produce() -> None:
        try:
            write_path(root, path, out, stop, Progress(), top=top)  # type: ignore[arg-type]
        finally:
            out.close()

    return out.chunks(), asyncio.ensure_future(asyncio.to_thread(produce))


async def _extract_here(chunks: AsyncIterator[bytes], dest: str, path: str, archive: bool) -> None:
    """Extract the tar of the container's ``path`` at ``dest`` on this host (docker cp's rules)."""
    import asyncio
    import threading

    from berth.endpoint.streams import ThreadReader
    from berth.runtime.rootfs_tar import extract, top_name

    stop = threading.Event()
    source = ThreadReader(asyncio.get_running_loop(), chunks, stop)
    owner = None if archive else (os.getuid(), os.getgid())
    contents = top_name(path) == "."

    def place(first: tarfile.TarInfo | None) -> tuple[int, str | None]:
        return place_here(dest, first, contents)

    try:
        await asyncio.to_thread(
            extract,
            source,  # type: ignore[arg-type]  # read() is all tarfile's stream uses
            place,
            owner,
            False,
            stop,
        )
    finally:
        stop.set()


def place_here(dest: str, first: tarfile.TarInfo | None, contents: bool) -> tuple[int, str | None]:
    """The local directory (an fd) a copy out of a container extracts into, and its top's name."""
    from berth.errors import NotFound
    from berth.runtime.rootfs_tar import Destination, placement

    trailing = dest.endswith("/")
    absolute = os.path.abspath(dest)
    exists = os.path.exists(absolute)
    is_dir = os.path.isdir(absolute)
    where = placement(
        Destination(exists, is_dir, trailing),
        os.path.basename(absolute),
        source_is_dir=first is not None and first.isdir(),
        contents=contents,
    )
    directory = os.path.dirname(absolute) if where.into_parent else absolute
    try:
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), where.top
    except FileNotFoundError:
        raise NotFound(f"no such directory on this host: {directory}") from None


def configure(verb: str, parser: argparse.ArgumentParser) -> None:
    if verb == "export":
        parser.add_argument("container")
        parser.add_argument("-o", "--output", help="the tar file to write (default: stdout)")
        parser.set_defaults(handler=cmd_export)
        return
    parser.usage = (
        "berth cp [-aL] CONTAINER:SRC_PATH DEST_PATH|-\n"
        "       berth cp [-aL] SRC_PATH|- CONTAINER:DEST_PATH"
    )
    parser.add_argument("source")
    parser.add_argument("destination")
    parser.add_argument(
        "-a", "--archive", action="store_true", help="keep the owners (uid:gid) of the source"
    )
    parser.add_argument(
        "-L", "--follow-link", action="store_true", help="copy what a symlink SRC_PATH names"
    )
    parser.set_defaults(handler=cmd_cp)
