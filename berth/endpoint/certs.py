"""The dev and test stacks' certificates for the node endpoint: a CA, a node pair, a client pair.

A deployment brings its own CA and pairs (``endpoint_tls_*`` settings); the dev stack
(``scripts/dev up``) and the test suite's stack write theirs with :func:`ensure_dev_certificates`
under ``<state_dir>/endpoint/``, where agents and clients look when nothing is set
(``berth.endpoint.tls``). Keys are EC P-256, written 0600; the directory is 0700.
"""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from berth.endpoint.tls import CA_FILE, CA_KEY_FILE, Role

# Where a dev stack's node endpoint is reached: loopback.
DEV_HOSTS = ("127.0.0.1", "::1", "localhost")
CA_DAYS = 3650
PAIR_DAYS = 365
# A certificate closer than this to its end is issued again by ensure_dev_certificates.
RENEW_BEFORE = datetime.timedelta(days=7)
# The subject CN of each role's dev certificate (the endpoint logs the client's with each call).
COMMON_NAMES: dict[Role, str] = {"node": "berth-node", "client": "berth-client"}
KEY_MODE = 0o600
DIRECTORY_MODE = 0o700


@dataclass(frozen=True)
class Authority:
    """A CA's certificate and key, which sign the pairs."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Berth"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def new_authority(common_name: str = "Berth endpoint dev CA") -> Authority:
    """A fresh self-signed CA (for the dev stack, or a test's other CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return Authority(certificate, key)


def issue_pair(
    authority: Authority, role: Role, hosts: Sequence[str] = DEV_HOSTS
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate and key for ``role`` signed by ``authority``: a node's serves TLS for
    ``hosts`` (its subject alternative names), a client's authenticates a client."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if role == "node" else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(COMMON_NAMES[role]))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=PAIR_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()),
            critical=False,
        )
    )
    if role == "node":
        builder = builder.add_extension(_san(hosts), critical=False)
    return builder.sign(authority.key, hashes.SHA256()), key


def certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``path`` whole or not at all (a temporary file renamed over it), with ``mode``."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_pair(
    directory: Path, name: str, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    """``<name>.pem`` and ``<name>-key.pem`` (0600) in ``directory``; the key first, so a
    certificate on disk always has its key beside it."""
    write_file(directory / f"{name}-key.pem", key_pem(key), KEY_MODE)
    write_file(directory / f"{name}.pem", certificate_pem(certificate))


def _load_authority(directory: Path) -> Authority | None:
    try:
        certificate = x509.load_pem_x509_certificate((directory / CA_FILE).read_bytes())
        key = serialization.load_pem_private_key(
            (directory / CA_KEY_FILE).read_bytes(), password=None
        )
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or _expiring(certificate):
        return None
    return Authority(certificate, key)


def _expiring(certificate: x509.Certificate) -> bool:
    return certificate.not_valid_after_utc - RENEW_BEFORE < _now()


def _pair_is_current(
    directory: Path, role: Role, authority: Authority, hosts: Sequence[str]
) -> bool:
    """Whether ``role``'s pair is there, signed by ``authority``, not expiring, with its key,
    and (a node's) covering ``hosts``."""
    try:
        certificate = x509.load_pem_x509_certificate((directory / f"{role}.pem").read_bytes())
        key = serialization.load_pem_private_key(
            (directory / f"{role}-key.pem").read_bytes(), password=None
        )
    except (OSError, ValueError):
        return False
    if certificate.issuer != authority.certificate.subject or _expiring(certificate):
        return False
    try:
        certificate.verify_directly_issued_by(authority.certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        return False
    if role == "client":
        return True
    try:
        covered = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return False
    return set(_san(hosts)) <= set(covered.value)


def ensure_dev_certificates(directory: Path, hosts: Sequence[str] = DEV_HOSTS) -> bool:
    """Make sure ``directory`` holds a CA (``ca.pem``, ``ca-key.pem``), a node pair for
    ``hosts`` (``node.pem``, ``node-key.pem``) and a client pair (``client.pem``,
    ``client-key.pem``), all current; keeps what is there and good (idempotent).

    Returns:
        Whether anything was written.
    """
    directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    os.chmod(directory, DIRECTORY_MODE)
    # Two callers at once (two `scripts/dev up`) would each write a CA and mix the pairs.
    with open(directory / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure_locked(directory, hosts)


def _ensure_locked(directory: Path, hosts: Sequence[str]) -> bool:
    wrote = False
    authority = _load_authority(directory)
    if authority is None:
        authority = new_authority()
        write_file(directory / CA_KEY_FILE, key_pem(authority.key), KEY_MODE)
        write_file(directory / CA_FILE, certificate_pem(authority.certificate))
        wrote = True
    roles: tuple[Role, ...] = ("node", "client")
    for role in roles:
        if not _pair_is_current(directory, role, authority, hosts):
            write_pair(directory, role, *issue_pair(authority, role, hosts))
            wrote = True
    return wrote
