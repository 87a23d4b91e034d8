"""The client's own ``Files`` codec agrees with the generated messages the node uses."""

from __future__ import annotations

import pytest

from berth.endpoint import files_wire
from berth.node_api import files_pb2


@pytest.mark.parametrize(("path", "follow"), [("/etc/hostname", False), ("/ü dir/.", True)])
def test_encode_copy_from_is_the_generated_request(path: str, follow: bool) -> None:
    data = files_wire.encode_copy_from("c0ffee", path, follow)

    expected = files_pb2.CopyFromRequest(container_id="c0ffee", path=path, follow_link=follow)
    assert files_pb2.CopyFromRequest.FromString(data) == expected
    assert data == expected.SerializeToString()


def test_encode_export_is_the_generated_request() -> None:
    data = files_wire.encode_export("c0ffee")

    assert data == files_pb2.ExportRequest(container_id="c0ffee").SerializeToString()
    assert files_pb2.ExportRequest.FromString(data).container_id == "c0ffee"


@pytest.mark.parametrize(
    ("mode", "generated"),
    [
        (files_wire.COPY_MODE_ARCHIVE, files_pb2.COPY_MODE_ARCHIVE),
        (files_wire.COPY_MODE_SOURCE, files_pb2.COPY_MODE_SOURCE),
        (files_wire.COPY_MODE_CONTENTS, files_pb2.COPY_MODE_CONTENTS),
    ],
)
@pytest.mark.parametrize("keep_owners", [False, True])
def test_encode_copy_target_is_the_generated_input(
    mode: int, generated: int, keep_owners: bool
) -> None:
    data = files_wire.encode_copy_target("c0ffee", "/tmp", mode, keep_owners)

    expected = files_pb2.CopyToInput(
        target=files_pb2.CopyTarget(
            container_id="c0ffee", path="/tmp", mode=generated, keep_owners=keep_owners
        )
    )
    parsed = files_pb2.CopyToInput.FromString(data)
    assert parsed == expected and parsed.WhichOneof("input") == "target"
    assert data == expected.SerializeToString()


@pytest.mark.parametrize("chunk", [b"", b"tar", bytes(range(256)) * 1024])
def test_encode_copy_data_is_the_generated_input(chunk: bytes) -> None:
    data = files_wire.encode_copy_data(chunk)

    parsed = files_pb2.CopyToInput.FromString(data)
    assert parsed.WhichOneof("input") == "data" and parsed.data == chunk
    assert data == files_pb2.CopyToInput(data=chunk).SerializeToString()


@pytest.mark.parametrize("chunk", [b"", b"tar", bytes(range(256)) * 1024])
def test_decode_chunk_is_the_generated_chunk(chunk: bytes) -> None:
    assert files_wire.decode_chunk(files_pb2.Chunk(data=chunk).SerializeToString()) == chunk


def test_decode_chunk_skips_unknown_fields() -> None:
    data = files_pb2.Chunk(data=b"kept").SerializeToString() + b"\x10\x01" + b"\x1a\x01x"

    assert files_wire.decode_chunk(data) == b"kept"


@pytest.mark.parametrize(("entries", "size"), [(0, 0), (3, 4096), (2**40, 2**63)])
def test_decode_copy_result_is_the_generated_result(entries: int, size: int) -> None:
    data = files_pb2.CopyToResult(entries=entries, bytes=size).SerializeToString()

    assert files_wire.decode_copy_result(data) == (entries, size)
