"""containerd's task status is translated once, into ``TaskStatus``, where a task is read."""

from __future__ import annotations

import pytest

from berth._containerd_api.types.task import task_pb2
from berth.runtime.containerd import _task_info
from berth.runtime.types import TaskStatus


@pytest.mark.parametrize("name", [name for name, _ in task_pb2.Status.items()])
def test_task_info_protobuf_status_becomes_task_status_of_same_name(name: str) -> None:
    process = task_pb2.Process(container_id="c1", pid=42, status=name)

    info = _task_info(process)

    assert info.status is TaskStatus(name)
    assert (info.id, info.pid) == ("c1", 42)


def test_task_info_status_containerd_adds_later_reads_unknown() -> None:
    # What the stubs decode from a status number they do not know.
    process = task_pb2.Process.FromString(b"\x0a\x02c1\x18\x2a\x20\x63")  # c1, pid 42, status 99

    assert _task_info(process).status is TaskStatus.UNKNOWN


def test_task_status_every_member_is_a_protobuf_status() -> None:
    assert {status.value for status in TaskStatus} == set(task_pb2.Status.keys())
