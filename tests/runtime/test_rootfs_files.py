"""rootfs_files: container-controlled paths resolved inside the rootfs, regular files only, bounded.

Each rootfs here is a plain directory with a host file beside it (``host-secret``) that every
escape would reach; none may read it.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from berth.errors import InvalidParameter
from berth.runtime import rootfs_files

SECRET = b"host-secret-bytes"


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    (tmp_path / "host-secret").write_bytes(SECRET)
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_bytes(b"root:x:0:0::/:/bin/sh\n")
    return root


def test_read_file_regular_file_returns_its_bytes(rootfs: Path) -> None:
    assert rootfs_files.read_file(rootfs, "etc/passwd") == b"root:x:0:0::/:/bin/sh\n"


def test_read_file_missing_file_returns_none(rootfs: Path) -> None:
    assert rootfs_files.read_file(rootfs, "etc/group") is None
    assert rootfs_files.read_file(rootfs, "etc/passwd/under-a-file") is None


def test_read_file_absolute_symlink_out_resolves_inside_rootfs(rootfs: Path) -> None:
    (rootfs / "etc/shadow").symlink_to(rootfs.parent / "host-secret")
    assert rootfs_files.read_file(rootfs, "etc/shadow") is None  # that path is not in the rootfs


def test_read_file_absolute_symlink_resolves_against_rootfs(rootfs: Path) -> None:
    (rootfs / "data").mkdir()
    (rootfs / "data/passwd").write_bytes(b"inside")
    (rootfs / "etc/link").symlink_to("/data/passwd")
    assert rootfs_files.read_file(rootfs, "etc/link") == b"inside"


def test_read_file_dotdot_symlink_out_stops_at_rootfs(rootfs: Path) -> None:
    (rootfs / "etc/shadow").symlink_to("../../../../../../host-secret")
    (rootfs / "host-secret").write_bytes(b"the rootfs' own")
    assert rootfs_files.read_file(rootfs, "etc/shadow") == b"the rootfs' own"


def test_read_file_dotdot_in_path_stops_at_rootfs(rootfs: Path) -> None:
    assert rootfs_files.read_file(rootfs, "../host-secret") is None
    assert rootfs_files.read_file(rootfs, "/../../etc/passwd") == b"root:x:0:0::/:/bin/sh\n"


def test_read_file_symlinked_directory_out_resolves_inside_rootfs(rootfs: Path) -> None:
    (rootfs / "escape").symlink_to(rootfs.parent)
    assert rootfs_files.read_file(rootfs, "escape/host-secret") is None


def test_read_file_symlink_loop_raises_invalid_parameter(rootfs: Path) -> None:
    (rootfs / "etc/a").symlink_to("b")
    (rootfs / "etc/b").symlink_to("a")
    with pytest.raises(InvalidParameter, match="/etc/a: too many levels"):
        rootfs_files.read_file(rootfs, "etc/a")


def test_read_file_fifo_raises_invalid_parameter_without_blocking(rootfs: Path) -> None:
    os.unlink(rootfs / "etc/passwd")
    os.mkfifo(rootfs / "etc/passwd")
    outcome: list[BaseException | bytes | None] = []

    def read() -> None:
        try:
            outcome.append(rootfs_files.read_file(rootfs, "etc/passwd"))
        except BaseException as error:
            outcome.append(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    if reader.is_alive():  # unblock the reader so the test process can end
        os.close(os.open(rootfs / "etc/passwd", os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a FIFO blocked")
    assert isinstance(outcome[0], InvalidParameter)
    assert "/etc/passwd" in str(outcome[0]) and "FIFO" in str(outcome[0])


def test_read_file_symlink_to_fifo_raises_invalid_parameter(rootfs: Path) -> None:
    os.mkfifo(rootfs / "etc/pipe")
    (rootfs / "etc/group").symlink_to("pipe")
    with pytest.raises(InvalidParameter, match="FIFO"):
        rootfs_files.read_file(rootfs, "etc/group")


def test_read_file_device_node_raises_invalid_parameter(rootfs: Path) -> None:
    zero = os.stat("/dev/zero").st_rdev  # read, it would never end
    os.unlink(rootfs / "etc/passwd")
    os.mknod(rootfs / "etc/passwd", stat.S_IFCHR | 0o644, zero)
    with pytest.raises(InvalidParameter, match=r"/etc/passwd.*character device"):
        rootfs_files.read_file(rootfs, "etc/passwd")


def test_read_file_directory_raises_invalid_parameter(rootfs: Path) -> None:
    with pytest.raises(InvalidParameter, match="directory"):
        rootfs_files.read_file(rootfs, "etc")


def test_read_file_oversize_raises_invalid_parameter(rootfs: Path) -> None:
    (rootfs / "etc/passwd").write_bytes(b"x" * (rootfs_files.MAX_FILE_BYTES + 1))
    with pytest.raises(InvalidParameter, match=r"/etc/passwd.*larger than 1048576 bytes"):
        rootfs_files.read_file(rootfs, "etc/passwd")


def test_read_file_at_the_bound_reads_it_whole(rootfs: Path) -> None:
    (rootfs / "etc/passwd").write_bytes(b"x" * 100)
    assert rootfs_files.read_file(rootfs, "etc/passwd", limit=100) == b"x" * 100


def test_read_regular_file_grown_past_the_bound_after_fstat_raises(rootfs: Path) -> None:
    root_fd = rootfs_files.open_root(rootfs)
    fd = rootfs_files.resolve(root_fd, "etc/passwd")
    assert fd is not None
    try:
        (rootfs / "etc/passwd").write_bytes(b"y" * 200)  # same inode, grown after the open
        with pytest.raises(InvalidParameter, match="larger than 100"):
            rootfs_files.read_regular(fd, "/etc/passwd", limit=100)
    finally:
        os.close(fd)
        os.close(root_fd)


def test_read_regular_reads_the_fstat_inode_after_a_swap_for_a_symlink(rootfs: Path) -> None:
    root_fd = rootfs_files.open_root(rootfs)
    fd = rootfs_files.resolve(root_fd, "etc/passwd")
    assert fd is not None
    try:
        os.rename(rootfs / "etc/passwd", rootfs / "etc/old")
        (rootfs / "etc/passwd").symlink_to(rootfs.parent / "host-secret")
        assert rootfs_files.read_regular(fd, "/etc/passwd") == b"root:x:0:0::/:/bin/sh\n"
    finally:
        os.close(fd)
        os.close(root_fd)


def test_walk_lists_entries_without_following_symlinks(rootfs: Path) -> None:
    (rootfs / "escape").symlink_to(rootfs.parent)
    os.mkfifo(rootfs / "etc/pipe")
    root_fd = rootfs_files.open_root(rootfs)
    try:
        seen = {
            entry.path: (stat.S_IFMT(entry.stat.st_mode), _link(entry))
            for entry in rootfs_files.walk(root_fd)
        }
    finally:
        os.close(root_fd)
    assert seen == {
        "escape": (stat.S_IFLNK, str(rootfs.parent)),
        "etc": (stat.S_IFDIR, None),
        "etc/passwd": (stat.S_IFREG, None),
        "etc/pipe": (stat.S_IFIFO, None),
    }


def test_walk_too_deep_raises_invalid_parameter(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(rootfs_files.MAX_DEPTH + 1):  # deeper than PATH_MAX allows by path
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(fd)
    root_fd = rootfs_files.open_root(tmp_path)
    try:
        with pytest.raises(InvalidParameter, match="deeper than"):
            for _ in rootfs_files.walk(root_fd):
                pass
    finally:
        os.close(root_fd)


def _link(entry: rootfs_files.Entry) -> str | None:
    return rootfs_files.read_link(entry.fd) if stat.S_ISLNK(entry.stat.st_mode) else None
