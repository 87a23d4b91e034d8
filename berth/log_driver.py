"""containerd's ``binary://`` log driver: a task's stdout and stderr to a file, rotated.

The runc v2 shim starts this program for each task (and each exec) it creates with a
``binary://<this file>?<query>`` stdio URI (containerd 1.6 ``pkg/process/io.go`` NewBinaryIO):
the process's stdout pipe is fd 3, its stderr pipe fd 4, and fd 5 is closed once the driver is
ready (the shim waits for that before it creates the task). The driver is the shim's child, not
the agent's: the container keeps logging while the node agent or containerd restarts. The shim
sends SIGTERM when the task is deleted; the driver then writes what the pipes still hold and
exits. It also exits when both pipes are at end of file.

Arguments come from the URI query as ``key value`` pairs, in any order (Go's map order):

- ``path``: the log file. Rotated like Docker's json-file driver: ``<path>.1`` is the newest
  rotated file, ``<path>.<max-file - 1>`` the oldest; an entry that would take the live file past
  ``max-size`` rotates first, so files hold whole entries (an entry larger than ``max-size``
  alone, at most about 100 KiB, has a file to itself). On disk: about ``max-size * max-file``.
- ``max-size``: bytes per file. ``max-file``: files kept, the live one included (1: the live
  file is truncated instead).
- ``mode``: ``rotate`` (the default), or ``head``: keep the first ``max-size`` RAW bytes of both
  pipes and discard the rest (a health probe's output, as Docker keeps it; no entries).

Files are created 0600 (a container's output may hold its secrets). Only the standard library is
imported; the agent installs a ``#!<python> -IS`` launcher of this module, compiled
(``install``), so a start pays about 7 ms for it.
"""

from __future__ import annotations

import os
import select
import sys
import time

# Start-up is on every container start's path: ``signal`` (through ``enum``) and ``typing`` cost
# 15 ms of a 30 ms start, ``_signal`` (what ``signal`` wraps) nothing; pathlib is install's only.
try:
    import _signal as signal
except ImportError:  # not CPython
    import signal  # type: ignore[no-redef]
try:  # the C encoder alone: ``json`` would load ``re`` and its parser too
    from _json import encode_basestring
except ImportError:  # not CPython
    from json.encoder import encode_basestring

STDOUT_FD = 3
STDERR_FD = 4
READY_FD = 5
FILE_MODE = 0o600
_CHUNK = 64 * 1024
ROTATE = "rotate"
HEAD = "head"
# Docker's copier buffer: a longer line is written as partial entries of this many bytes.
MAX_LINE_BYTES = 16 * 1024
# How long a begun line waits for its end before it is written as a partial entry.
IDLE_FLUSH_MS = 100


class RotatingFile:
    """The live log file and its rotations; ``write`` keeps every file within ``max_size``."""

    def __init__(self, path: str, max_size: int, max_files: int, mode: str = ROTATE) -> None:
        if max_size < 1 or max_files < 1 or mode not in (ROTATE, HEAD):
            raise ValueError(f"bad log policy: max-size {max_size}, max-file {max_files}, {mode}")
        self.path = path
        self.max_size = max_size
        self.max_files = max_files
        self.mode = mode
        self._fd = self._open()
        self.size = os.fstat(self._fd).st_size

    def _open(self) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(self.path, flags, FILE_MODE)
        os.fchmod(fd, FILE_MODE)  # a file an older writer left with the umask's mode
        return fd

    def write(self, data: bytes) -> None:
        """Append ``data``: raw bytes in ``head`` mode, else whole entries (newline-ended)."""
        view = memoryview(data)
        while view:
            room = self.max_size - self.size
            if self.mode == HEAD:
                if room > 0:
                    self._write_all(view[:room])
                return  # the rest is read and dropped, so the writer never blocks
            if len(view) <= room:
                self._write_all(view)
                return
            cut = bytes(view[:room]).rfind(b"\n") + 1 if room > 0 else 0
            if cut == 0:
                if self.size > 0:
                    self.rotate()
                    continue
                cut = bytes(view).find(b"\n") + 1 or len(view)  # an entry larger than a file
            self._write_all(view[:cut])
            view = view[cut:]

    def _write_all(self, data: memoryview) -> None:
        while data:
            written = os.write(self._fd, data)
            self.size += written
            data = data[written:]

    def rotate(self) -> None:
        """Shift ``path.N-1`` to ``path.N`` ... ``path`` to ``path.1`` and start an empty file."""
        if self.max_files == 1:
            os.ftruncate(self._fd, 0)
            self.size = 0
            return
        os.close(self._fd)
        for index in range(self.max_files - 1, 1, -1):
            _move(f"{self.path}.{index - 1}", f"{self.path}.{index}")
        _move(self.path, f"{self.path}.1")  # a live file removed under us: start a new one
        self._fd = self._open()
        self.size = 0

    def close(self) -> None:
        os.close(self._fd)


class Entries:
    """One pipe's bytes as json-file entries: whole lines, and partial ones past 16 KiB."""

    def __init__(self, stream: str) -> None:
        self._suffix = b',"stream":"' + stream.encode() + b'","time":"'
        self._pending = b""
        self._second = -1
        self._stamp = ""

    def feed(self, data: bytes) -> bytes:
        """The entries for ``data``'s complete lines; a trailing part waits for its newline."""
        data = self._pending + data
        now = self._now()
        out = []
        start = 0
        while True:
            newline = data.find(b"\n", start, start + MAX_LINE_BYTES)
            if newline >= 0:
                out.append(self._entry(data[start : newline + 1], now))
                start = newline + 1
            elif len(data) - start >= MAX_LINE_BYTES:
                out.append(self._entry(data[start : start + MAX_LINE_BYTES], now))
                start += MAX_LINE_BYTES
            else:
                break
        self._pending = data[start:]
        return b"".join(out)

    @property
    def waiting(self) -> bool:
        """Whether a begun line waits for its end."""
        return bool(self._pending)

    def flush(self) -> bytes:
        """The waiting part as a partial entry (the pipe ended, or it waited long enough)."""
        if not self._pending:
            return b""
        entry = self._entry(self._pending, self._now())
        self._pending = b""
        return entry

    def _entry(self, line: bytes, now: bytes) -> bytes:
        text = encode_basestring(line.decode("utf-8", "replace"))
        return b'{"log":' + text.encode() + self._suffix + now + b'"}\n'

    def _now(self) -> bytes:
        second, nanos = divmod(time.time_ns(), 1_000_000_000)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        fraction = f".{nanos:09d}".rstrip("0").rstrip(".")
        return f"{self._stamp}{fraction}Z".encode()


class Raw:
    """A pipe's bytes as they come (``head`` mode)."""

    waiting = False

    def feed(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


def _move(source: str, target: str) -> None:
    try:
        os.replace(source, target)
    except FileNotFoundError:
        return


def parse_args(argv: list[str]) -> dict[str, str]:
    """The URI query's ``key value`` pairs (a key without a value gets ``""``)."""
    if len(argv) % 2:
        argv = [*argv, ""]
    return dict(zip(argv[::2], argv[1::2], strict=True))


def pump(sink: RotatingFile, pipes: dict[int, Entries | Raw], wakeup: int) -> None:
    """Copy the pipes into ``sink`` until both end, or until a signal arrives on ``wakeup``."""
    poller = select.poll()
    for fd in (*pipes, wakeup):
        poller.register(fd, select.POLLIN)
    open_fds = set(pipes)
    while open_fds:
        idle = IDLE_FLUSH_MS if any(pipes[fd].waiting for fd in open_fds) else None
        ready = poller.poll(idle)
        if not ready:
            for fd in sorted(open_fds):
                sink.write(pipes[fd].flush())
        for fd, _ in ready:
            if fd == wakeup:
                drain(sink, {fd: pipes[fd] for fd in sorted(open_fds)})
                return
            data = os.read(fd, _CHUNK)
            if data:
                sink.write(pipes[fd].feed(data))
            else:
                sink.write(pipes[fd].flush())
                poller.unregister(fd)
                open_fds.discard(fd)


def drain(sink: RotatingFile, pipes: dict[int, Entries | Raw]) -> None:
    """Write what the pipes hold now, without waiting for more (the task is gone)."""
    for fd, entries in pipes.items():
        os.set_blocking(fd, False)
        while True:
            try:
                data = os.read(fd, _CHUNK)
            except BlockingIOError:
                break
            if not data:
                break
            sink.write(entries.feed(data))
        sink.write(entries.flush())


def main(argv: list[str]) -> int:
    options = parse_args(argv)
    sink = RotatingFile(
        options["path"],
        int(options.get("max-size", 10 * 1024 * 1024)),
        int(options.get("max-file", 3)),
        options.get("mode", ROTATE),
    )
    # SIGTERM (the shim's cancel) wakes the poll through a pipe rather than interrupting a write.
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pipes: dict[int, Entries | Raw] = (
        {STDOUT_FD: Raw(), STDERR_FD: Raw()}
        if sink.mode == HEAD
        else {STDOUT_FD: Entries("stdout"), STDERR_FD: Entries("stderr")}
    )
    os.close(READY_FD)
    try:
        pump(sink, pipes, wake_read)
    finally:
        sink.close()
    return 0


def install(target: os.PathLike[str], python: str | None = None) -> os.PathLike[str]:
    """Install this driver as an executable at ``target`` (atomically; unchanged is a no-op).

    ``target`` is a launcher that imports this module from a copy beside it
    (``_<target name>.py``), compiled here for the agent's own interpreter: compiling this
    file at every start would be a third of the driver's start-up (about 4 of 11 ms). The shim
    runs it with no environment, so the interpreter is named by absolute path; ``-IS`` keeps
    start-up to the standard library.
    """
    import importlib.util
    import py_compile
    from pathlib import Path

    target = Path(target)
    interpreter = python or sys.executable
    module = target.with_name("_" + "".join(c if c.isalnum() else "_" for c in target.name))
    source = Path(__file__).read_text()
    launcher = (
        f"#!{interpreter} -IS\n"
        f"import sys\nsys.path.insert(0, {str(target.parent)!r})\n"
        f"from {module.name} import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    module_file = module.with_suffix(".py")
    # Compiled only for the interpreter that runs this (another compiles it at its first run).
    compiled = Path(importlib.util.cache_from_source(str(module_file)))
    if interpreter != sys.executable:
        compiled = module_file
    try:
        if (
            target.read_text() == launcher
            and module_file.read_text() == source
            and compiled.exists()
        ):
            return target
    except FileNotFoundError:
        pass
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write_atomically(module_file, source, 0o600)
    if interpreter == sys.executable:
        # Checked against the source's hash at each import: a copy rewritten is never stale.
        py_compile.compile(
            str(module_file),
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
        )
    _write_atomically(target, launcher, 0o700)
    return target


def _write_atomically(path: os.PathLike[str], text: str, mode: int) -> None:
    from pathlib import Path

    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text)
    partial.chmod(mode)
    partial.replace(path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
