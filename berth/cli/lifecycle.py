"""Verbs that change containers through their node's saga: start, stop, restart, pause, unpause,
rm, wait."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from berth.cli.context import Context, DaemonError, berth_failure, daemon_error

if TYPE_CHECKING:
    from berth.db.reads import ContainerReads


async def for_each(
    context: Context, refs: list[str], verb: str, action: Callable[[str], Awaitable[object]]
) -> int:
    """Run ``action`` on every container, as docker does: print each, report the failures."""
    failed = []
    for ref in refs:
        try:
            await action(ref)
            print(ref)
        except Exception as err:
            message = None if berth_failure(err) else daemon_error(context, err)
            if message is None:
                raise
            print(f"Error response from daemon: {message}", file=sys.stderr)
            failed.append(ref)
    if failed:
        print(f"Error: failed to {verb} containers: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


async def cmd_start(context: Context, args: argparse.Namespace) -> int:
    berth = await context.operations()
    return await for_each(context, args.containers, "start", berth.start)


async def cmd_stop(context: Context, args: argparse.Namespace) -> int:
    berth = await context.operations()
    return await for_each(context, args.containers, "stop", lambda ref: berth.stop(ref, args.time))


async def cmd_restart(context: Context, args: argparse.Namespace) -> int:
    berth = await context.operations()
    return await for_each(
        context, args.containers, "restart", lambda ref: berth.restart(ref, args.time)
    )


async def cmd_pause(context: Context, args: argparse.Namespace) -> int:
    berth = await context.operations()
    return await for_each(context, args.containers, "pause", berth.pause)


async def cmd_unpause(context: Context, args: argparse.Namespace) -> int:
    berth = await context.operations()
    return await for_each(context, args.containers, "unpause", berth.unpause)


async def cmd_rm(context: Context, args: argparse.Namespace) -> int:
    berth = await context.operations()
    return await for_each(
        context, args.containers, "remove", lambda ref: berth.remove(ref, args.force)
    )


# The states in which a container's task no longer runs: ``wait`` returns its exit code.
ENDED_STATES = frozenset({"created", "exited", "dead"})
WAIT_POLL_SECONDS = 0.1


async def wait_exit(reader: ContainerReads, container_id: str) -> int:
    """Block until the container is not running (docker wait); its exit code. A container
    removed meanwhile (``--rm``) gives the code of its last ``die`` event (0 if none)."""
    import asyncio

    while True:
        container = await reader.find(container_id)
        if container is None:
            dies = [e for e in await reader.events(container_id) if e.action == "die"]
            return int(dies[-1].attributes.get("exitCode", 0)) if dies else 0
        if container.state in ENDED_STATES:
            return container.exit_code or 0
        await asyncio.sleep(WAIT_POLL_SECONDS)


async def cmd_wait(context: Context, args: argparse.Namespace) -> int:
    reader = await context.reader()
    failed = False
    for ref in args.containers:
        try:
            container = await reader.find(ref)
            if container is None:
                raise DaemonError(f"No such container: {ref}")
            print(await wait_exit(reader, container.id))
        except Exception as err:
            message = None if berth_failure(err) else daemon_error(context, err)
            if message is None:
                raise
            print(f"Error response from daemon: {message}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


HANDLERS = {
    "start": cmd_start,
    "stop": cmd_stop,
    "restart": cmd_restart,
    "pause": cmd_pause,
    "unpause": cmd_unpause,
    "rm": cmd_rm,
    "wait": cmd_wait,
}


def configure(verb: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("containers", nargs="+")
    if verb in ("stop", "restart"):
        parser.add_argument("-t", "--time", type=int, help="seconds to wait before SIGKILL (10)")
    if verb == "rm":
        parser.add_argument(
            "-f", "--force", action="store_true", help="kill a running container first"
        )
    # All but wait need only Context.operations(), which blocks: no event loop (berth.cli.main).
    parser.set_defaults(handler=HANDLERS[verb], loopless=verb != "wait")
