"""``-e``/``--env-file`` and ``-l``/``--label-file`` as docker reads them.

A file has one ``KEY=VALUE`` per line; blank lines and lines starting with ``#`` are skipped,
leading whitespace is dropped, the value is taken as written (no quotes removed). In an env file
(and in ``-e NAME``), a name without ``=`` takes its value from the CLI's own environment and is
left out when unset there, as docker leaves it unset in the container; in a label file it is a
label with an empty value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from berth.cli.usage import UsageError

# A file given to --env-file / --label-file is read whole; docker's own limit is the same order.
MAX_FILE_BYTES = 1024 * 1024
_WHITESPACE = " \t"


def read_key_value_file(path: str) -> list[str]:
    """The ``KEY=VALUE`` and bare ``KEY`` lines of ``path``, as written.

    Raises:
        UsageError: unreadable, too large, not UTF-8, or a key with whitespace in it.
    """
    try:
        with Path(path).open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise UsageError(f"open {path}: {err.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise UsageError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: invalid utf8 bytes") from None
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.lstrip(_WHITESPACE)
        if not line or line.startswith("#"):
            continue
        key, _, _ = line.partition("=")
        if not key or any(c in key for c in _WHITESPACE):
            raise UsageError(f"{path}:{number}: variable {key!r} contains whitespaces or is empty")
        lines.append(line)
    return lines


def env_entries(
    env_files: Iterable[str], env: Iterable[str], environ: Mapping[str, str]
) -> list[str]:
    """The container's ``KEY=VALUE`` list: the files' first, then ``-e`` flags, as docker orders
    them; a bare ``KEY`` takes ``environ[KEY]`` or is left out."""
    entries = []
    for line in [*(line for path in env_files for line in read_key_value_file(path)), *env]:
        key, sep, _ = line.partition("=")
        if not key:
            raise UsageError(f"invalid environment variable: {line!r}")
        if sep:
            entries.append(line)
        elif key in environ:
            entries.append(f"{key}={environ[key]}")
    return entries


def label_map(label_files: Iterable[str], labels: Iterable[str]) -> dict[str, str]:
    """Labels from the files and then ``-l`` flags (a later key wins); ``KEY`` alone is ``""``."""
    result: dict[str, str] = {}
    for line in [*(line for path in label_files for line in read_key_value_file(path)), *labels]:
        key, _, value = line.partition("=")
        if not key:
            raise UsageError(f"invalid label: {line!r}")
        result[key] = value
    return result
