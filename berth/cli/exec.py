"""``berth exec`` and ``berth attach``: a process's stdio through its node's endpoint.

``exec [-i] [-t] [-e K=V] [-w DIR] [-u USER] C CMD...`` runs CMD in the running container C and
exits with its code; ``attach C`` joins the stdio of a container created with ``-t`` (``-i`` for
input) and exits with the container's code, or 0 when the detach keys (docker's ``ctrl-p
ctrl-q``) end it and leave the container running. ``run -it`` attaches the same way
(:func:`attach_container`).

Both are one bidirectional call (``berth.node_api.exec``): the first message starts it, then
stdin and window sizes go up while output comes down; the last message is the exit code. With
``-t`` this terminal is put in raw mode for the call (and restored), and its size follows
``SIGWINCH``. Stdin is read by a daemon thread (a pipe, a file or a terminal alike), so a read
still blocked when the command ends never holds the CLI's exit.

Light at import: grpc and the endpoint client are imported by the handler. The container and
its node's endpoint are read on ``berth.db.wire`` (``Context.reads``) and the messages encoded on
the standard library (``berth.endpoint.exec_wire``): no asyncpg, protobuf or settings model.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

from berth.cli.context import BerthFailure, Context, DaemonError

if TYPE_CHECKING:
    from berth.endpoint.exec_wire import Output

# docker's default detach keys: ctrl-p ctrl-q.
DETACH_KEYS = b"\x10\x11"
STDIN_CHUNK = 32 * 1024


class DetachKeys:
    """Finds docker's detach sequence in what the user types, across reads.

    ``feed`` returns the bytes to send on and whether the sequence was typed; a prefix of the
    sequence at the end of a read is held back until the next read tells.
    """

    def __init__(self, keys: bytes = DETACH_KEYS) -> None:
        self._keys = keys
        self._held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        data = self._held + data
        self._held = b""
        at = data.find(self._keys)
        if at >= 0:
            return data[:at], True
        for size in range(min(len(self._keys) - 1, len(data)), 0, -1):
            if data.endswith(self._keys[:size]):
                self._held = data[-size:]
                return data[:-size], False
        return data, False


def _window_size(fd: int) -> tuple[int, int] | None:
    """(rows, cols) of the terminal at ``fd``, or None."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return size.lines, size.columns


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """``fd``'s terminal in raw mode for the block, restored after (also on an error)."""
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        # TCSANOW, not setraw's TCSAFLUSH: keys typed before the call began are sent, not lost.
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _read_stdin(
    loop: asyncio.AbstractEventLoop, deliver: Callable[[bytes], None], fd: int
) -> threading.Thread:
    """A daemon thread that hands each read of ``fd`` to ``deliver`` (b"" at its end)."""

    def pump() -> None:
        while True:
            try:
                data = os.read(fd, STDIN_CHUNK)
            except OSError:
                data = b""
            try:
                loop.call_soon_threadsafe(deliver, data)
            except RuntimeError:  # the loop is closed: the call is over
                return
            if not data:
                return

    thread = threading.Thread(target=pump, name="berth-stdin", daemon=True)
    thread.start()
    return thread


class Session:
    """One call's client side: what goes up (start, stdin, sizes) and what comes down."""

    def __init__(self, first: bytes, stdin: bool, tty: bool, detach: bool) -> None:
        self._stdin = stdin
        self._tty = tty
        self._detach = DetachKeys() if detach else None
        # Encoded ExecInput messages (berth.endpoint.exec_wire); None ends the stream.
        self._inputs: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._inputs.put_nowait(first)
        self.detached = asyncio.Event()

    async def requests(self) -> AsyncIterator[bytes]:
        """The request stream: the start message, then what stdin and the terminal send."""
        while (message := await self._inputs.get()) is not None:
            yield message

    def _deliver(self, data: bytes) -> None:
        from berth.endpoint.exec_wire import encode_close_stdin, encode_stdin

        if not data:
            self._inputs.put_nowait(encode_close_stdin())
            return
        if self._detach is not None:
            data, detached = self._detach.feed(data)
            if data:
                self._inputs.put_nowait(encode_stdin(data))
            if detached:
                self.detached.set()
            return
        self._inputs.put_nowait(encode_stdin(data))

    def _resize(self) -> None:
        from berth.endpoint.exec_wire import encode_resize

        size = _window_size(sys.stdin.fileno())
        if size is not None:
            self._inputs.put_nowait(encode_resize(*size))

    async def run(self, call: Any) -> int | None:
        """Feed the call, write what it sends; the exit code, or None when detached."""
        loop = asyncio.get_running_loop()
        # Raw only when the keys go to the process (docker's -it): ctrl-c is then its business.
        terminal = self._tty and self._stdin and sys.stdin.isatty()
        with contextlib.ExitStack() as stack:
            if terminal:
                stack.enter_context(raw_terminal(sys.stdin.fileno()))
                loop.add_signal_handler(signal.SIGWINCH, self._resize)
                stack.callback(loop.remove_signal_handler, signal.SIGWINCH)
            if self._stdin:
                _read_stdin(loop, self._deliver, sys.stdin.fileno())
            output = asyncio.ensure_future(self._write(call))
            detached = asyncio.ensure_future(self.detached.wait())
            try:
                await asyncio.wait({output, detached}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._inputs.put_nowait(None)
                detached.cancel()
                if not output.done():
                    call.cancel()  # detached (or interrupted): the container runs on
                    output.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await output
            return None if output.cancelled() else output.result()

    async def _write(self, call: Any) -> int:
        out, err = sys.stdout.buffer, sys.stderr.buffer
        message: Output
        async for message in call:
            kind = message.kind
            if kind == "stdout":
                out.write(message.data)
                out.flush()
            elif kind == "stderr":
                err.write(message.data)
                err.flush()
            elif kind == "exit_code":
                return message.exit_code
        raise BerthFailure("the node endpoint ended the call without an exit code")


async def _call(
    context: Context,
    ref: str,
    method: str,
    start: Callable[[str], bytes],
    stdin: bool,
    tty: bool,
    detach: bool,
) -> int:
    """Open the call ``method`` (``exec_wire``'s ``EXEC_METHOD`` or ``ATTACH_METHOD``) to
    ``ref``'s node, its first message ``start(container id)``, and run it."""
    from berth.endpoint.exec_wire import open_call

    target = await context.node_target(ref)
    try:
        session = Session(start(target.container.id), stdin, tty, detach)
        code = await session.run(open_call(target.channel, method, session.requests()))
        return 0 if code is None else code
    finally:
        await target.close()


def _terminal_size() -> tuple[int, int] | None:
    """This terminal's (rows, cols) when stdin is one, else None."""
    return _window_size(sys.stdin.fileno()) if sys.stdin.isatty() else None


def _check_terminal(interactive: bool, tty: bool) -> None:
    if interactive and tty and not sys.stdin.isatty():
        raise DaemonError("the input device is not a TTY")


async def cmd_exec(context: Context, args: argparse.Namespace) -> int:
    from berth.endpoint.exec_wire import EXEC_METHOD, encode_exec_start

    if not args.command:
        raise DaemonError("exec: no command given")
    _check_terminal(args.interactive, args.tty)
    env = os.environ
    # docker's: -e KEY alone takes KEY from this shell (and is left out when unset there).
    entries = [e if "=" in e else f"{e}={env[e]}" for e in args.env if "=" in e or e in env]
    size = _terminal_size() if args.tty else None

    def start(container_id: str) -> bytes:
        return encode_exec_start(
            container_id,
            args.command,
            entries,
            args.workdir,
            args.user,
            args.tty,
            args.interactive,
            size,
        )

    return await _call(
        context, args.container, EXEC_METHOD, start, args.interactive, args.tty, False
    )


async def attach_container(context: Context, ref: str, stdin: bool, logs: bool = False) -> int:
    """Attach this terminal to ``ref``'s stdio until it exits (its code) or is detached (0)."""
    from berth.endpoint.exec_wire import ATTACH_METHOD, encode_attach_start

    size = _terminal_size()

    def start(container_id: str) -> bytes:
        return encode_attach_start(container_id, stdin, size, logs)

    return await _call(context, ref, ATTACH_METHOD, start, stdin, True, True)


async def cmd_attach(context: Context, args: argparse.Namespace) -> int:
    return await attach_container(context, args.container, not args.no_stdin)


def configure(verb: str, parser: argparse.ArgumentParser) -> None:
    if verb == "attach":
        parser.add_argument("--no-stdin", action="store_true", help="do not attach stdin")
        parser.add_argument("container")
        parser.set_defaults(handler=cmd_attach)
        return
    parser.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    parser.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    parser.add_argument(
        "-e", "--env", action="append", default=[], help="KEY=VALUE, or KEY from this shell"
    )
    parser.add_argument("-w", "--workdir", default="", help="working directory inside")
    parser.add_argument("-u", "--user", default="", help="user[:group] inside")
    parser.add_argument("container")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    parser.set_defaults(handler=cmd_exec)
