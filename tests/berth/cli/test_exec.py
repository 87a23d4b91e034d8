"""berth exec/attach's client side: docker's detach keys found across reads."""

from __future__ import annotations

from berth.cli.exec import DetachKeys


def test_detach_keys_in_one_read_end_it_and_keep_what_came_before() -> None:
    assert DetachKeys().feed(b"ls\r\x10\x11after") == (b"ls\r", True)


def test_detach_keys_split_across_reads_are_found() -> None:
    keys = DetachKeys()

    assert keys.feed(b"abc\x10") == (b"abc", False)
    assert keys.feed(b"\x11") == (b"", True)


def test_detach_keys_ctrl_p_alone_is_sent_on_with_the_next_read() -> None:
    keys = DetachKeys()

    assert keys.feed(b"\x10") == (b"", False)
    assert keys.feed(b"x") == (b"\x10x", False)


def test_detach_keys_plain_input_passes_through() -> None:
    assert DetachKeys().feed(b"echo hi\r") == (b"echo hi\r", False)
