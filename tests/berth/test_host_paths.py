"""Bind mounts: host paths only under the allow-list, checked lexically and on the host."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from berth.contract import BindMount
from berth.errors import Forbidden, InvalidParameter
from berth.host_paths import check_bind_sources, pinned_bind_sources, resolve_bind_sources
from berth.runtime.mounts import mounts_under


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


def test_resolve_bind_sources_gives_the_path_the_kernel_opened(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")

    resolved = resolve_bind_sources([BindMount(source=f"{tmp_path}/link", target="/x")], [tmp_path])

    assert resolved == [str(tmp_path / "real")]


def test_resolve_bind_source_that_does_not_exist_is_invalid_parameter(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameter, match=r"config\.binds\[0\]\.source: .* does not exist"):
        resolve_bind_sources([BindMount(source=f"{tmp_path}/gone", target="/x")], [tmp_path])


def test_pinned_bind_source_is_a_private_mount_of_the_checked_dir_gone_on_exit(
    tmp_path: Path,
) -> None:
    allowed, pins = tmp_path / "allowed", tmp_path / "pins"
    (allowed / "data").mkdir(parents=True)
    (allowed / "data" / "hello").write_text("checked")
    bind = BindMount(source=f"{allowed}/data", target="/data")

    with pinned_bind_sources([bind], [allowed], pins) as sources:
        # The container swaps the path for a link to "/" after the check: the pin holds.
        (allowed / "data").rename(allowed / "moved")
        (allowed / "data").symlink_to("/")
        assert sources == [str(pins / "0")]
        assert (pins / "0" / "hello").read_text() == "checked"

    assert mounts_under(pins) == []
    assert not pins.exists()
    assert (allowed / "moved" / "hello").read_text() == "checked"


def test_pinned_bind_source_outside_the_roots_is_forbidden_and_pins_nothing(
    tmp_path: Path,
) -> None:
    allowed, pins = tmp_path / "allowed", tmp_path / "pins"
    allowed.mkdir()
    (allowed / "root").symlink_to("/")

    with (
        pytest.raises(Forbidden, match=r"resolved to /\)"),
        pinned_bind_sources([BindMount(source=f"{allowed}/root", target="/r")], [allowed], pins),
    ):
        pass

    assert mounts_under(tmp_path) == []
