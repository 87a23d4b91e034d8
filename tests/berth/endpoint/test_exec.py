"""The exec's process spec: the container's own, with the request's argv, env, cwd and user."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from berth.endpoint.exec import DEFAULT_TERM, exec_process_spec, merge_env
from berth.errors import InvalidParameter
from berth.node_api import exec_pb2

CONTAINER_SPEC: dict[str, Any] = {
    "process": {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "args": ["sleep", "600"],
        "env": ["PATH=/bin", "FOO=old", "KEPT=1"],
        "cwd": "/",
        "capabilities": {"bounding": ["CAP_CHOWN"]},
        "noNewPrivileges": True,
    }
}


def start(**fields: Any) -> exec_pb2.ExecStart:
    fields.setdefault("container_id", "c1")
    fields.setdefault("args", ["sh"])
    return exec_pb2.ExecStart(**fields)


def rootfs_with_users(tmp_path: Path) -> Path:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0::/root:/bin/sh\nweb:x:1000:1000::/home/web:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\nweb:x:1000:\nstaff:x:50:web\n")
    return tmp_path


def test_merge_env_replaces_a_key_and_appends_a_new_one() -> None:
    assert merge_env(["A=1", "B=2"], ["B=3", "C=4"]) == ["A=1", "B=3", "C=4"]


def test_merge_env_without_an_equals_sign_is_invalid() -> None:
    with pytest.raises(InvalidParameter):
        merge_env([], ["NOVALUE"])


def test_exec_process_spec_keeps_the_container_s_process_under_the_request_s_argv(
    tmp_path: Path,
) -> None:
    process = exec_process_spec(CONTAINER_SPEC, start(args=["ls", "-l"]), tmp_path)

    assert process["args"] == ["ls", "-l"]
    assert process["env"] == CONTAINER_SPEC["process"]["env"]
    assert process["cwd"] == "/"
    assert process["capabilities"] == CONTAINER_SPEC["process"]["capabilities"]
    assert process["noNewPrivileges"] is True
    assert process["terminal"] is False
    assert "consoleSize" not in process


def test_exec_process_spec_env_workdir_and_named_user_on_top(tmp_path: Path) -> None:
    rootfs = rootfs_with_users(tmp_path)

    process = exec_process_spec(
        CONTAINER_SPEC, start(env=["FOO=new"], workdir="/tmp", user="web"), rootfs
    )

    assert process["env"] == ["PATH=/bin", "FOO=new", "KEPT=1"]
    assert process["cwd"] == "/tmp"
    assert process["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [50]}


def test_exec_process_spec_with_a_terminal_sets_term_and_its_size(tmp_path: Path) -> None:
    size = exec_pb2.WindowSize(rows=40, cols=120)

    process = exec_process_spec(CONTAINER_SPEC, start(tty=True, size=size), tmp_path)

    assert process["terminal"] is True
    assert process["consoleSize"] == {"height": 40, "width": 120}
    assert DEFAULT_TERM in process["env"]


@pytest.mark.parametrize(
    "request_fields",
    [{"args": []}, {"workdir": "tmp"}, {"user": "nobody-here"}, {"env": ["BAD"]}],
)
def test_exec_process_spec_bad_request_is_invalid(
    tmp_path: Path, request_fields: dict[str, Any]
) -> None:
    with pytest.raises(InvalidParameter):
        exec_process_spec(CONTAINER_SPEC, start(**request_fields), rootfs_with_users(tmp_path))
