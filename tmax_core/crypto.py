"""Primitives shared by identity, invites and envelopes (DESIGN §5).

Node ids are Ethereum addresses of secp256k1 keys; signatures are 65-byte
recoverable ECDSA over ``keccak256(domain || length-prefixed parts)``.

Addresses and their EIP-55 checksums come from eth-keys / eth-utils; signing,
recovery and ECDH stay on coincurve (eth-keys' own signing is ~3x slower).
Keccak-256 is eth-hash's pysha3 backend (C), for our digests and for
eth-keys': see :data:`HASH_BACKEND_ENV`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from typing import TYPE_CHECKING, cast

import coincurve
from coincurve.utils import get_valid_secret
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_hash.backends.pysha3 import keccak256 as _pysha3_keccak256

from tmax_core.errors import UsageError

if TYPE_CHECKING:
    from eth_typing import Address, ChecksumAddress

NODE_ID_LEN = 20
PUBLIC_KEY_LEN = 33
SIGNATURE_LEN = 65

_NODE_ID_RE = re.compile(r"0[xX][0-9a-fA-F]{40}")
_HEX_ID_RE = re.compile(r"(?:0[xX])?([0-9a-fA-F]*)")

# eth-keys and eth-utils hash through ``eth_hash.auto``, which picks its
# backend on first use: pycryptodome (~6x slower) when it is installed,
# unless this variable names one. A user's explicit choice is kept.
HASH_BACKEND_ENV = "ETH_HASH_BACKEND"
os.environ.setdefault(HASH_BACKEND_ENV, "pysha3")


class Domain:
    """Signature / KDF domain tags: one per use, so a signature for one purpose
    can never be replayed as another."""

    INVITE = b"tmax-mesh/v1/invite"
    ENVELOPE = b"tmax-mesh/v1/envelope"
    ACK = b"tmax-mesh/v1/ack"
    ACK_BATCH = b"tmax-mesh/v1/ack-batch"
    HOST_REGISTER = b"tmax-mesh/v1/host-register"
    SEAL = b"tmax-mesh/v1/seal"
    KEYSTORE = b"tmax-mesh/v1/keystore"
    INVITE_PROOF = b"tmax-mesh/v1/invite-proof"


def keccak256(data: bytes) -> bytes:
    return _pysha3_keccak256(data)


def address_from_public_key(public_key: bytes) -> Address:
    """Ethereum address of a 33- or 65-byte SEC1 public key (ValueError if invalid)."""
    # Deferred: eth-keys imports pydantic (~0.1 s), and every CLI run imports this module.
    from eth_keys import keys

    if not isinstance(public_key, bytes | bytearray) or len(public_key) not in (33, 65):
        raise ValueError("public key must be 33 (compressed) or 65 (uncompressed) bytes")
    try:
        # coincurve checks the point is on the curve (eth-keys checks only the length).
        uncompressed = coincurve.PublicKey(bytes(public_key)).format(compressed=False)
    except Exception as exc:
        raise ValueError(f"invalid public key: {exc}") from None
    return cast("Address", keys.PublicKey(uncompressed[1:]).to_canonical_address())


@functools.lru_cache(maxsize=4096)  # hot: every status reply and log line names a node
def to_checksum(node_id: bytes) -> ChecksumAddress:
    """EIP-55 checksummed ``0x...`` form of a 20-byte node id."""
    from eth_utils import to_checksum_address  # deferred, as in address_from_public_key

    if len(node_id) != NODE_ID_LEN:
        raise ValueError("node id must be 20 bytes")
    return to_checksum_address(node_id)


def looks_like_node_id(text: object) -> bool:
    return isinstance(text, str) and _NODE_ID_RE.fullmatch(text.strip()) is not None


def parse_hex_id(text: str, what: str, length: int) -> bytes:
    """An id of ``length`` bytes written in hex (``0x`` optional, any case,
    white space around it ignored); else a one-line UsageError naming ``what``."""
    match = _HEX_ID_RE.fullmatch(text.strip())
    if match is None:
        raise UsageError(f"{what} must be hex, got {text!r}")
    if len(match[1]) != 2 * length:
        raise UsageError(f"{what} must be {length} bytes ({2 * length} hex digits), got {text!r}")
    return bytes.fromhex(match[1])


def parse_node_id(text: str) -> bytes:
    """``0x`` + 40 hex digits (any case) -> 20 bytes; else UsageError. The
    ``0x`` is required: it is what tells a node id from an alias."""
    if not looks_like_node_id(text):
        raise UsageError(f"not a node id: {text!r} (expected 0x followed by 40 hex digits)")
    return parse_hex_id(text, "node id", NODE_ID_LEN)


def signing_digest(domain: bytes, *parts: bytes) -> bytes:
    """keccak256(domain || for each part: u32be(len) || part)."""
    chunks = [domain]
    for part in parts:
        chunks.append(len(part).to_bytes(4, "big"))
        chunks.append(part)
    return keccak256(b"".join(chunks))


def sign(private_key: coincurve.PrivateKey, domain: bytes, *parts: bytes) -> bytes:
    """65-byte recoverable signature over :func:`signing_digest`."""
    return private_key.sign_recoverable(signing_digest(domain, *parts), hasher=None)


def recover_public_key(signature: bytes, domain: bytes, *parts: bytes) -> bytes:
    """Compressed (33-byte) public key that produced ``signature``; ValueError if none."""
    if not isinstance(signature, bytes | bytearray) or len(signature) != SIGNATURE_LEN:
        raise ValueError("signature must be 65 bytes")
    try:
        pub = coincurve.PublicKey.from_signature_and_message(
            bytes(signature), signing_digest(domain, *parts), hasher=None
        )
    except Exception as exc:
        raise ValueError(f"invalid signature: {exc}") from None
    return pub.format(compressed=True)


def verify(signature: bytes, public_key: bytes, domain: bytes, *parts: bytes) -> bool:
    """True iff ``signature`` over the parts was made by ``public_key`` (never raises)."""
    try:
        if len(public_key) != PUBLIC_KEY_LEN:
            public_key = coincurve.PublicKey(bytes(public_key)).format(compressed=True)
        return recover_public_key(signature, domain, *parts) == bytes(public_key)
    except Exception:
        return False


def ephemeral_ecdh(peer_public_key: bytes) -> tuple[bytes, bytes]:
    """A one-time key pair's ``(compressed public key, ECDH secret with the peer)``.

    Same secret as ``coincurve.PrivateKey().ecdh(peer)`` (sha256 of the
    compressed shared point) at two thirds of the cost: ``PrivateKey()`` also
    derives an x-only key that a one-time key never uses. ValueError if the
    peer key is invalid.
    """
    secret = get_valid_secret()
    public = coincurve.PublicKey.from_valid_secret(secret).format(compressed=True)
    try:
        point = _parsed_public_key(bytes(peer_public_key)).multiply(secret)
    except Exception as exc:
        raise ValueError(f"invalid public key: {exc}") from None
    return public, hashlib.sha256(point.format(compressed=True)).digest()


@functools.lru_cache(maxsize=1024)
def _parsed_public_key(public_key: bytes) -> coincurve.PublicKey:
    """A validated public key object, cached: a node seals to the same friends'
    keys over and over, and parsing one costs about 10 µs (invalid keys raise,
    and are not cached)."""
    return coincurve.PublicKey(public_key)


def ecdh(private_key: coincurve.PrivateKey, public_key: bytes) -> bytes:
    """32-byte shared secret (coincurve: sha256 of the compressed shared point)."""
    return private_key.ecdh(public_key)


def hkdf_sha256(ikm: bytes, *, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 HKDF-SHA256 via ``cryptography``."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)
