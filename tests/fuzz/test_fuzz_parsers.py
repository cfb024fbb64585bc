"""Fuzz the pure parsers of outside bytes: invite text and tokens, envelopes,
signed acks and batch acks. The contract under test: any input either parses
(and then is exactly what was signed) or raises the module's own error with a
documented code — never another exception, never a hang."""

from __future__ import annotations

import base64

from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzz.common import budget, edits, mutate
from tmax_core import envelope as env
from tmax_core import invites
from tmax_core.clock import now_ms
from tmax_core.crypto import Domain
from tmax_core.errors import EnvelopeError, InviteError, InviteReason, Reason
from tmax_core.identity import NodeIdentity
from tmax_core.model import RateLimit
from tmax_core.proto import mesh_pb2

ALICE = NodeIdentity.generate()
BOB = NodeIdentity.generate()
INVITE = invites.create_invite(
    ALICE,
    ttl_ms=3_600_000,
    max_uses=3,
    scopes=["message"],
    relay_hosts=["grpc://relay.example:7447"],
    endpoints=["192.0.2.1:7000"],
    rate_limit=RateLimit(10.0, 20),
    alias="alice",
)
INVITE_CODES = {v for k, v in vars(InviteReason).items() if k.isupper()}
ENVELOPE_CODES = {v for k, v in vars(Reason).items() if k.isupper()}
ENVELOPE = env.seal(
    ALICE,
    to_node_id=BOB.node_id,
    to_public_key=BOB.public_key,
    scope="message",
    content_type="text/plain",
    body=b"hello bob",
    invite=INVITE.raw,
)
MAX = 1024 * 1024


# -- invites ------------------------------------------------------------------------------


def _decode(text: str) -> invites.Invite | None:
    try:
        return invites.decode_invite(text)
    except InviteError as err:
        assert err.code in INVITE_CODES, err.code
        assert str(err) and "\n" not in str(err)
        return None


@budget(400)
@given(st.text(max_size=300))
@example("")
@example(invites.TOKEN_PREFIX)
@example(invites.LINK_PREFIX)
@example(invites.TOKEN_PREFIX + "A")
@example("x" * (invites.MAX_TEXT_LEN + 1))
def test_invite_arbitrary_text(text: str) -> None:
    assert _decode(text) is None


@budget(400)
@given(
    st.sampled_from([invites.TOKEN_PREFIX, invites.LINK_PREFIX, invites.LINK_PREFIX + invites.TOKEN_PREFIX]),
    st.binary(max_size=600),
)
def test_invite_prefix_and_arbitrary_bytes(prefix: str, raw: bytes) -> None:
    """Well-formed base64url of arbitrary bytes: reaches the protobuf scan and the body checks."""
    text = prefix + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    got = _decode(text)
    assert got is None or got.raw == raw


@budget(300)
@given(edits)
def test_invite_mutated_token_bytes(ops: list[tuple[int, int, int]]) -> None:
    """Edit the signed bytes of a real invite: only the untouched token may verify."""
    raw = mutate(INVITE.raw, ops)
    got = _decode(invites.encode_token(raw))
    assert got is None or raw == INVITE.raw
    try:
        got = invites.decode_signed_invite(raw)
    except InviteError as err:
        assert err.code in INVITE_CODES
    else:
        assert raw == INVITE.raw and got.token_id == INVITE.token_id


@budget(300)
@given(edits)
def test_invite_mutated_token_text(ops: list[tuple[int, int, int]]) -> None:
    """Edit the text line (cut off, stray characters, case changes...)."""
    text = mutate(INVITE.link.encode(), ops).decode("latin-1")
    got = _decode(text)
    if got is not None:
        assert got.raw == INVITE.raw  # e.g. an edit that only touched padding-free trailing bits


@budget(200)
@given(
    st.one_of(st.binary(max_size=200), st.just(b""), st.binary(min_size=16, max_size=16)),
    st.one_of(st.binary(max_size=40), st.just(ALICE.node_id)),
    st.one_of(st.binary(max_size=40), st.just(ALICE.public_key)),
    st.lists(st.text(max_size=40), max_size=40),
    st.lists(st.text(max_size=80), max_size=5),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**32 - 1),
    st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    st.integers(0, 2**32 - 1),
)
def test_invite_structured_bodies(
    token_id: bytes,
    inviter: bytes,
    pub: bytes,
    scopes: list[str],
    hosts: list[str],
    issued: int,
    expires: int,
    version: int,
    rate: float | None,
    uses: int,
) -> None:
    """Protobuf-valid bodies with odd field values, signed by the real key:
    every field check is reached; parse_invite adds expiry and scopes."""
    body = mesh_pb2.InviteBody(
        version=version,
        token_id=token_id,
        inviter_node_id=inviter,
        inviter_public_key=pub,
        scopes=scopes,
        relay_hosts=hosts,
        issued_at_ms=issued,
        expires_at_ms=expires,
        max_uses=uses,
    )
    if rate is not None:
        body.rate_limit.rate_per_s = rate
    body_bytes = body.SerializeToString()
    raw = mesh_pb2.SignedInvite(
        body=body_bytes, signature=ALICE.sign(Domain.INVITE, body_bytes)
    ).SerializeToString()
    token = invites.encode_token(raw)
    try:
        got = invites.parse_invite(token, now_ms=now_ms(), known_scopes={"message"})
    except InviteError as err:
        assert err.code in INVITE_CODES
    else:
        assert got.inviter_node_id == ALICE.node_id and set(got.scopes) <= {"message"}
        assert got.expires_at_ms > now_ms() and len(got.token_id) == 16


# -- envelopes ------------------------------------------------------------------------------


def _open(data: bytes) -> mesh_pb2.SealedContent | None:
    """parse -> verify -> open_content as the ingress pipeline runs them."""
    try:
        parsed = env.parse(data, MAX)
        env.verify(parsed)
        return env.open_content(BOB, parsed)
    except EnvelopeError as err:
        assert err.code in ENVELOPE_CODES, err.code
        assert str(err) and "\n" not in str(err)
        return None


@budget(500)
@given(st.binary(max_size=2048))
@example(b"")
@example(b"\x0a\xff\xff\xff\xff\x0f")  # a length prefix far beyond the data
def test_envelope_arbitrary_bytes(data: bytes) -> None:
    assert _open(data) is None


@budget(400)
@given(edits)
def test_envelope_mutated(ops: list[tuple[int, int, int]]) -> None:
    """Any edit of a real envelope is refused, unless it left the signed header and
    ciphertext intact (then the content is exactly what Alice sealed)."""
    data = mutate(ENVELOPE, ops)
    content = _open(data)
    if content is not None:
        parsed = env.parse(data, MAX)
        original = env.parse(ENVELOPE, MAX)
        assert (parsed.header_bytes, parsed.ciphertext) == (original.header_bytes, original.ciphertext)
        assert content.body == b"hello bob"


@budget(300)
@given(
    st.binary(max_size=40),
    st.binary(max_size=40),
    st.binary(max_size=40),
    st.binary(max_size=70),
    st.binary(max_size=40),
    st.binary(max_size=200),
    st.binary(max_size=80),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**64 - 1),
)
def test_envelope_structured_fields(
    message_id: bytes,
    from_id: bytes,
    to_id: bytes,
    sender_key: bytes,
    eph: bytes,
    ciphertext: bytes,
    signature: bytes,
    version: int,
    ts: int,
) -> None:
    """Protobuf-valid envelopes with every field length and value hypothesis finds."""
    header = mesh_pb2.EnvelopeHeader(
        version=version,
        message_id=message_id,
        from_node_id=from_id,
        to_node_id=to_id,
        timestamp_ms=ts,
        sender_public_key=sender_key,
        ephemeral_public_key=eph,
    ).SerializeToString()
    data = mesh_pb2.Envelope(header=header, ciphertext=ciphertext, signature=signature).SerializeToString()
    assert _open(data) is None


def test_envelope_size_limit_checked_before_parsing() -> None:
    try:
        env.parse(b"\x00" * 2000, 1000)
    except EnvelopeError as err:
        assert err.code == Reason.TOO_LARGE
    else:
        raise AssertionError("an oversized envelope parsed")


# -- acks -----------------------------------------------------------------------------------------

DIGEST = env.envelope_hash(ENVELOPE)
ACK = env.make_ack(BOB, message_id=b"m" * 16, to_node_id=ALICE.node_id, envelope_hash=DIGEST, status=1)
BATCH_ACK = env.make_ack_batch(
    BOB,
    to_node_id=ALICE.node_id,
    entries=[mesh_pb2.AckEntry(message_id=b"m" * 16, status=1, envelope_hash=DIGEST)],
    nonce=b"n" * 16,
)


@budget(300)
@given(st.one_of(st.binary(max_size=600), edits.map(lambda ops: mutate(ACK, ops))))
def test_ack_arbitrary_and_mutated(data: bytes) -> None:
    try:
        body = env.verify_ack(
            data,
            expected_signer_public_key=BOB.public_key,
            expected_signer_node_id=BOB.node_id,
            sender_node_id=ALICE.node_id,
            message_id=b"m" * 16,
            envelope_hashes=[DIGEST],
        )
    except EnvelopeError as err:
        assert err.code in ENVELOPE_CODES
    else:
        assert body.from_node_id == BOB.node_id and body.message_id == b"m" * 16
        assert body.to_node_id == ALICE.node_id and body.envelope_hash == DIGEST


@budget(300)
@given(st.one_of(st.binary(max_size=600), edits.map(lambda ops: mutate(BATCH_ACK, ops))))
def test_batch_ack_arbitrary_and_mutated(data: bytes) -> None:
    try:
        entries = env.verify_ack_batch(
            data,
            expected_signer_public_key=BOB.public_key,
            expected_signer_node_id=BOB.node_id,
            sender_node_id=ALICE.node_id,
            max_bytes=MAX,
            nonce=b"n" * 16,
        )
    except EnvelopeError as err:
        assert err.code in ENVELOPE_CODES
    else:
        assert set(entries) == {(b"m" * 16, DIGEST)}
