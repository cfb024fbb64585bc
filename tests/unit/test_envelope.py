import contextlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tmax_core import clock, crypto, envelope
from tmax_core.crypto import Domain
from tmax_core.errors import EnvelopeError, Reason
from tmax_core.identity import NodeIdentity
from tmax_core.invites import create_invite
from tmax_core.proto import mesh_pb2

MAX = 1 << 20
ALICE = NodeIdentity.generate()
BOB = NodeIdentity.generate()
EVE = NodeIdentity.generate()
H = envelope.envelope_hash(b"the envelope answered")


def _seal(sender=ALICE, recipient=BOB, **kw):
    kw.setdefault("scope", "message")
    kw.setdefault("content_type", "text/plain")
    kw.setdefault("body", b"hello bob")
    return envelope.seal(sender, to_node_id=recipient.node_id, to_public_key=recipient.public_key, **kw)


def _code(fn, *args):
    with pytest.raises(EnvelopeError) as exc:
        fn(*args)
    return exc.value.code


def _resign(header: mesh_pb2.EnvelopeHeader, ciphertext: bytes, signer: NodeIdentity) -> bytes:
    hb = header.SerializeToString()
    sig = signer.sign(Domain.ENVELOPE, hb, ciphertext)
    return mesh_pb2.Envelope(header=hb, ciphertext=ciphertext, signature=sig).SerializeToString()


def test_round_trip():
    card = mesh_pb2.ContactCard(relay_hosts=["grpc://relay:7000"], alias="alice")
    mid = os.urandom(16)
    invite = create_invite(BOB, ttl_ms=60_000)
    data = _seal(reply_to=b"r" * 16, contact=card, invite=invite.raw, message_id=mid, timestamp_ms=1234)
    p = envelope.parse(data, MAX)
    assert p.message_id == mid
    assert p.from_node_id == ALICE.node_id and p.to_node_id == BOB.node_id
    assert p.timestamp_ms == 1234 and p.sender_public_key == ALICE.public_key
    assert p.raw == data and p.digest == envelope.envelope_hash(data)
    envelope.verify(p)
    c = envelope.open_content(BOB, p)
    assert (c.scope, c.content_type, c.body, c.reply_to) == ("message", "text/plain", b"hello bob", b"r" * 16)
    assert c.contact.relay_hosts == ["grpc://relay:7000"] and c.contact.alias == "alice"
    # First contact: only the token id is in the clear, the token is sealed inside.
    assert p.invite_token_id == invite.token_id and c.invite == invite.raw
    assert invite.raw not in data and mesh_pb2.SignedInvite.FromString(invite.raw).signature not in data
    # ... with a proof, checked by an HMAC, that the sender holds the token.
    assert p.proves_invite(envelope.invite_proof_key(invite.raw))
    other = create_invite(BOB, ttl_ms=60_000)
    assert not p.proves_invite(envelope.invite_proof_key(other.raw))


def test_token_id_must_be_16_bytes_or_absent():
    env = mesh_pb2.Envelope.FromString(_seal())
    header = mesh_pb2.EnvelopeHeader.FromString(env.header)
    header.invite_token_id = b"short"
    assert _code(envelope.parse, _resign(header, env.ciphertext, ALICE), MAX) == Reason.MALFORMED


def test_defaults_and_uniqueness():
    a = envelope.parse(_seal(), MAX)
    b = envelope.parse(_seal(), MAX)
    assert a.message_id != b.message_id
    assert a.header.ephemeral_public_key != b.header.ephemeral_public_key
    assert abs(a.timestamp_ms - clock.now_ms()) < 60_000
    assert not envelope.open_content(BOB, a).HasField("contact")


def test_empty_body():
    p = envelope.parse(_seal(body=b"", scope="", content_type=""), MAX)
    envelope.verify(p)
    assert envelope.open_content(BOB, p).body == b""


def test_tampered_ciphertext_rejected():
    env = mesh_pb2.Envelope.FromString(_seal())
    ct = bytearray(env.ciphertext)
    ct[3] ^= 1
    env.ciphertext = bytes(ct)
    p = envelope.parse(env.SerializeToString(), MAX)
    assert _code(envelope.verify, p) == Reason.BAD_SIGNATURE
    assert _code(envelope.open_content, BOB, p) == Reason.DECRYPT_FAILED


def test_tampered_header_rejected():
    env = mesh_pb2.Envelope.FromString(_seal())
    header = mesh_pb2.EnvelopeHeader.FromString(env.header)
    header.timestamp_ms += 1
    env.header = header.SerializeToString()
    p = envelope.parse(env.SerializeToString(), MAX)
    assert _code(envelope.verify, p) == Reason.BAD_SIGNATURE
    # AEAD associated data covers the header too.
    assert _code(envelope.open_content, BOB, p) == Reason.DECRYPT_FAILED


def test_resigned_header_change_fails_decrypt():
    # Even a sender re-signing a changed header cannot reuse the ciphertext.
    env = mesh_pb2.Envelope.FromString(_seal())
    header = mesh_pb2.EnvelopeHeader.FromString(env.header)
    header.timestamp_ms += 1
    p = envelope.parse(_resign(header, env.ciphertext, ALICE), MAX)
    envelope.verify(p)
    assert _code(envelope.open_content, BOB, p) == Reason.DECRYPT_FAILED


def test_wrong_recipient_cannot_open():
    p = envelope.parse(_seal(), MAX)
    envelope.verify(p)
    assert _code(envelope.open_content, EVE, p) == Reason.DECRYPT_FAILED
    assert _code(envelope.open_content, ALICE, p) == Reason.DECRYPT_FAILED


def test_id_key_mismatch():
    # Eve claims to be Alice but signs with her own key.
    env = mesh_pb2.Envelope.FromString(_seal(sender=EVE))
    header = mesh_pb2.EnvelopeHeader.FromString(env.header)
    header.from_node_id = ALICE.node_id
    p = envelope.parse(_resign(header, env.ciphertext, EVE), MAX)
    assert _code(envelope.verify, p) == Reason.ID_KEY_MISMATCH


def test_claimed_key_signed_by_other():
    # Header names Alice's id and key but Eve signed it.
    env = mesh_pb2.Envelope.FromString(_seal())
    header = mesh_pb2.EnvelopeHeader.FromString(env.header)
    p = envelope.parse(_resign(header, env.ciphertext, EVE), MAX)
    assert _code(envelope.verify, p) == Reason.BAD_SIGNATURE


def test_invalid_sender_key():
    env = mesh_pb2.Envelope.FromString(_seal())
    header = mesh_pb2.EnvelopeHeader.FromString(env.header)
    header.sender_public_key = b"\x02" + b"\xff" * 32
    p = envelope.parse(_resign(header, env.ciphertext, ALICE), MAX)
    assert _code(envelope.verify, p) == Reason.ID_KEY_MISMATCH


def test_invalid_ephemeral_key_decrypt_failed():
    env = mesh_pb2.Envelope.FromString(_seal())
    header = mesh_pb2.EnvelopeHeader.FromString(env.header)
    header.ephemeral_public_key = b"\x02" + b"\xff" * 32
    p = envelope.parse(_resign(header, env.ciphertext, ALICE), MAX)
    assert _code(envelope.open_content, BOB, p) == Reason.DECRYPT_FAILED


def test_too_large_checked_first():
    data = _seal(body=b"x" * 5000)
    assert _code(envelope.parse, data, 1000) == Reason.TOO_LARGE
    assert _code(envelope.parse, b"\xff" * 2000, 1000) == Reason.TOO_LARGE
    envelope.parse(data, len(data))


def _mutated(**changes):
    env = mesh_pb2.Envelope.FromString(_seal())
    header = mesh_pb2.EnvelopeHeader.FromString(env.header)
    for k, v in changes.items():
        if k in ("ciphertext", "signature"):
            setattr(env, k, v)
        else:
            setattr(header, k, v)
    env.header = header.SerializeToString()
    return env.SerializeToString()


@pytest.mark.parametrize(
    "changes",
    [
        {"version": 1},
        {"version": 0},
        {"message_id": b"short"},
        {"from_node_id": b"\x01" * 19},
        {"to_node_id": b""},
        {"sender_public_key": b"\x02" * 32},
        {"ephemeral_public_key": b""},
        {"signature": b"\x00" * 64},
        {"ciphertext": b""},
        {"ciphertext": b"x" * 15},
    ],
)
def test_malformed_fields(changes):
    assert _code(envelope.parse, _mutated(**changes), MAX) == Reason.MALFORMED


@pytest.mark.parametrize("data", [b"", b"\xff\xff\xff", b"\x0a\x05abc", os.urandom(64)])
def test_malformed_bytes(data):
    assert _code(envelope.parse, data, MAX) == Reason.MALFORMED


def test_bad_inner_content_is_malformed():
    # Encrypt a non-protobuf plaintext correctly and sign it: open_content says MALFORMED.
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    good = envelope.parse(_seal(), MAX)
    h = good.header
    shared = BOB.private_key.ecdh(h.ephemeral_public_key)
    key = crypto.hkdf_sha256(
        shared, salt=h.message_id, info=Domain.SEAL + h.from_node_id + h.to_node_id + h.ephemeral_public_key
    )
    ct = ChaCha20Poly1305(key).encrypt(bytes(12), b"\xff\xff\xff\xff", good.header_bytes)
    p = envelope.parse(_resign(h, ct, ALICE), MAX)
    envelope.verify(p)
    assert _code(envelope.open_content, BOB, p) == Reason.MALFORMED


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_parse_arbitrary_bytes_only_envelope_error(data):
    with contextlib.suppress(EnvelopeError):
        envelope.parse(data, 512)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_flipped_byte_never_verifies_and_opens(pos_seed, xor):
    data = bytearray(_seal())
    pos = pos_seed % len(data)
    data[pos] ^= xor or 1
    try:
        p = envelope.parse(bytes(data), MAX)
        envelope.verify(p)
        envelope.open_content(BOB, p)
    except EnvelopeError:
        return
    # Protobuf may tolerate a flip that leaves every field value intact; then
    # the content must be exactly the original.
    assert envelope.open_content(BOB, p).body == b"hello bob"


# ---------------------------------------------------------------- acks


def test_ack_round_trip():
    mid = os.urandom(16)
    ack = envelope.make_ack(
        BOB,
        message_id=mid,
        to_node_id=ALICE.node_id,
        envelope_hash=H,
        status=mesh_pb2.ACK_STATUS_REJECTED,
        reason="blocked",
    )
    body = envelope.verify_ack(
        ack,
        expected_signer_public_key=BOB.public_key,
        expected_signer_node_id=BOB.node_id,
        sender_node_id=ALICE.node_id,
        message_id=mid,
        envelope_hashes=[H],
    )
    assert body.status == mesh_pb2.ACK_STATUS_REJECTED and body.reason == "blocked"
    assert body.envelope_hash == H
    assert body.from_node_id == BOB.node_id and body.to_node_id == ALICE.node_id
    assert abs(body.timestamp_ms - clock.now_ms()) < 60_000


def _verify_ack_code(ack, mid, signer=BOB, hashes=(H,), sender=ALICE):
    with pytest.raises(EnvelopeError) as exc:
        envelope.verify_ack(
            ack,
            expected_signer_public_key=signer.public_key,
            expected_signer_node_id=signer.node_id,
            sender_node_id=sender.node_id,
            message_id=mid,
            envelope_hashes=hashes,
        )
    return exc.value.code


def _ack(signer=BOB, mid=b"a" * 16, status=mesh_pb2.ACK_STATUS_ACCEPTED, to=ALICE, digest=H):
    return envelope.make_ack(
        signer, message_id=mid, to_node_id=to.node_id, envelope_hash=digest, status=status
    )


def test_ack_for_another_envelope_under_the_same_id():
    """What a relay gets by sending junk under a real message id: the
    recipient's signed ack for the junk, which decides nothing for the sender."""
    junk = envelope.envelope_hash(b"junk a relay made")
    assert _verify_ack_code(_ack(digest=junk), b"a" * 16) == Reason.MALFORMED


def test_ack_for_another_sender():
    assert _verify_ack_code(_ack(to=EVE), b"a" * 16) == Reason.MALFORMED


def test_batch_ack_binds_sender_nonce_and_envelopes():
    entry = mesh_pb2.AckEntry(message_id=b"a" * 16, status=1, envelope_hash=H)
    ack = envelope.make_ack_batch(BOB, to_node_id=ALICE.node_id, entries=[entry], nonce=b"n" * 16)

    def verify(sender=ALICE, nonce=b"n" * 16):
        return envelope.verify_ack_batch(
            ack,
            expected_signer_public_key=BOB.public_key,
            expected_signer_node_id=BOB.node_id,
            sender_node_id=sender.node_id,
            max_bytes=MAX,
            nonce=nonce,
        )

    assert set(verify()) == {(b"a" * 16, H)}
    assert _code(verify, EVE) == Reason.MALFORMED
    assert _code(verify, ALICE, b"m" * 16) == Reason.MALFORMED  # a replayed answer to another probe


def test_forged_ack_rejected():
    mid = os.urandom(16)
    assert _verify_ack_code(_ack(EVE, mid), mid) == Reason.BAD_SIGNATURE


def test_ack_body_tampered():
    mid = os.urandom(16)
    signed = mesh_pb2.SignedAck.FromString(_ack(mid=mid, status=mesh_pb2.ACK_STATUS_REJECTED))
    body = mesh_pb2.AckBody.FromString(signed.body)
    body.status = mesh_pb2.ACK_STATUS_ACCEPTED
    signed.body = body.SerializeToString()
    assert _verify_ack_code(signed.SerializeToString(), mid) == Reason.BAD_SIGNATURE


def test_ack_for_other_message():
    assert _verify_ack_code(_ack(), b"b" * 16) == Reason.MALFORMED


def test_ack_signer_id_mismatch():
    # Signed by Bob's key but naming Eve as signer.
    body = mesh_pb2.AckBody(message_id=b"a" * 16, from_node_id=EVE.node_id, status=1).SerializeToString()
    ack = mesh_pb2.SignedAck(body=body, signature=BOB.sign(Domain.ACK, body)).SerializeToString()
    assert _verify_ack_code(ack, b"a" * 16) == Reason.BAD_SIGNATURE


def test_ack_signature_domain_separated():
    # A valid envelope signature over the same bytes is not an ack signature.
    body = mesh_pb2.AckBody(message_id=b"a" * 16, from_node_id=BOB.node_id, status=1).SerializeToString()
    ack = mesh_pb2.SignedAck(body=body, signature=BOB.sign(Domain.ENVELOPE, body)).SerializeToString()
    assert _verify_ack_code(ack, b"a" * 16) == Reason.BAD_SIGNATURE


@pytest.mark.parametrize("data", [b"", b"\xff\xff", os.urandom(40), b"\x00" * (70 * 1024)])
def test_malformed_ack(data):
    assert _verify_ack_code(data, b"a" * 16) in (Reason.MALFORMED, Reason.BAD_SIGNATURE)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_verify_ack_arbitrary_bytes(data):
    with contextlib.suppress(EnvelopeError):
        envelope.verify_ack(
            data,
            expected_signer_public_key=BOB.public_key,
            expected_signer_node_id=BOB.node_id,
            sender_node_id=ALICE.node_id,
            message_id=b"a" * 16,
            envelope_hashes=[H],
        )
