"""rootfs_tar: tars out of a rootfs through the untrusting walk, and into a directory without
following a link, with docker cp's placement.

Each rootfs here is a plain directory with a host directory beside it (``host``) that every
escape would reach; nothing may be read from or written there.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import threading
from pathlib import Path

import pytest

from berth.errors import InvalidParameter, NotFound
from berth.runtime import rootfs_tar
from berth.runtime.rootfs_tar import Destination, Placement, placement

SECRET = b"host-secret-bytes"


@pytest.fixture
def host(tmp_path: Path) -> Path:
    directory = tmp_path / "host"
    directory.mkdir()
    (directory / "secret").write_bytes(SECRET)
    return directory


@pytest.fixture
def rootfs(tmp_path: Path, host: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_bytes(b"root:x:0:0::/:/bin/sh\n")
    (root / "escape").symlink_to("/")
    (root / "hostdir").symlink_to(host)
    return root


def tar_of(rootfs: Path, path: str) -> tarfile.TarFile:
    out = io.BytesIO()
    rootfs_tar.write_path(rootfs, path, out, threading.Event(), rootfs_tar.Progress())
    return tarfile.open(fileobj=io.BytesIO(out.getvalue()))


def tar_bytes(*members: tuple[tarfile.TarInfo, bytes | None]) -> io.BytesIO:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    out.seek(0)
    return out


def member(
    name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, **fields: object
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = kind, mode
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def extract_into(
    directory: Path,
    stream: io.BytesIO,
    top: str | None = None,
    owner: tuple[int, int] | None = (0, 0),
) -> rootfs_tar.Extracted:
    def place(first: tarfile.TarInfo | None) -> tuple[int, str | None]:
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY), top

    return rootfs_tar.extract(stream, place, owner)


# --- out ------------------------------------------------------------------------------------


def test_write_path_directory_names_members_by_its_basename(rootfs: Path) -> None:
    with tar_of(rootfs, "/etc") as tar:
        assert tar.getnames() == ["etc", "etc/passwd"]


def test_write_path_trailing_dot_names_the_top_dot(rootfs: Path) -> None:
    with tar_of(rootfs, "/etc/.") as tar:
        assert tar.getnames() == [".", "./passwd"]


def test_write_path_symlink_is_copied_as_a_link(rootfs: Path) -> None:
    with tar_of(rootfs, "/escape") as tar:
        (only,) = tar.getmembers()
        assert (only.name, only.issym(), only.linkname) == ("escape", True, "/")


def test_write_path_through_an_absolute_link_stays_in_the_rootfs(rootfs: Path) -> None:
    with tar_of(rootfs, "/escape/etc/passwd") as tar:
        data = tar.extractfile("passwd")
        assert data is not None and data.read().startswith(b"root:")


def test_write_path_host_path_through_a_link_is_not_found(rootfs: Path) -> None:
    with pytest.raises(NotFound):
        tar_of(rootfs, "/hostdir/secret")


def test_write_path_trailing_slash_on_a_file_is_invalid(rootfs: Path) -> None:
    with pytest.raises(InvalidParameter, match="not a directory"):
        tar_of(rootfs, "/etc/passwd/")


def test_write_tar_whole_rootfs_has_dot_members(rootfs: Path) -> None:
    out = io.BytesIO()
    rootfs_tar.write_tar(rootfs, out, threading.Event(), rootfs_tar.Progress())

    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        names = tar.getnames()
    assert names[0] == "." and "./etc/passwd" in names and "./escape" in names
    assert SECRET not in out.getvalue()


def test_write_tar_stop_set_raises_stopped(rootfs: Path) -> None:
    stop = threading.Event()
    stop.set()

    with pytest.raises(rootfs_tar.Stopped):
        rootfs_tar.write_tar(rootfs, io.BytesIO(), stop, rootfs_tar.Progress())


# --- placement (docker cp) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("destination", "source_is_dir", "contents", "expected"),
    [
        (Destination(True, True, False), True, False, Placement(False, None)),
        (Destination(True, True, False), True, True, Placement(False, "")),
        (Destination(True, True, True), False, False, Placement(False, None)),
        (Destination(False, False, False), True, False, Placement(True, "dest")),
        (Destination(False, False, False), True, True, Placement(True, "dest")),
        (Destination(False, False, False), False, False, Placement(True, "dest")),
        (Destination(False, False, True), True, False, Placement(True, "dest")),
        (Destination(True, False, False), False, False, Placement(True, "dest")),
    ],
    ids=[
        "dir-into-dir",
        "contents-into-dir",
        "file-into-dir-slash",
        "dir-to-new",
        "contents-to-new",
        "file-to-new",
        "dir-to-new-slash",
        "file-over-file",
    ],
)
def test_placement_follows_docker_cp(
    destination: Destination, source_is_dir: bool, contents: bool, expected: Placement
) -> None:
    assert placement(destination, "dest", source_is_dir, contents) == expected


def test_placement_directory_onto_a_file_is_invalid() -> None:
    with pytest.raises(InvalidParameter, match="cannot copy a directory to a file"):
        placement(Destination(True, False, False), "dest", source_is_dir=True, contents=False)


def test_placement_file_to_a_missing_directory_is_invalid() -> None:
    with pytest.raises(InvalidParameter, match="must exist"):
        placement(Destination(False, False, True), "dest", source_is_dir=False, contents=False)


# --- in -------------------------------------------------------------------------------------


def test_extract_writes_files_dirs_links_with_modes_and_owner(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    stream = tar_bytes(
        (member("d", tarfile.DIRTYPE, 0o750), None),
        (member("d/run.sh", mode=0o755, uid=1234, gid=99), b"#!/bin/sh\n"),
        (member("d/link", tarfile.SYMTYPE, linkname="/etc/passwd"), None),
        (member("d/hard", tarfile.LNKTYPE, linkname="d/run.sh"), None),
        (member("fifo", tarfile.FIFOTYPE, 0o600), None),
    )

    done = extract_into(target, stream, owner=(0, 0))

    assert done == rootfs_tar.Extracted(entries=5, bytes=10)
    assert stat.S_IMODE((target / "d").stat().st_mode) == 0o750
    script = (target / "d" / "run.sh").stat()
    assert (stat.S_IMODE(script.st_mode), script.st_uid, script.st_gid) == (0o755, 0, 0)
    assert os.readlink(target / "d" / "link") == "/etc/passwd"
    assert (target / "d" / "hard").stat().st_ino == script.st_ino
    assert stat.S_ISFIFO((target / "fifo").lstat().st_mode)


def test_extract_without_owner_keeps_the_tars_owners(tmp_path: Path) -> None:
    stream = tar_bytes((member("f", uid=1234, gid=99), b"x"))

    extract_into(tmp_path, stream, owner=None)

    info = (tmp_path / "f").stat()
    assert (info.st_uid, info.st_gid) == (1234, 99)


def test_extract_renames_or_drops_the_top_member(tmp_path: Path) -> None:
    (tmp_path / "renamed").mkdir()
    (tmp_path / "contents").mkdir()
    members = ((member("src", tarfile.DIRTYPE, 0o755), None), (member("src/a"), b"a"))

    extract_into(tmp_path / "renamed", tar_bytes(*members), top="new")
    extract_into(tmp_path / "contents", tar_bytes(*members), top="")

    assert (tmp_path / "renamed" / "new" / "a").read_bytes() == b"a"
    assert sorted(os.listdir(tmp_path / "contents")) == ["a"]


def test_extract_member_outside_the_first_members_tree_is_refused(tmp_path: Path) -> None:
    stream = tar_bytes((member("src", tarfile.DIRTYPE), None), (member("other"), b"x"))

    with pytest.raises(InvalidParameter, match="not under the first member"):
        extract_into(tmp_path, stream, top="new")


@pytest.mark.parametrize("name", ["/abs", "../up", "a/../../up"])
def test_extract_names_leaving_the_target_are_refused(tmp_path: Path, name: str) -> None:
    target = tmp_path / "target"
    target.mkdir()

    with pytest.raises(InvalidParameter, match="refused"):
        extract_into(target, tar_bytes((member(name), b"evil")))

    assert not (tmp_path / "up").exists() and not Path("/abs").exists()


def test_extract_through_an_existing_symlink_is_refused(rootfs: Path, host: Path) -> None:
    stream = tar_bytes((member("hostdir/planted"), b"evil"))

    with pytest.raises(InvalidParameter, match="not followed"):
        extract_into(rootfs, stream)

    assert sorted(os.listdir(host)) == ["secret"]


def test_extract_through_a_symlink_the_tar_made_is_refused(tmp_path: Path, host: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    stream = tar_bytes(
        (member("out", tarfile.SYMTYPE, linkname=str(host)), None),
        (member("out/planted"), b"evil"),
    )

    with pytest.raises(InvalidParameter, match="not followed"):
        extract_into(target, stream)

    assert sorted(os.listdir(host)) == ["secret"]


def test_extract_over_a_symlink_replaces_it_instead_of_writing_through(
    rootfs: Path, host: Path
) -> None:
    (rootfs / "etc" / "shadow").symlink_to(host / "secret")

    extract_into(rootfs / "etc", tar_bytes((member("shadow"), b"new")))

    assert (host / "secret").read_bytes() == SECRET
    shadow = rootfs / "etc" / "shadow"
    assert not shadow.is_symlink() and shadow.read_bytes() == b"new"


def test_extract_hard_link_to_a_host_file_is_refused(rootfs: Path, host: Path) -> None:
    stream = tar_bytes((member("stolen", tarfile.LNKTYPE, linkname="hostdir/secret"), None))

    with pytest.raises(InvalidParameter, match="not followed"):
        extract_into(rootfs, stream)

    assert not (rootfs / "stolen").exists() and (host / "secret").stat().st_nlink == 1


def test_extract_hard_link_to_a_missing_member_is_refused(tmp_path: Path) -> None:
    stream = tar_bytes((member("l", tarfile.LNKTYPE, linkname="nothing"), None))

    with pytest.raises(InvalidParameter, match="not in the tar"):
        extract_into(tmp_path, stream)


def test_extract_device_nodes_only_when_allowed(tmp_path: Path) -> None:
    stream = tar_bytes((member("null", tarfile.CHRTYPE, 0o666, devmajor=1, devminor=3), None))

    def place(first: tarfile.TarInfo | None) -> tuple[int, str | None]:
        return os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY), None

    done = rootfs_tar.extract(stream, place, None, devices=False)

    assert done.entries == 0 and not (tmp_path / "null").exists()


def test_extract_garbage_is_not_a_tar(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameter, match="not a tar stream"):
        extract_into(tmp_path, io.BytesIO(b"\x01" * 2048))


def test_extract_round_trips_write_path(rootfs: Path, tmp_path: Path) -> None:
    out = io.BytesIO()
    rootfs_tar.write_path(rootfs, "/etc", out, threading.Event(), rootfs_tar.Progress())
    target = tmp_path / "copy"
    target.mkdir()

    extract_into(target, io.BytesIO(out.getvalue()))

    assert (target / "etc" / "passwd").read_bytes() == (rootfs / "etc" / "passwd").read_bytes()


def test_write_path_at_or_under_a_mount_target_is_refused(rootfs: Path) -> None:
    (rootfs / "via").symlink_to("/etc")

    for path in ("/etc", "/etc/passwd", "/via/", "/escape/etc/passwd"):
        with pytest.raises(InvalidParameter, match="on the container's mount /etc"):
            rootfs_tar.write_path(
                rootfs, path, io.BytesIO(), threading.Event(), rootfs_tar.Progress(), ("/etc",)
            )


def test_write_path_above_a_mount_target_is_copied(rootfs: Path) -> None:
    out = io.BytesIO()
    rootfs_tar.write_path(
        rootfs, "/", out, threading.Event(), rootfs_tar.Progress(), ("/etc/passwd",)
    )

    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        assert "./etc" in tar.getnames()


def test_write_path_follow_link_copies_the_target_inside_the_rootfs_under_the_links_name(
    rootfs: Path,
) -> None:
    (rootfs / "pw").symlink_to("/etc/passwd")
    out = io.BytesIO()

    rootfs_tar.write_path(
        rootfs, "/pw", out, threading.Event(), rootfs_tar.Progress(), follow_link=True
    )

    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        (only,) = tar.getmembers()
        assert (only.name, only.isreg()) == ("pw", True)


def test_write_path_follow_link_to_a_host_file_is_not_found(rootfs: Path, host: Path) -> None:
    (rootfs / "stolen").symlink_to(host / "secret")

    with pytest.raises(NotFound):
        rootfs_tar.write_path(
            rootfs, "/stolen", io.BytesIO(), threading.Event(), rootfs_tar.Progress(), (), True
        )
