"""The node's long-term identity and its encrypted keystore (DESIGN §5).

``node.key`` holds the secp256k1 secret encrypted with a key derived from the
*recovery key* (32 random bytes in its own file). Losing or mismatching the
recovery key is an error, never a reason to generate a new identity.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import coincurve
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from tmax_core import clock, crypto
from tmax_core.atomicfile import write_atomic
from tmax_core.crypto import Domain
from tmax_core.errors import KeystoreError

if TYPE_CHECKING:
    from eth_typing import Address, ChecksumAddress

KEYSTORE_VERSION = 1
NODE_KEY_NAME = "node.key"
RECOVERY_KEY_NAME = "recovery.key"
RECOVERY_KEY_LEN = 32
KDF_NAME = "hkdf-sha256"
CIPHER_NAME = "chacha20-poly1305"
_HEADER_FIELDS = ("version", "address", "public_key", "created_at_ms", "kdf", "cipher", "salt", "nonce")


@dataclass(frozen=True)
class NodeIdentity:
    """The node's key pair and address. The private key stays a coincurve key:
    signing and ECDH run on it for every message, about 3x faster than through
    eth-keys; the address and its checksum come from eth-keys (:mod:`tmax_core.crypto`)."""

    private_key: coincurve.PrivateKey = field(repr=False)
    public_key: bytes
    node_id: Address
    created_at_ms: int

    @classmethod
    def from_secret(cls, secret: bytes, created_at_ms: int) -> NodeIdentity:
        private_key = coincurve.PrivateKey(secret)
        public_key = private_key.public_key.format(compressed=True)
        return cls(private_key, public_key, crypto.address_from_public_key(public_key), created_at_ms)

    @classmethod
    def generate(cls) -> NodeIdentity:
        return cls.from_secret(coincurve.PrivateKey().secret, clock.now_ms())

    @property
    def node_id_hex(self) -> ChecksumAddress:
        return crypto.to_checksum(self.node_id)

    def sign(self, domain: bytes, *parts: bytes) -> bytes:
        return crypto.sign(self.private_key, domain, *parts)


# ---------------------------------------------------------------- file helpers


def write_private_file(path: Path, data: bytes) -> None:
    """Atomically write ``data`` to ``path`` with mode 0600 (temp + fsync + rename)."""
    path = Path(path)
    try:
        write_atomic(path, data, 0o600)
    except OSError as exc:
        raise KeystoreError(f"cannot write {path}: {exc.strerror or exc}") from None


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KeystoreError(f"cannot read {path}: {exc.strerror or exc}") from None


# ---------------------------------------------------------------- keystore format


def _kek(recovery_key: bytes, salt: bytes) -> bytes:
    return crypto.hkdf_sha256(recovery_key, salt=salt, info=Domain.KEYSTORE)


def _header_ad(header: dict) -> bytes:
    """Canonical bytes of the header fields: authenticated as AEAD associated data."""
    return json.dumps({k: header[k] for k in _HEADER_FIELDS}, sort_keys=True, separators=(",", ":")).encode()


def encrypt_keystore(identity: NodeIdentity, recovery_key: bytes) -> bytes:
    salt, nonce = os.urandom(16), os.urandom(12)
    header = {
        "version": KEYSTORE_VERSION,
        "address": identity.node_id_hex,
        "public_key": identity.public_key.hex(),
        "created_at_ms": identity.created_at_ms,
        "kdf": KDF_NAME,
        "cipher": CIPHER_NAME,
        "salt": salt.hex(),
        "nonce": nonce.hex(),
    }
    key = _kek(recovery_key, salt)
    ct = ChaCha20Poly1305(key).encrypt(nonce, identity.private_key.secret, _header_ad(header))
    doc = dict(header, ciphertext=ct.hex())
    return (json.dumps(doc, indent=2) + "\n").encode()


def decrypt_keystore(data: bytes, recovery_key: bytes, path: Path) -> NodeIdentity:
    """Parse and decrypt keystore bytes; any problem -> KeystoreError naming ``path``."""

    def bad(why: str) -> KeystoreError:
        return KeystoreError(f"cannot unlock node key {path}: {why}")

    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise bad("file is corrupt or truncated (not valid JSON)") from None
    if not isinstance(doc, dict):
        raise bad("file is corrupt (not a keystore object)")
    if doc.get("version") != KEYSTORE_VERSION:
        raise bad(f"unsupported keystore version {doc.get('version')!r}")
    missing = [k for k in (*_HEADER_FIELDS, "ciphertext") if k not in doc]
    if missing:
        raise bad(f"file is corrupt (missing {', '.join(missing)})")
    if doc["kdf"] != KDF_NAME or doc["cipher"] != CIPHER_NAME:
        raise bad(f"unsupported kdf/cipher {doc['kdf']!r}/{doc['cipher']!r}")
    try:
        salt = bytes.fromhex(doc["salt"])
        nonce = bytes.fromhex(doc["nonce"])
        ct = bytes.fromhex(doc["ciphertext"])
        created = doc["created_at_ms"]
        if not isinstance(created, int) or isinstance(created, bool):
            raise ValueError("created_at_ms")
        ad = _header_ad(doc)
    except (TypeError, ValueError, AttributeError):
        raise bad("file is corrupt (bad field encoding)") from None
    if len(nonce) != 12 or len(salt) != 16:
        raise bad("file is corrupt (bad salt/nonce length)")
    try:
        secret = ChaCha20Poly1305(_kek(recovery_key, salt)).decrypt(nonce, ct, ad)
    except InvalidTag:
        raise bad("wrong recovery key, or the file was tampered with") from None
    try:
        identity = NodeIdentity.from_secret(secret, created)
    except Exception:
        raise bad("decrypted secret is not a valid key") from None
    if identity.node_id_hex != doc["address"] or identity.public_key.hex() != doc["public_key"]:
        raise bad("stored address does not match the decrypted key")
    return identity


# ---------------------------------------------------------------- load / create


def _paths(state_dir: Path, recovery_key_path: Path | None) -> tuple[Path, Path]:
    state_dir = Path(state_dir)
    rk = Path(recovery_key_path) if recovery_key_path is not None else state_dir / RECOVERY_KEY_NAME
    return state_dir / NODE_KEY_NAME, rk


def _read_recovery_key(rk_path: Path) -> bytes | None:
    data = _read(rk_path)
    if data is not None and len(data) != RECOVERY_KEY_LEN:
        raise KeystoreError(
            f"recovery key {rk_path} is invalid: expected {RECOVERY_KEY_LEN} bytes, found {len(data)}"
        )
    return data


def load(state_dir: Path, recovery_key_path: Path | None = None) -> NodeIdentity:
    """Load the existing identity; never creates anything."""
    key_path, rk_path = _paths(state_dir, recovery_key_path)
    data = _read(key_path)
    if data is None:
        raise KeystoreError(f"no node key at {key_path}")
    recovery_key = _read_recovery_key(rk_path)
    if recovery_key is None:
        raise KeystoreError(
            f"recovery key {rk_path} is missing: the identity in {key_path} can't be unlocked"
        )
    return decrypt_keystore(data, recovery_key, key_path)


def load_or_create(state_dir: Path, recovery_key_path: Path | None = None) -> NodeIdentity:
    """Load the identity, creating recovery key and node key only when no node key exists."""
    key_path, rk_path = _paths(state_dir, recovery_key_path)
    if _read(key_path) is not None:
        return load(state_dir, recovery_key_path)
    recovery_key = _read_recovery_key(rk_path)
    if recovery_key is None:
        recovery_key = os.urandom(RECOVERY_KEY_LEN)
        _ensure_dir(rk_path.parent)
        write_private_file(rk_path, recovery_key)
    _ensure_dir(key_path.parent)
    identity = NodeIdentity.generate()
    write_private_file(key_path, encrypt_keystore(identity, recovery_key))
    return identity


def _ensure_dir(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise KeystoreError(f"cannot create directory {directory}: {exc.strerror or exc}") from None
