"""-v and --mount type=bind as docker parses them."""

from __future__ import annotations

import pytest

from berth.cli.binds import binds, named_volumes, parse_mount, parse_volume
from berth.cli.usage import UsageError


def test_volume_source_target_and_mode() -> None:
    assert parse_volume("/srv/data:/data") == {
        "source": "/srv/data",
        "target": "/data",
        "read_only": False,
    }
    assert parse_volume("/srv/data:/data:ro")["read_only"] is True
    assert parse_volume("/srv/data:/data:rw")["read_only"] is False


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("/data", "anonymous volumes"),
        ("./rel:/data", "invalid characters for a local volume name"),
        ("../x:/data", "invalid characters for a local volume name"),
        ("n:/data", "invalid characters for a local volume name"),
        ("/a:/b:z", "mode 'z'"),
        ("/a:relative", "not absolute"),
        ("/a:/b:ro:x", "invalid volume specification"),
    ],
)
def test_volume_refuses_what_berth_does_not_have(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_volume(spec)


def test_mount_bind_with_docker_s_key_spellings() -> None:
    assert parse_mount("type=bind,source=/a,target=/b") == {
        "source": "/a",
        "target": "/b",
        "read_only": False,
    }
    assert parse_mount("type=bind,src=/a,dst=/b,readonly")["read_only"] is True
    assert parse_mount('type=bind,"source=/a b",destination=/b,ro=false')["source"] == "/a b"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("type=volume,target=/b", "anonymous volumes are not supported"),
        ("source=../x,target=/b", "invalid characters for a local volume name"),
        ("type=tmpfs,target=/b", "type 'tmpfs'"),
        ("type=bind,target=/b", "source is required"),
        ("type=bind,source=/a", "target is required"),
        ("type=bind,source=/a,target=/b,color=red", "unexpected key"),
        ("type=bind,source=/a,target=/b,bind-propagation=shared", "not supported"),
    ],
)
def test_mount_refuses_other_types_and_unknown_keys(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_mount(spec)


def test_binds_refuse_one_target_twice() -> None:
    with pytest.raises(UsageError, match="Duplicate mount point: /b"):
        binds(["/a:/b"], ["type=bind,source=/c,target=/b/"])


def test_volume_with_a_name_is_a_named_volume() -> None:
    assert parse_volume("data:/data:ro") == {"name": "data", "target": "/data", "read_only": True}
    assert parse_mount("source=data,target=/data") == {
        "name": "data",
        "target": "/data",
        "read_only": False,
    }


def test_binds_and_named_volumes_split_the_mounts_and_refuse_one_target_twice() -> None:
    specs = ["/a:/b", "data:/c"], ["type=volume,src=logs,dst=/d,readonly"]
    assert binds(*specs) == [{"source": "/a", "target": "/b", "read_only": False}]
    assert named_volumes(*specs) == [
        {"name": "data", "target": "/c", "read_only": False},
        {"name": "logs", "target": "/d", "read_only": True},
    ]
    with pytest.raises(UsageError, match="Duplicate mount point: /b"):
        named_volumes(["/a:/b"], ["source=data,target=/b/"])
