"""The host's TLS certificate, reloadable: ``SIGHUP`` makes ``tmax-host`` read
``--tls-cert``/``--tls-key`` again (a renewed certificate) without dropping a
connection. New handshakes present the new certificate (gRPC asks
:meth:`ReloadableTls.fetch` before each); established connections keep theirs.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

import grpc

log = logging.getLogger("tmax_mesh.host")


class HostError(Exception):
    """A start-up problem of the host, told in one line (exit 1)."""


def read_pair(cert_path: str, key_path: str) -> tuple[bytes, bytes, bytes]:
    """The PEM certificate chain and key, checked, and the SHA-256 of the leaf
    certificate (DER), which registrations must be signed for."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

    def read(flag: str, path: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as err:
            raise HostError(f"cannot read {flag} {path}: {err.strerror}") from None

    cert, key = read("--tls-cert", cert_path), read("--tls-key", key_path)
    try:
        leaf = x509.load_pem_x509_certificates(cert)[0]
    except ValueError:
        raise HostError(f"--tls-cert {cert_path} holds no PEM certificate") from None
    try:
        private_key = load_pem_private_key(key, password=None)
    except (ValueError, TypeError):
        raise HostError(f"--tls-key {key_path} holds no unencrypted PEM private key") from None
    spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if private_key.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        # e.g. a renewal caught half-written: a new certificate, the old key
        raise HostError(f"--tls-key {key_path} is not the key of the certificate in --tls-cert {cert_path}")
    return cert, key, hashlib.sha256(leaf.public_bytes(Encoding.DER)).digest()


class ReloadableTls:
    """Server credentials whose certificate :meth:`reload` replaces."""

    def __init__(self, cert_path: str, key_path: str) -> None:
        self.cert_path, self.key_path = cert_path, key_path
        cert, key, self.cert_sha256 = read_pair(cert_path, key_path)
        self._lock = threading.Lock()  # fetch() runs on gRPC's threads
        self._next: grpc.ServerCertificateConfiguration | None = None
        self.credentials = grpc.dynamic_ssl_server_credentials(
            grpc.ssl_server_certificate_configuration([(key, cert)]), self.fetch
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's question before a handshake: the new configuration once after a reload, else None."""
        with self._lock:
            config, self._next = self._next, None
        return config

    def reload(self) -> bool:
        """Read the files again; on a problem keep the current certificate and
        log why. Returns whether the new one is in use for new connections."""
        try:
            cert, key, digest = read_pair(self.cert_path, self.key_path)
        except HostError as err:
            log.error("TLS certificate not reloaded, the current one stays: %s", err)
            return False
        with self._lock:
            self._next = grpc.ssl_server_certificate_configuration([(key, cert)])
        self.cert_sha256 = digest
        log.info("TLS certificate reloaded from %s (sha256 %s)", self.cert_path, digest.hex())
        return True
