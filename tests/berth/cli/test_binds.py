"""-v and --mount type=bind as docker parses them."""

from __future__ import annotations

import pytest

from berth.cli.binds import binds, parse_mount, parse_volume
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
        ("named:/data", "named volumes"),
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
        ("source=/a,target=/b", "type 'volume' is not supported"),
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
