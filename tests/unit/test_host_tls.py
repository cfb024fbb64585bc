"""The host's reloadable TLS pair: a certificate and a key that do not belong
together are refused at start and on reload (the current pair stays)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tmax_mesh_relay.hosttls import HostError, ReloadableTls, read_pair


def pair(name: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def write(tmp_path: Path, cert: bytes, key: bytes) -> tuple[Path, Path]:
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert)
    key_path.write_bytes(key)
    return cert_path, key_path


def test_a_reload_with_a_key_that_does_not_match_keeps_the_current_certificate(tmp_path: Path) -> None:
    cert_a, key_a = pair("a")
    cert_b, key_b = pair("b")
    cert, key = write(tmp_path, cert_a, key_a)
    tls = ReloadableTls(str(cert), str(key))
    before = tls.cert_sha256
    cert.write_bytes(cert_b)  # a renewal caught half-written: new certificate, old key
    assert tls.reload() is False
    assert tls.cert_sha256 == before
    key.write_bytes(key_b)  # the renewal completes
    assert tls.reload() is True
    assert tls.cert_sha256 != before


def test_a_mismatched_pair_at_start_is_one_line_naming_both_files(tmp_path: Path) -> None:
    cert_a, _ = pair("a")
    _, key_b = pair("b")
    cert, key = write(tmp_path, cert_a, key_b)
    with pytest.raises(HostError, match=r"is not the key of the certificate in --tls-cert"):
        read_pair(str(cert), str(key))
