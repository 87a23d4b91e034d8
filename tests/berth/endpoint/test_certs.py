"""The dev and test stacks' endpoint certificates: written once, private keys, kept when good."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from berth.endpoint.certs import ensure_dev_certificates

FILES = ("ca.pem", "ca-key.pem", "node.pem", "node-key.pem", "client.pem", "client-key.pem")


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ensure_dev_certificates_empty_directory_writes_ca_and_pairs_with_private_keys(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "endpoint"

    assert ensure_dev_certificates(directory) is True

    assert sorted(p.name for p in directory.iterdir() if p.name != ".lock") == sorted(FILES)
    assert mode(directory) == 0o700
    assert all(mode(directory / name) == 0o600 for name in FILES if name.endswith("-key.pem"))
    ca = load(directory / "ca.pem")
    for role in ("node", "client"):
        certificate = load(directory / f"{role}.pem")
        certificate.verify_directly_issued_by(ca)
        common_name = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert common_name == f"berth-{role}"


def test_ensure_dev_certificates_node_pair_covers_loopback_names(tmp_path: Path) -> None:
    ensure_dev_certificates(tmp_path)

    san = load(tmp_path / "node.pem").extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert san.value.get_values_for_type(x509.DNSName) == ["localhost"]


def test_ensure_dev_certificates_second_call_keeps_every_file(tmp_path: Path) -> None:
    ensure_dev_certificates(tmp_path)
    before = {name: (tmp_path / name).read_bytes() for name in FILES}

    assert ensure_dev_certificates(tmp_path) is False

    assert {name: (tmp_path / name).read_bytes() for name in FILES} == before


def test_ensure_dev_certificates_new_host_reissues_node_pair_under_same_ca(tmp_path: Path) -> None:
    ensure_dev_certificates(tmp_path)
    ca = (tmp_path / "ca.pem").read_bytes()
    client = (tmp_path / "client.pem").read_bytes()

    assert ensure_dev_certificates(tmp_path, ("127.0.0.1", "node-7.example")) is True

    assert (tmp_path / "ca.pem").read_bytes() == ca
    assert (tmp_path / "client.pem").read_bytes() == client
    san = load(tmp_path / "node.pem").extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert "node-7.example" in san.value.get_values_for_type(x509.DNSName)


def test_ensure_dev_certificates_pair_of_another_ca_is_replaced(tmp_path: Path) -> None:
    ensure_dev_certificates(tmp_path / "other")
    ensure_dev_certificates(tmp_path / "ours")
    (tmp_path / "ours" / "client.pem").write_bytes((tmp_path / "other" / "client.pem").read_bytes())

    assert ensure_dev_certificates(tmp_path / "ours") is True

    load(tmp_path / "ours" / "client.pem").verify_directly_issued_by(
        load(tmp_path / "ours" / "ca.pem")
    )


def test_ensure_dev_certificates_concurrent_callers_share_one_ca(tmp_path: Path) -> None:
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: ensure_dev_certificates(tmp_path), range(4)))

    ca = load(tmp_path / "ca.pem")
    for role in ("node", "client"):
        load(tmp_path / f"{role}.pem").verify_directly_issued_by(ca)
