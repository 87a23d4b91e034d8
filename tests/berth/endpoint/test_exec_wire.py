"""The client's own ``Exec`` codec agrees with the generated messages the node uses."""

from __future__ import annotations

import pytest

from berth.endpoint.exec_wire import (
    Output,
    decode_output,
    encode_attach_start,
    encode_close_stdin,
    encode_exec_start,
    encode_resize,
    encode_stdin,
)
from berth.node_api import exec_pb2


@pytest.mark.parametrize(
    ("args", "env", "workdir", "user", "tty", "stdin", "size"),
    [
        (["true"], [], "", "", False, False, None),
        (["sh", "-c", "echo ü", ""], ["A=1", "EMPTY="], "/tmp", "1000:1000", True, True, (40, 120)),
        (["cat"], ["X=y"], "", "nobody", False, True, (0, 0)),  # a size, even a zero one
    ],
)
def test_encode_exec_start_is_the_generated_input(
    args: list[str],
    env: list[str],
    workdir: str,
    user: str,
    tty: bool,
    stdin: bool,
    size: tuple[int, int] | None,
) -> None:
    data = encode_exec_start("c0ffee", args, env, workdir, user, tty, stdin, size)

    window = None if size is None else exec_pb2.WindowSize(rows=size[0], cols=size[1])
    expected = exec_pb2.ExecInput(
        start=exec_pb2.ExecStart(
            container_id="c0ffee",
            args=args,
            env=env,
            workdir=workdir,
            user=user,
            tty=tty,
            stdin=stdin,
            size=window,
        )
    )
    parsed = exec_pb2.ExecInput.FromString(data)
    assert parsed == expected
    assert parsed.start.HasField("size") == (size is not None)
    assert data == expected.SerializeToString()


@pytest.mark.parametrize(
    ("stdin", "size", "logs"), [(False, None, False), (True, (24, 80), True), (True, None, False)]
)
def test_encode_attach_start_is_the_generated_input(
    stdin: bool, size: tuple[int, int] | None, logs: bool
) -> None:
    data = encode_attach_start("c0ffee", stdin, size, logs)

    window = None if size is None else exec_pb2.WindowSize(rows=size[0], cols=size[1])
    expected = exec_pb2.ExecInput(
        attach=exec_pb2.AttachStart(container_id="c0ffee", stdin=stdin, size=window, logs=logs)
    )
    parsed = exec_pb2.ExecInput.FromString(data)
    assert parsed == expected and parsed.WhichOneof("input") == "attach"
    assert data == expected.SerializeToString()


@pytest.mark.parametrize(
    ("data", "expected", "member"),
    [
        (encode_stdin(b"typed\n"), exec_pb2.ExecInput(stdin=b"typed\n"), "stdin"),
        (encode_stdin(b""), exec_pb2.ExecInput(stdin=b""), "stdin"),
        (encode_close_stdin(), exec_pb2.ExecInput(close_stdin=True), "close_stdin"),
        (
            encode_resize(50, 200),
            exec_pb2.ExecInput(resize=exec_pb2.WindowSize(rows=50, cols=200)),
            "resize",
        ),
    ],
)
def test_later_inputs_are_the_generated_inputs(
    data: bytes, expected: exec_pb2.ExecInput, member: str
) -> None:
    parsed = exec_pb2.ExecInput.FromString(data)

    assert parsed == expected and parsed.WhichOneof("input") == member
    assert data == expected.SerializeToString()


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (exec_pb2.ProcessOutput(stdout=b"out\n"), Output("stdout", data=b"out\n")),
        (exec_pb2.ProcessOutput(stderr=b"x" * 70_000), Output("stderr", data=b"x" * 70_000)),
        (exec_pb2.ProcessOutput(stdout=b""), Output("stdout")),
        (exec_pb2.ProcessOutput(exit_code=0), Output("exit_code", exit_code=0)),
        (exec_pb2.ProcessOutput(exit_code=127), Output("exit_code", exit_code=127)),
        (exec_pb2.ProcessOutput(exit_code=-1), Output("exit_code", exit_code=-1)),
        (exec_pb2.ProcessOutput(), Output()),
    ],
)
def test_decode_output_is_the_generated_output(
    message: exec_pb2.ProcessOutput, expected: Output
) -> None:
    decoded = decode_output(message.SerializeToString())

    assert decoded == expected
    assert decoded.kind == (message.WhichOneof("output") or "")


def test_decode_output_skips_unknown_fields_and_keeps_the_last_member() -> None:
    data = b"\x0a\x02hi" + b"\x20\x07" + b"\x2a\x01z" + b"\x18\x05"

    assert exec_pb2.ProcessOutput.FromString(data).WhichOneof("output") == "exit_code"
    assert decode_output(data) == Output("exit_code", exit_code=5)
