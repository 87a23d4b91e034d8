"""Bind mounts: host paths only under the allow-list, checked lexically and on the host."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from berth.contract import BindMount
from berth.errors import Forbidden
from berth.host_paths import check_bind_sources


def test_bind_under_an_allowed_root_passes(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()

    check_bind_sources(
        [BindMount(source=f"{tmp_path}/data", target="/data")], [tmp_path], resolve=True
    )


def test_bind_outside_every_allowed_root_is_forbidden_naming_the_field(tmp_path: Path) -> None:
    binds = [BindMount(source=str(tmp_path), target="/a"), BindMount(source="/etc", target="/b")]

    with pytest.raises(Forbidden, match=r"config\.binds\[1\]\.source: host path /etc"):
        check_bind_sources(binds, [tmp_path], resolve=False)


def test_bind_with_no_allowed_roots_is_forbidden() -> None:
    with pytest.raises(Forbidden, match="none are allowed"):
        check_bind_sources([BindMount(source="/srv", target="/srv")], [], resolve=False)


def test_bind_through_a_symlink_out_of_the_root_is_forbidden_on_the_host(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "escape").symlink_to("/etc")
    bind = BindMount(source=f"{allowed}/escape", target="/x")

    check_bind_sources([bind], [allowed], resolve=False)  # lexically it looks fine
    with pytest.raises(Forbidden):
        check_bind_sources([bind], [allowed], resolve=True)


@pytest.mark.parametrize(
    ("source", "target"), [("relative/dir", "/x"), ("/a/../etc", "/x"), ("/srv", "/")]
)
def test_bind_with_a_bad_path_is_a_validation_error(source: str, target: str) -> None:
    with pytest.raises(ValidationError):
        BindMount(source=source, target=target)
