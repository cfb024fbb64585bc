"""Sealed, signed envelopes and signed acks (DESIGN §7).

Wire: ``Envelope{header, ciphertext, signature}`` where ``header`` is the
serialized :class:`EnvelopeHeader` exactly as signed and used as AEAD
associated data. :func:`parse` does structure only (no crypto) so the ingress
pipeline can run cheap checks first; :func:`verify` and :func:`open_content`
do the expensive parts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Collection
from dataclasses import dataclass
from functools import cached_property

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from tmax_core import clock, crypto
from tmax_core.crypto import Domain
from tmax_core.errors import EnvelopeError, Reason
from tmax_core.identity import NodeIdentity
from tmax_core.invites import token_id_of
from tmax_core.proto import mesh_pb2

# 2: acks answer an exact envelope (envelope_hash), first contact carries the
# token sealed inside and only its id and proof in the clear. A version-1 peer
# is refused as malformed ("unsupported version"), not misunderstood.
VERSION = 2
MESSAGE_ID_LEN = 16
TOKEN_ID_LEN = 16
PROOF_LEN = 32
MAX_ACK_BYTES = 64 * 1024
BODY_HEADROOM = 4096  # envelope header, keys, signature and contact card around a body
_TAG_LEN = 16
# Every message derives a fresh key from a fresh ephemeral key pair (and a
# random message_id as HKDF salt), so each key encrypts exactly one plaintext:
# a fixed nonce can never repeat under the same key.
_ZERO_NONCE = bytes(12)


def _content_key(shared: bytes, message_id: bytes, from_id: bytes, to_id: bytes, eph_pub: bytes) -> bytes:
    return crypto.hkdf_sha256(shared, salt=message_id, info=Domain.SEAL + from_id + to_id + eph_pub)


def envelope_hash(data: bytes) -> bytes:
    """What an ack names the envelope it answers by: SHA-256 of its exact bytes."""
    return hashlib.sha256(data).digest()


def invite_proof_key(invite: bytes) -> bytes:
    """The key of :func:`invite_proof` for a serialized SignedInvite."""
    return hashlib.sha256(Domain.INVITE_PROOF + invite).digest()


def invite_proof(
    key: bytes, message_id: bytes, from_id: bytes, to_id: bytes, timestamp_ms: int, eph_pub: bytes
) -> bytes:
    """Proof that a first-contact envelope's sender holds the invite token (not
    just its id, which relays see), bound to this one envelope; checked with
    an HMAC, before any public-key operation. Every field has a fixed length."""
    data = message_id + from_id + to_id + timestamp_ms.to_bytes(8, "big") + eph_pub
    return hmac.new(key, data, hashlib.sha256).digest()


def seal(
    identity: NodeIdentity,
    *,
    to_node_id: bytes,
    to_public_key: bytes,
    scope: str,
    content_type: str,
    body: bytes,
    reply_to: bytes = b"",
    contact: mesh_pb2.ContactCard | None = None,
    invite: bytes = b"",
    message_id: bytes | None = None,
    timestamp_ms: int | None = None,
    ephemeral: tuple[bytes, bytes] | None = None,
) -> bytes:
    """Encrypt ``body`` to ``to_public_key`` and sign; returns serialized Envelope bytes.

    ``invite``: on first contact, the serialized SignedInvite. It is sealed
    inside; only its token id goes in the clear header, so a relay that sees
    the envelope cannot use the token (DESIGN §7).

    ``ephemeral``: a one-time ``(public key, ECDH secret with to_public_key)``
    made ahead (see :mod:`tmax_core.ephemeral`), never used before; by default
    a new one is made here."""
    if message_id is None:
        message_id = os.urandom(MESSAGE_ID_LEN)
    if timestamp_ms is None:
        timestamp_ms = clock.now_ms()
    try:
        eph_pub, shared = ephemeral or crypto.ephemeral_ecdh(to_public_key)
    except ValueError as exc:
        raise ValueError(f"invalid recipient public key: {exc}") from None
    header_bytes = mesh_pb2.EnvelopeHeader(
        version=VERSION,
        message_id=message_id,
        from_node_id=identity.node_id,
        to_node_id=to_node_id,
        timestamp_ms=timestamp_ms,
        sender_public_key=identity.public_key,
        ephemeral_public_key=eph_pub,
        invite_token_id=token_id_of(invite) if invite else b"",
        invite_proof=(
            invite_proof(
                invite_proof_key(invite), message_id, identity.node_id, to_node_id, timestamp_ms, eph_pub
            )
            if invite
            else b""
        ),
    ).SerializeToString()
    content = mesh_pb2.SealedContent(
        scope=scope, content_type=content_type, body=body, reply_to=reply_to, invite=invite
    )
    if contact is not None:
        content.contact.CopyFrom(contact)
    key = _content_key(shared, message_id, identity.node_id, to_node_id, eph_pub)
    ciphertext = ChaCha20Poly1305(key).encrypt(_ZERO_NONCE, content.SerializeToString(), header_bytes)
    signature = identity.sign(Domain.ENVELOPE, header_bytes, ciphertext)
    return mesh_pb2.Envelope(
        header=header_bytes, ciphertext=ciphertext, signature=signature
    ).SerializeToString()


@dataclass
class ParsedEnvelope:
    """A structurally valid envelope; nothing about it is verified yet."""

    raw: bytes
    header_bytes: bytes
    header: mesh_pb2.EnvelopeHeader
    ciphertext: bytes
    signature: bytes

    @property
    def message_id(self) -> bytes:
        return self.header.message_id

    @property
    def from_node_id(self) -> bytes:
        return self.header.from_node_id

    @property
    def to_node_id(self) -> bytes:
        return self.header.to_node_id

    @property
    def timestamp_ms(self) -> int:
        return self.header.timestamp_ms

    @property
    def sender_public_key(self) -> bytes:
        return self.header.sender_public_key

    @property
    def invite_token_id(self) -> bytes:
        return self.header.invite_token_id

    def proves_invite(self, key: bytes) -> bool:
        """Whether the header's invite proof was made with ``key`` (see :func:`invite_proof`)."""
        h = self.header
        expected = invite_proof(
            key, h.message_id, h.from_node_id, h.to_node_id, h.timestamp_ms, h.ephemeral_public_key
        )
        return hmac.compare_digest(expected, h.invite_proof)

    @property
    def size(self) -> int:
        return len(self.raw)

    @cached_property
    def digest(self) -> bytes:
        """:func:`envelope_hash` of the exact bytes received."""
        return envelope_hash(self.raw)


def _malformed(detail: str) -> EnvelopeError:
    return EnvelopeError(f"malformed envelope: {detail}", code=Reason.MALFORMED)


def parse(data: bytes, max_bytes: int) -> ParsedEnvelope:
    """Size check first, then protobuf decode and field-shape checks. No crypto."""
    if len(data) > max_bytes:
        raise EnvelopeError(
            f"envelope too large: {len(data)} bytes > limit {max_bytes}", code=Reason.TOO_LARGE
        )
    try:
        env = mesh_pb2.Envelope.FromString(data)
        header = mesh_pb2.EnvelopeHeader.FromString(env.header)
    except Exception:
        raise _malformed("not a valid protobuf Envelope") from None
    if header.version != VERSION:
        raise _malformed(f"unsupported version {header.version} (expected {VERSION})")
    if len(header.message_id) != MESSAGE_ID_LEN:
        raise _malformed(f"message_id must be {MESSAGE_ID_LEN} bytes, got {len(header.message_id)}")
    if len(header.from_node_id) != crypto.NODE_ID_LEN:
        raise _malformed(f"from_node_id must be 20 bytes, got {len(header.from_node_id)}")
    if len(header.to_node_id) != crypto.NODE_ID_LEN:
        raise _malformed(f"to_node_id must be 20 bytes, got {len(header.to_node_id)}")
    if len(header.sender_public_key) != crypto.PUBLIC_KEY_LEN:
        raise _malformed(f"sender_public_key must be 33 bytes, got {len(header.sender_public_key)}")
    if len(header.ephemeral_public_key) != crypto.PUBLIC_KEY_LEN:
        raise _malformed(f"ephemeral_public_key must be 33 bytes, got {len(header.ephemeral_public_key)}")
    if len(header.invite_token_id) not in (0, TOKEN_ID_LEN):
        raise _malformed(f"invite_token_id must be {TOKEN_ID_LEN} bytes, got {len(header.invite_token_id)}")
    if len(header.invite_proof) != (PROOF_LEN if header.invite_token_id else 0):
        raise _malformed("invite_proof must be 32 bytes with an invite_token_id, and absent without one")
    if len(env.signature) != crypto.SIGNATURE_LEN:
        raise _malformed(f"signature must be 65 bytes, got {len(env.signature)}")
    if len(env.ciphertext) < _TAG_LEN:
        raise _malformed("ciphertext is missing or shorter than the AEAD tag")
    return ParsedEnvelope(
        raw=data, header_bytes=env.header, header=header, ciphertext=env.ciphertext, signature=env.signature
    )


def verify(parsed: ParsedEnvelope, *, key_is_bound: bool = False) -> None:
    """Check id↔key binding, then the signature over header and ciphertext.

    ``key_is_bound``: the caller already knows this key belongs to this id (it
    is the stored key of the friend with that id), so the address derivation
    is skipped."""
    header = parsed.header
    if not key_is_bound:
        _check_binding(header)
    if not crypto.verify(
        parsed.signature, header.sender_public_key, Domain.ENVELOPE, parsed.header_bytes, parsed.ciphertext
    ):
        raise EnvelopeError("envelope signature is invalid", code=Reason.BAD_SIGNATURE)


def _check_binding(header: mesh_pb2.EnvelopeHeader) -> None:
    try:
        address = crypto.address_from_public_key(header.sender_public_key)
    except ValueError:
        raise EnvelopeError("sender public key is not a valid key", code=Reason.ID_KEY_MISMATCH) from None
    if address != header.from_node_id:
        raise EnvelopeError(
            "sender node id does not match the sender public key", code=Reason.ID_KEY_MISMATCH
        )


def open_content(identity: NodeIdentity, parsed: ParsedEnvelope) -> mesh_pb2.SealedContent:
    """Decrypt with this node's key; DECRYPT_FAILED if it was not sealed to us or was altered."""
    header = parsed.header
    try:
        shared = identity.private_key.ecdh(header.ephemeral_public_key)
        key = _content_key(
            shared, header.message_id, header.from_node_id, header.to_node_id, header.ephemeral_public_key
        )
        plaintext = ChaCha20Poly1305(key).decrypt(_ZERO_NONCE, parsed.ciphertext, parsed.header_bytes)
    except Exception:  # InvalidTag, or an invalid ephemeral key
        raise EnvelopeError("cannot decrypt envelope", code=Reason.DECRYPT_FAILED) from None
    try:
        return mesh_pb2.SealedContent.FromString(plaintext)
    except Exception:
        raise _malformed("sealed content is not a valid protobuf") from None


# ---------------------------------------------------------------- acks


def make_ack(
    identity: NodeIdentity,
    *,
    message_id: bytes,
    to_node_id: bytes,
    envelope_hash: bytes,
    status: mesh_pb2.AckStatus,
    reason: str = "",
    detail: str = "",
    timestamp_ms: int | None = None,
) -> bytes:
    """Serialized SignedAck from this node (the recipient) to the original
    sender, answering the envelope whose :func:`envelope_hash` is given."""
    body = mesh_pb2.AckBody(
        message_id=message_id,
        from_node_id=identity.node_id,
        to_node_id=to_node_id,
        status=status,
        reason=reason,
        detail=detail,
        timestamp_ms=clock.now_ms() if timestamp_ms is None else timestamp_ms,
        envelope_hash=envelope_hash,
    ).SerializeToString()
    return mesh_pb2.SignedAck(body=body, signature=identity.sign(Domain.ACK, body)).SerializeToString()


def verify_ack(
    data: bytes,
    *,
    expected_signer_public_key: bytes,
    expected_signer_node_id: bytes,
    sender_node_id: bytes,
    message_id: bytes,
    envelope_hashes: Collection[bytes],
) -> mesh_pb2.AckBody:
    """Accept an ack only if the expected recipient signed it for this
    sender's message and one of the envelopes the sender sent for it
    (``envelope_hashes``): an ack for other bytes under the same id, such as
    junk a relay made, decides nothing."""
    if len(data) > MAX_ACK_BYTES:
        raise EnvelopeError(f"ack too large: {len(data)} bytes", code=Reason.MALFORMED)
    try:
        signed = mesh_pb2.SignedAck.FromString(data)
    except Exception:
        raise EnvelopeError("malformed ack: not a valid protobuf SignedAck", code=Reason.MALFORMED) from None
    if not crypto.verify(signed.signature, expected_signer_public_key, Domain.ACK, signed.body):
        raise EnvelopeError("ack is not signed by the recipient", code=Reason.BAD_SIGNATURE)
    try:
        body = mesh_pb2.AckBody.FromString(signed.body)
    except Exception:
        raise EnvelopeError("malformed ack: not a valid protobuf AckBody", code=Reason.MALFORMED) from None
    if body.from_node_id != expected_signer_node_id:
        raise EnvelopeError("ack names a different signer", code=Reason.BAD_SIGNATURE)
    if body.to_node_id != sender_node_id or body.message_id != message_id:
        raise EnvelopeError("ack is for a different message", code=Reason.MALFORMED)
    if body.envelope_hash not in envelope_hashes:
        raise EnvelopeError("ack answers an envelope this node did not send", code=Reason.MALFORMED)
    return body


def make_ack_batch(
    identity: NodeIdentity,
    *,
    to_node_id: bytes,
    entries: list[mesh_pb2.AckEntry],
    nonce: bytes = b"",
    timestamp_ms: int | None = None,
) -> bytes:
    """One SignedAck (body ``AckBatchBody``) for a whole DeliverBatch: one
    signature. Each entry names the envelope it answers (``envelope_hash``);
    ``nonce`` echoes the batch's, so a prober knows the answer is fresh."""
    body = mesh_pb2.AckBatchBody(
        from_node_id=identity.node_id,
        to_node_id=to_node_id,
        entries=entries,
        timestamp_ms=clock.now_ms() if timestamp_ms is None else timestamp_ms,
        nonce=nonce,
    ).SerializeToString()
    return mesh_pb2.SignedAck(body=body, signature=identity.sign(Domain.ACK_BATCH, body)).SerializeToString()


def verify_ack_batch(
    data: bytes,
    *,
    expected_signer_public_key: bytes,
    expected_signer_node_id: bytes,
    sender_node_id: bytes,
    max_bytes: int,
    nonce: bytes = b"",
) -> dict[tuple[bytes, bytes], mesh_pb2.AckEntry]:
    """Accept a batch ack only if the expected recipient signed it for this
    sender (and echoes ``nonce``); ``{(message_id, envelope_hash): entry}``, so
    the caller finds the answer to the very envelope it sent. Two different
    answers to one envelope make the whole ack malformed."""
    if len(data) > max_bytes:
        raise EnvelopeError(f"batch ack too large: {len(data)} bytes", code=Reason.MALFORMED)
    try:
        signed = mesh_pb2.SignedAck.FromString(data)
    except Exception:
        raise EnvelopeError("malformed batch ack: not a valid SignedAck", code=Reason.MALFORMED) from None
    if not crypto.verify(signed.signature, expected_signer_public_key, Domain.ACK_BATCH, signed.body):
        raise EnvelopeError("batch ack is not signed by the recipient", code=Reason.BAD_SIGNATURE)
    try:
        body = mesh_pb2.AckBatchBody.FromString(signed.body)
    except Exception:
        raise EnvelopeError("malformed batch ack body", code=Reason.MALFORMED) from None
    if body.from_node_id != expected_signer_node_id:
        raise EnvelopeError("batch ack names a different signer", code=Reason.BAD_SIGNATURE)
    if body.to_node_id != sender_node_id:
        raise EnvelopeError("batch ack answers another sender", code=Reason.MALFORMED)
    if body.nonce != nonce:
        raise EnvelopeError("batch ack does not echo this batch's nonce", code=Reason.MALFORMED)
    entries: dict[tuple[bytes, bytes], mesh_pb2.AckEntry] = {}
    for entry in body.entries:
        key = (entry.message_id, entry.envelope_hash)
        if entries.setdefault(key, entry) != entry:
            raise EnvelopeError("batch ack answers one envelope twice, differently", code=Reason.MALFORMED)
    return entries
