"""The ``berth`` entry: parse the arguments, import the chosen verb's module, run it, exit.

Start-up time is the CLI's budget, so this module and every verb module import at top level only
the standard library and the light ``berth.cli`` modules (``verbs``, ``context``, pure helpers);
pydantic, temporalio, SQLAlchemy, psycopg and the rest of ``berth`` are imported inside the
handler that needs them (tests/berth/test_import_boundary.py holds the line).

Exit codes as docker's: 125 when the command or Berth itself fails (bad usage, bad settings,
Temporal or PostgreSQL unreachable: one line saying which and where), 1 for an error the daemon
reports (``Error response from daemon: ...``), otherwise what the handler returns (``run`` and
``wait`` pass the container's code through).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, NoReturn, TypeVar

from berth.cli.context import Context, NeedsEventLoop, berth_failure, daemon_error
from berth.cli.verbs import VERBS

# docker's: the command itself failed (bad flags, the daemon unreachable).
EXIT_BERTH_FAILED = 125
# docker's: the daemon answered with an error.
EXIT_DAEMON_ERROR = 1
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """argparse with docker's exit code for a usage error."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_BERTH_FAILED, f"{self.prog}: error: {message}\n")


def build_parser(argv: Sequence[str]) -> Parser:
    """The parser, with arguments only for the verb ``argv`` names (its module imported).

    A known verb gets its own sub-parser only (building one per verb costs about 8 ms of a
    call's CPU); without one (``berth``, ``berth --help``, a misspelt verb) every verb is listed.
    """
    parser = Parser(prog="berth", description="Durable container lifecycle")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    for name, verb in VERBS.items():
        if chosen in VERBS and name != chosen:
            continue
        sub = commands.add_parser(name, help=verb.help, description=verb.help)
        if name == chosen:
            importlib.import_module(verb.module).configure(name, sub)
    return parser


T = TypeVar("T")


async def dispatch(args: argparse.Namespace, context: Context | None = None) -> int:
    """Run the verb's handler; its failures as docker's messages and exit codes."""
    context = context or Context()
    try:
        return int(await args.handler(context, args))
    except Exception as err:
        failure = berth_failure(err)
        if failure is not None:
            print(f"berth: {failure}", file=sys.stderr)
            return EXIT_BERTH_FAILED
        error = daemon_error(context, err)
        if error is None:
            raise
        print(f"Error response from daemon: {error}", file=sys.stderr)
        return EXIT_DAEMON_ERROR
    finally:
        await context.close()


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: the process's) and run the verb; the process's exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(arguments).parse_args(arguments)
    try:
        if getattr(args, "loopless", False):
            # Verbs that only block on Temporal's HTTP API and berth.db.wire: importing asyncio
            # would be about a quarter of their own CPU time.
            try:
                return without_loop(dispatch(args, Context(loopless=True)))
            except NeedsEventLoop:
                pass  # raised before the verb did anything
        import asyncio  # not before: --help and usage errors need no event loop

        return asyncio.run(dispatch(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def without_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine none of whose awaits suspends (each completes at once), without an
    event loop; ``RuntimeError`` if one does suspend."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("a loopless verb waited on an event loop")


# The Temporal SDK's native core: loaded only by the verbs that still go through BerthClient.
SDK_CORE = "temporalio.bridge.temporal_sdk_bridge"


def main() -> None:
    """The console script ``berth``."""
    code = run()
    if SDK_CORE in sys.modules:
        release_sdk_client()
    sys.exit(code)


def release_sdk_client() -> None:
    """Free the SDK client's objects while the interpreter is whole.

    They sit in reference cycles (the client, its bridge handles, the closed event loop's
    callbacks) that otherwise only the finalizing interpreter's collection frees; dropping a
    bridge handle then has the SDK core's threads take the GIL of a finalizing interpreter,
    which aborts the process after the command succeeded ("PyGILState_Release: thread state
    must be current", temporalio/sdk-python#300; about 1 ``berth image ls`` in 10 did). After
    this collection the core's threads hold no Python object and exit quietly.
    """
    import gc

    gc.collect()
