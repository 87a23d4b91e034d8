"""The generated /etc/hosts, /etc/hostname and /etc/resolv.conf (pure content; files on disk)."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth.errors import InvalidParameter
from berth.runtime.etc_files import (
    FALLBACK_NAMESERVERS,
    EtcFiles,
    NodeResolvConf,
    hosts_content,
    parse_resolv_conf,
    read_node_resolv_conf,
    remove_etc_files,
    resolv_conf_content,
    write_etc_files,
)

NODE = NodeResolvConf(
    nameservers=("127.0.0.53", "10.0.0.2", "::1", "fd00::1"),
    search=("corp.example",),
    options=("edns0", "trust-ad"),
)


def test_parse_resolv_conf_reads_servers_last_search_and_all_options() -> None:
    text = (
        "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2 # office\n"
        "search a.example\nsearch b.example c.example\noptions ndots:2\noptions rotate\n"
    )
    parsed = parse_resolv_conf(text)
    assert parsed == NodeResolvConf(
        ("127.0.0.53", "10.0.0.2"), ("b.example", "c.example"), ("ndots:2", "rotate")
    )


def test_resolv_conf_content_drops_loopback_resolvers_keeps_search_and_options() -> None:
    assert resolv_conf_content(NODE) == (
        "nameserver 10.0.0.2\nnameserver fd00::1\nsearch corp.example\noptions edns0 trust-ad\n"
    )


def test_resolv_conf_content_only_loopback_resolvers_falls_back_to_dockers_defaults() -> None:
    node = NodeResolvConf(("127.0.0.53",), (), ())
    expected = "".join(f"nameserver {server}\n" for server in FALLBACK_NAMESERVERS)
    assert resolv_conf_content(node) == expected


def test_resolv_conf_content_each_given_part_replaces_the_nodes() -> None:
    content = resolv_conf_content(NODE, dns=["1.1.1.1"], dns_options=["ndots:3"])
    assert content == "nameserver 1.1.1.1\nsearch corp.example\noptions ndots:3\n"
    searched = resolv_conf_content(NODE, dns_search=["x.example", "y.example"])
    assert "search x.example y.example\n" in searched


def test_resolv_conf_content_search_dot_clears_the_search_list() -> None:
    assert "search" not in resolv_conf_content(NODE, dns_search=["."])


def test_hosts_content_lists_localhost_extras_then_own_address() -> None:
    content = hosts_content(
        "web.example", "10.1.0.5", ["db:10.1.0.9", "gw:host-gateway"], "10.1.0.1"
    )
    lines = content.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert lines[-3:] == ["10.1.0.9\tdb", "10.1.0.1\tgw", "10.1.0.5\tweb.example web"]


def test_hosts_content_without_address_has_no_own_entry() -> None:
    assert "web" not in hosts_content("web", None)


def test_hosts_content_host_gateway_without_bridge_raises_invalid_parameter() -> None:
    with pytest.raises(InvalidParameter, match="host-gateway"):
        hosts_content("web", None, ["gw:host-gateway"], None)


def test_write_etc_files_twice_leaves_whole_world_readable_files(tmp_path: Path) -> None:
    files = EtcFiles(tmp_path / "c1")
    write_etc_files(files, {"hostname": "old\n", "hosts": "h\n", "resolv.conf": "r\n"})
    write_etc_files(files, {"hostname": "new\n", "hosts": "h\n", "resolv.conf": "r\n"})
    assert files.hostname.read_text() == "new\n"
    assert files.complete()
    assert {p.name for p in files.directory.iterdir()} == {"hostname", "hosts", "resolv.conf"}
    assert files.hosts.stat().st_mode & 0o777 == 0o644


def test_write_etc_files_unknown_name_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_etc_files(EtcFiles(tmp_path / "c1"), {"passwd": "root\n"})


def test_remove_etc_files_twice_converges(tmp_path: Path) -> None:
    files = EtcFiles(tmp_path / "c1")
    write_etc_files(files, {"hostname": "a\n"})
    assert remove_etc_files(files) is True
    assert remove_etc_files(files) is False
    assert not files.directory.exists()


def test_etc_files_incomplete_when_one_is_missing(tmp_path: Path) -> None:
    files = EtcFiles(tmp_path / "c1")
    write_etc_files(files, {"hostname": "a\n", "hosts": "b\n"})
    assert not files.complete()


def test_read_node_resolv_conf_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_node_resolv_conf(tmp_path / "none") == NodeResolvConf((), (), ())


def test_resolv_conf_content_on_host_network_keeps_loopback_resolvers() -> None:
    content = resolv_conf_content(NODE, host_network=True)
    assert content.startswith("nameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\n")


def test_hosts_content_with_base_starts_from_the_nodes_file() -> None:
    content = hosts_content(
        "web", None, ["db:10.0.0.9"], None, base="127.0.0.1 localhost\n10.1.1.1 node\n"
    )
    assert content == "127.0.0.1 localhost\n10.1.1.1 node\n10.0.0.9\tdb\n"
