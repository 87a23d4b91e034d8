"""--env-file / --label-file and -e as docker reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth.cli.argfiles import env_entries, label_map, read_key_value_file
from berth.cli.usage import UsageError


def test_env_file_skips_comments_and_blanks_keeps_values_as_written(tmp_path: Path) -> None:
    path = tmp_path / "env"
    path.write_text('\ufeff# comment\n\n  A=1\nB="two words"\nC=\nHOME_FROM_SHELL\nUNSET_ONE\n')

    entries = env_entries([str(path)], ["D=4", "A=override"], {"HOME_FROM_SHELL": "/root"})

    assert entries == ["A=1", 'B="two words"', "C=", "HOME_FROM_SHELL=/root", "D=4", "A=override"]


def test_env_flag_without_value_takes_the_shell_s_or_is_left_out() -> None:
    assert env_entries([], ["X", "Y"], {"X": "from-shell"}) == ["X=from-shell"]


def test_label_file_bare_key_is_an_empty_label_later_flags_win(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    path.write_text("tier=front\nflag\nteam=a\n")

    assert label_map([str(path)], ["team=b"]) == {"tier": "front", "flag": "", "team": "b"}


def test_key_value_file_refuses_whitespace_in_keys_missing_files_and_bad_utf8(
    tmp_path: Path,
) -> None:
    spaced = tmp_path / "spaced"
    spaced.write_text("MY VAR=1\n")
    with pytest.raises(UsageError, match="contains whitespaces"):
        read_key_value_file(str(spaced))
    with pytest.raises(UsageError, match="No such file"):
        read_key_value_file(str(tmp_path / "missing"))
    binary = tmp_path / "binary"
    binary.write_bytes(b"A=\xff\n")
    with pytest.raises(UsageError, match="invalid utf8"):
        read_key_value_file(str(binary))
