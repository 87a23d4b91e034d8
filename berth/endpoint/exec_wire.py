"""The client's end of ``Exec.Exec`` and ``Exec.Attach`` (berth/node_api/exec.proto), on the
standard library (:mod:`berth.endpoint.wire`): ``berth exec`` and ``attach`` import no protobuf.

The node's servicer uses the generated classes; tests/berth/endpoint/test_exec_wire.py checks
both ends agree, field by field.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from berth.endpoint import wire

EXEC_METHOD = "/berth.node.v1.Exec/Exec"
ATTACH_METHOD = "/berth.node.v1.Exec/Attach"

# ExecInput's oneof ``input``.
_START, _ATTACH, _STDIN, _CLOSE_STDIN, _RESIZE = 1, 2, 3, 4, 5
# ProcessOutput's oneof ``output``: the names WhichOneof gives them.
_OUTPUTS = {1: "stdout", 2: "stderr", 3: "exit_code"}


def _window(size: tuple[int, int] | None) -> bytes:
    rows, cols = size or (0, 0)
    return wire.int_field(1, rows) + wire.int_field(2, cols)


def _size_field(number: int, size: tuple[int, int] | None) -> bytes:
    """A ``WindowSize`` sub-message field, present whenever a size is given."""
    return b"" if size is None else wire.bytes_field(number, _window(size))


def encode_exec_start(
    container_id: str,
    args: list[str],
    env: list[str],
    workdir: str,
    user: str,
    tty: bool,
    stdin: bool,
    size: tuple[int, int] | None,
) -> bytes:
    """The ``ExecInput`` that starts ``args`` in the container (``size``: rows, cols)."""
    start = (
        wire.string_field(1, container_id)
        + wire.repeated_string_field(2, args)
        + wire.repeated_string_field(3, env)
        + wire.string_field(4, workdir)
        + wire.string_field(5, user)
        + wire.int_field(6, tty)
        + wire.int_field(7, stdin)
        + _size_field(8, size)
    )
    return wire.bytes_field(_START, start)


def encode_attach_start(
    container_id: str, stdin: bool, size: tuple[int, int] | None, logs: bool
) -> bytes:
    """The ``ExecInput`` that attaches to the container's own stdio."""
    attach = (
        wire.string_field(1, container_id)
        + wire.int_field(2, stdin)
        + _size_field(3, size)
        + wire.int_field(4, logs)
    )
    return wire.bytes_field(_ATTACH, attach)


def encode_stdin(data: bytes) -> bytes:
    """The ``ExecInput`` with a read of stdin."""
    return wire.bytes_field(_STDIN, data)  # a oneof member: present even when empty


def encode_close_stdin() -> bytes:
    """The ``ExecInput`` that says stdin is at its end."""
    return wire.key(_CLOSE_STDIN, wire.VARINT) + b"\x01"


def encode_resize(rows: int, cols: int) -> bytes:
    """The ``ExecInput`` with the terminal's new size."""
    return wire.bytes_field(_RESIZE, _window((rows, cols)))


class Output:
    """A decoded ``ProcessOutput``: ``kind`` is the oneof's member (``stdout``, ``stderr``,
    ``exit_code``, or ``""`` for none), ``data`` the output's bytes, ``exit_code`` the code."""

    __slots__ = ("data", "exit_code", "kind")

    def __init__(self, kind: str = "", data: bytes = b"", exit_code: int = 0) -> None:
        self.kind, self.data, self.exit_code = kind, data, exit_code

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Output):
            return NotImplemented
        return (self.kind, self.data, self.exit_code) == (other.kind, other.data, other.exit_code)

    def __repr__(self) -> str:
        return f"Output({self.kind!r}, {self.data!r}, {self.exit_code})"


def decode_output(data: bytes) -> Output:
    """A ``ProcessOutput``; as protobuf does, the last member of the oneof on the wire wins."""
    output = Output()
    for number, value in wire.fields(data):
        kind = _OUTPUTS.get(number)
        if kind is None:
            continue  # a field this client does not know
        if isinstance(value, int):
            output = Output(kind, exit_code=wire.int32(value))
        else:
            output = Output(kind, data=bytes(value))
    return output


def open_call(
    channel: grpc.aio.Channel, method: str, inputs: AsyncIterator[bytes]
) -> grpc.aio.StreamStreamCall:
    """The bidirectional call ``method`` (:data:`EXEC_METHOD` or :data:`ATTACH_METHOD`) fed by
    ``inputs`` (encoded ``ExecInput`` messages); its responses are :class:`Output`."""
    call = channel.stream_stream(method, response_deserializer=decode_output)
    return call(inputs)
