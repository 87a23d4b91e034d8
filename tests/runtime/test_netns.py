"""Persistent network namespaces on the real kernel, bound under a directory Berth chooses."""

from __future__ import annotations

import errno
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.errors import NotFound
from berth.runtime import netns
from berth.runtime.mounts import mount_table, mounts_under, umount
from berth.runtime.netns import (
    create_netns,
    delete_netns,
    list_netns,
    netns_addresses,
    netns_exists,
    netns_interfaces,
)


@pytest.fixture
def netns_dir() -> Iterator[Path]:
    """A short temp dir for namespaces; every one left in it is deleted afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="bt", dir="/tmp"))
    yield directory / "netns"
    leaked = mounts_under(directory)
    for path in list_netns(directory / "netns"):
        delete_netns(path)
    shutil.rmtree(directory)
    assert leaked == [], "test left namespaces bound"


def nsfs_entries(path: Path) -> int:
    return sum(1 for e in mount_table() if e.mount_point == path and e.fs_type == "nsfs")


def test_create_netns_new_path_binds_namespace(netns_dir: Path) -> None:
    path = create_netns(netns_dir / "c1")
    assert netns_exists(path)
    delete_netns(path)


def test_create_netns_twice_gives_one_netns(netns_dir: Path) -> None:
    create_netns(netns_dir / "c1")
    create_netns(netns_dir / "c1")
    assert nsfs_entries(netns_dir / "c1") == 1
    delete_netns(netns_dir / "c1")


def test_create_netns_leftover_file_binds_it(netns_dir: Path) -> None:
    netns_dir.mkdir()
    (netns_dir / "c1").touch()
    create_netns(netns_dir / "c1")
    assert netns_exists(netns_dir / "c1")
    delete_netns(netns_dir / "c1")


def test_create_netns_new_namespace_has_only_loopback_down(netns_dir: Path) -> None:
    path = create_netns(netns_dir / "c1")
    assert [link.name for link in netns_interfaces(path)] == ["lo"]
    assert netns_addresses(path) == []
    delete_netns(path)


def test_delete_netns_bound_removes_mount_and_file(netns_dir: Path) -> None:
    path = create_netns(netns_dir / "c1")
    delete_netns(path)
    assert nsfs_entries(path) == 0
    assert not path.exists()


def test_delete_netns_unbound_by_a_concurrent_delete_succeeds(
    netns_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another deleter (a saga's undo beside the reconciler) unbinds it between our look and
    # our unmount: ours then fails with EINVAL, and the namespace is gone all the same.
    path = create_netns(netns_dir / "c1")

    def raced_umount(target: Path, flags: int = 0) -> int:
        umount(target)  # the other deleter wins
        return errno.EINVAL  # as the kernel answers the late one

    monkeypatch.setattr(netns, "umount", raced_umount)

    delete_netns(path)

    assert nsfs_entries(path) == 0
    assert not path.exists()


def test_delete_netns_missing_succeeds(netns_dir: Path) -> None:
    delete_netns(netns_dir / "never-created")


def test_delete_netns_leftover_file_removes_it(netns_dir: Path) -> None:
    netns_dir.mkdir()
    (netns_dir / "c1").touch()
    delete_netns(netns_dir / "c1")
    assert not (netns_dir / "c1").exists()


def test_netns_exists_plain_file_false(netns_dir: Path) -> None:
    netns_dir.mkdir()
    (netns_dir / "c1").touch()
    assert not netns_exists(netns_dir / "c1")


def test_list_netns_bound_and_leftover_lists_both(netns_dir: Path) -> None:
    create_netns(netns_dir / "bound")
    (netns_dir / "leftover").touch()
    assert list_netns(netns_dir) == [netns_dir / "bound", netns_dir / "leftover"]
    delete_netns(netns_dir / "bound")
    delete_netns(netns_dir / "leftover")


def test_list_netns_missing_directory_empty(netns_dir: Path) -> None:
    assert list_netns(netns_dir) == []


def test_netns_addresses_missing_raises_not_found(netns_dir: Path) -> None:
    with pytest.raises(NotFound):
        netns_addresses(netns_dir / "never-created")
