"""The client's own ``Logs.Read`` codec agrees with the generated messages the node uses."""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from berth.container_logs import LogEntry
from berth.endpoint.logs import log_filter, message_of
from berth.endpoint.logs_wire import decode_batch, encode_request
from berth.node_api import logs_pb2

SECOND = 1_000_000_000
T0 = 1_800_000_000 * SECOND


@pytest.mark.parametrize(
    ("follow", "tail", "since", "until", "stdout", "stderr"),
    [
        (False, None, None, None, True, True),
        (True, 0, T0 + 7, T0 + 5 * SECOND, False, True),
        (False, 100, 0, 123, True, False),
        (True, 2**40, T0, None, False, False),
    ],
)
def test_encode_request_is_the_generated_request(
    follow: bool,
    tail: int | None,
    since: int | None,
    until: int | None,
    stdout: bool,
    stderr: bool,
) -> None:
    data = encode_request("c0ffee", follow, tail, since, until, stdout, stderr)

    parsed = logs_pb2.LogsRequest.FromString(data)
    assert (parsed.container_id, parsed.follow, parsed.stdout, parsed.stderr) == (
        "c0ffee",
        follow,
        stdout,
        stderr,
    )
    assert parsed.HasField("tail") == (tail is not None) and parsed.tail == (tail or 0)
    for name, value in (("since", since), ("until", until)):
        assert parsed.HasField(name) == (value is not None)
        stamp = getattr(parsed, name)
        assert stamp.seconds * SECOND + stamp.nanos == (value or 0)
    selection = log_filter(parsed)  # the node reads it as asked
    assert (selection.tail, selection.since_ns, selection.until_ns) == (tail, since, until)


def test_decode_batch_is_the_generated_batch() -> None:
    entries = [
        LogEntry("stdout", b"hello\n", T0 + 1),
        LogEntry("stderr", "grüße \u2028\n".encode(), T0),
        LogEntry("stdout", b"", 0),  # every field at its default: nothing on the wire
        LogEntry("stdout", b"x" * 70_000, T0 + 999_999_999),
        LogEntry("stderr", b"before 1970\n", -5 * SECOND + 3),
    ]
    batch = logs_pb2.LogBatch(entries=[message_of(entry) for entry in entries])

    assert decode_batch(batch.SerializeToString()) == entries
    assert decode_batch(b"") == []


def test_decode_batch_skips_fields_it_does_not_know() -> None:
    entry = logs_pb2.LogEntry(stream="stdout", line=b"kept\n", time=Timestamp(seconds=1, nanos=2))
    unknown = b"\x20\x96\x01" + b"\x2a\x03abc" + b"\x31" + bytes(8) + b"\x3d" + bytes(4)
    data = b"\x0a" + bytes([len(entry.SerializeToString() + unknown)])
    data += entry.SerializeToString() + unknown + b"\x10\x05"  # and one on the batch

    assert decode_batch(data) == [LogEntry("stdout", b"kept\n", SECOND + 2)]
