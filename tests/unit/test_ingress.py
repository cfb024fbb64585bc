"""The ingress pipeline (tmax_core/ingress.py) on a fake node and an in-memory
store: each refusal names its reason in the signed answer, the answers to
forgeries stay within their budget, and first contact consumes the invite.
Envelopes and acks are real (sealed, signed, verified)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from tests.unit.nodefakes import IngressHostFake, core_config
from tmax_core import envelope as env
from tmax_core import ingress
from tmax_core.clock import now_ms
from tmax_core.crypto import Domain, ephemeral_ecdh
from tmax_core.errors import MeshError, Reason
from tmax_core.identity import NodeIdentity
from tmax_core.ingress import ACCEPTED, DUPLICATE, REJECTED, Ingress, Outcome
from tmax_core.model import DEFAULT_SCOPE, IngressSource, InviteScope, IssuedInvite, Verdict
from tmax_core.nodeports import IngressHost
from tmax_core.plugin import hookimpl
from tmax_core.proto import mesh_pb2

RELAY = IngressSource("relay", "0xpeer")


@pytest.fixture
def node() -> IngressHostFake:
    return IngressHostFake()


@pytest.fixture
def friend_id(node: IngressHostFake) -> NodeIdentity:
    """A friend of ``node`` (its identity, to seal with)."""
    identity = NodeIdentity.generate()
    node.befriend(identity, alias="friend")
    return identity


def seal(sender: NodeIdentity, node: IngressHostFake, body: bytes = b"hi", **kw: Any) -> bytes:
    kw.setdefault("scope", DEFAULT_SCOPE)
    kw.setdefault("content_type", "text/plain")
    return env.seal(
        sender, to_node_id=node.identity.node_id, to_public_key=node.identity.public_key, body=body, **kw
    )


async def outcomes(node: IngressHostFake, *envelopes: bytes) -> list[Outcome]:
    return await Ingress(node).process(list(envelopes), RELAY)


def answer(data: bytes, sender: NodeIdentity, node: IngressHostFake, envelope: bytes) -> mesh_pb2.AckBody:
    """The signed ack ``node`` sent ``sender`` for ``envelope`` (verified)."""
    return env.verify_ack(
        data,
        expected_signer_public_key=node.identity.public_key,
        expected_signer_node_id=node.identity.node_id,
        sender_node_id=sender.node_id,
        message_id=env.parse(envelope, len(envelope)).message_id,
        envelope_hashes=[env.envelope_hash(envelope)],
    )


def test_the_fake_satisfies_the_ingress_protocol(node: IngressHostFake) -> None:
    assert isinstance(node, IngressHost)


async def test_a_friends_message_is_delivered_and_answered_accepted(
    node: IngressHostFake, friend_id: NodeIdentity
) -> None:
    envelope = seal(friend_id, node, b"hello")
    ack = answer(await Ingress(node).handle(envelope, RELAY), friend_id, node, envelope)
    assert ack.status == ACCEPTED
    assert [(m.body, m.from_alias, m.via) for m in node.delivered] == [(b"hello", "friend", "relay")]


# -- refused before any crypto ------------------------------------------------


async def test_an_envelope_over_the_size_limit_is_refused_too_large(friend_id: NodeIdentity) -> None:
    node = IngressHostFake(config=core_config(messages__max_bytes=4096))
    node.befriend(friend_id)
    (o,) = await outcomes(node, seal(friend_id, node, os.urandom(5000)))
    assert (o.status, o.reason, o.sender) == (REJECTED, Reason.TOO_LARGE, b"")
    assert node.delivered == [] and node.rejected == [Reason.TOO_LARGE]


async def test_bytes_that_are_not_an_envelope_are_refused_malformed(node: IngressHostFake) -> None:
    (o,) = await outcomes(node, b"\xff not protobuf")
    assert (o.status, o.reason) == (REJECTED, Reason.MALFORMED)


async def test_an_unsupported_version_is_refused_malformed(
    node: IngressHostFake, friend_id: NodeIdentity
) -> None:
    sealed = mesh_pb2.Envelope.FromString(seal(friend_id, node))
    header = mesh_pb2.EnvelopeHeader.FromString(sealed.header)
    header.version += 1
    sealed.header = header.SerializeToString()
    (o,) = await outcomes(node, sealed.SerializeToString())
    assert (o.reason, "unsupported version" in o.detail) == (Reason.MALFORMED, True)


async def test_an_envelope_for_another_node_is_refused_wrong_recipient(
    node: IngressHostFake, friend_id: NodeIdentity
) -> None:
    other = IngressHostFake()
    (o,) = await outcomes(node, seal(friend_id, other))
    assert o.reason == Reason.WRONG_RECIPIENT and node.store.calls == {}  # turned away before the store


async def test_a_blocked_friend_is_refused_blocked(node: IngressHostFake, friend_id: NodeIdentity) -> None:
    node.friends[friend_id.node_id].blocked = True
    (o,) = await outcomes(node, seal(friend_id, node))
    assert (o.status, o.reason) == (REJECTED, Reason.BLOCKED) and node.delivered == []


async def test_a_message_outside_the_replay_window_is_refused_stale(
    node: IngressHostFake, friend_id: NodeIdentity
) -> None:
    window = node.duration_ms("messages.replay_window")
    (o,) = await outcomes(node, seal(friend_id, node, timestamp_ms=now_ms() - window - 60_000))
    assert o.reason == Reason.STALE_TIMESTAMP


async def test_a_batch_carries_one_senders_envelopes(node: IngressHostFake, friend_id: NodeIdentity) -> None:
    other = NodeIdentity.generate()
    node.befriend(other)
    first, second = await outcomes(node, seal(friend_id, node), seal(other, node))
    assert first.status == ACCEPTED
    assert (second.reason, second.detail) == (Reason.MALFORMED, "a batch must carry one sender's envelopes")


async def test_a_stranger_naming_no_invite_is_refused_unknown_sender(node: IngressHostFake) -> None:
    (o,) = await outcomes(node, seal(NodeIdentity.generate(), node))
    assert o.reason == Reason.UNKNOWN_SENDER and node.store.calls == {}


def _revoke(invite: IssuedInvite) -> None:
    invite.revoked = True


def _expire(invite: IssuedInvite) -> None:
    invite.expires_at_ms = now_ms() - 1


def _use_up(invite: IssuedInvite) -> None:
    invite.uses_left = 0


@pytest.mark.parametrize(
    ("make_inactive", "reason"),
    [(_revoke, Reason.INVITE_REVOKED), (_expire, Reason.INVITE_EXPIRED), (_use_up, Reason.INVITE_USED)],
)
async def test_a_stranger_with_an_inactive_invite_is_refused_with_its_state(
    node: IngressHostFake, make_inactive: Callable[[IssuedInvite], None], reason: str
) -> None:
    token = node.issue_invite()
    (issued,) = node.issued_invites.values()
    make_inactive(issued.invite)
    (o,) = await outcomes(node, seal(NodeIdentity.generate(), node, invite=token))
    assert (o.status, o.reason) == (REJECTED, reason) and node.delivered == []
    assert node.store.calls == {}  # turned away before the store


async def test_a_stranger_naming_an_invite_not_issued_here_is_refused_invite_unknown(
    node: IngressHostFake,
) -> None:
    token = IngressHostFake().issue_invite()  # another node's
    (o,) = await outcomes(node, seal(NodeIdentity.generate(), node, invite=token))
    assert o.reason == Reason.INVITE_UNKNOWN


async def test_a_stranger_that_only_knows_the_token_id_is_refused_invite_invalid(
    node: IngressHostFake,
) -> None:
    """The id is in the clear (a relay sees it); the proof needs the token itself."""
    token = node.issue_invite()
    sealed = mesh_pb2.Envelope.FromString(seal(NodeIdentity.generate(), node, invite=token))
    header = mesh_pb2.EnvelopeHeader.FromString(sealed.header)
    header.invite_proof = bytes(32)
    sealed.header = header.SerializeToString()
    (o,) = await outcomes(node, sealed.SerializeToString())
    assert o.reason == Reason.INVITE_INVALID


async def test_a_plugin_precheck_refusal_stops_the_envelope_before_crypto(
    node: IngressHostFake, friend_id: NodeIdentity
) -> None:
    class Busy:
        @hookimpl
        def tmax_ingress_precheck(self, meta: Any, source: Any) -> Verdict:
            return Verdict(Reason.RATE_LIMITED, "slow down")

    node.pm.register(Busy())
    (o,) = await outcomes(node, seal(friend_id, node))
    assert (o.reason, o.detail, o.authenticated) == (Reason.RATE_LIMITED, "slow down", False)
    assert node.store.calls == {}


# -- refused after the signature ----------------------------------------------


async def test_a_tampered_signature_is_refused_bad_signature(
    node: IngressHostFake, friend_id: NodeIdentity
) -> None:
    sealed = mesh_pb2.Envelope.FromString(seal(friend_id, node))
    sealed.signature = bytes([sealed.signature[0] ^ 1]) + sealed.signature[1:]
    (o,) = await outcomes(node, sealed.SerializeToString())
    assert (o.reason, o.authenticated) == (Reason.BAD_SIGNATURE, False) and node.delivered == []


async def test_a_friend_id_with_another_key_is_refused_key_changed(node: IngressHostFake) -> None:
    imposter = NodeIdentity.generate()
    node.befriend(imposter).public_key = NodeIdentity.generate().public_key  # stored under another key
    (o,) = await outcomes(node, seal(imposter, node))
    assert o.reason == Reason.KEY_CHANGED


async def test_a_plugin_check_refusal_is_authenticated_and_its_reason_sent(
    node: IngressHostFake, friend_id: NodeIdentity
) -> None:
    class NoCats:
        @hookimpl
        def tmax_ingress_check(self, message: Any, friend: Any) -> Verdict | None:
            return Verdict(Reason.PAYLOAD_INVALID, "no cats") if b"cat" in message.body else None

    node.pm.register(NoCats())
    cat, dog = seal(friend_id, node, b"cat"), seal(friend_id, node, b"dog")
    refused, accepted = await outcomes(node, cat, dog)
    assert (refused.reason, refused.detail, refused.authenticated) == (
        Reason.PAYLOAD_INVALID,
        "no cats",
        True,
    )
    assert accepted.status == ACCEPTED and [m.body for m in node.delivered] == [b"dog"]


async def test_a_scope_unknown_here_is_refused_unknown_scope(
    node: IngressHostFake, friend_id: NodeIdentity
) -> None:
    (o,) = await outcomes(node, seal(friend_id, node, scope="files"))
    assert o.reason == Reason.UNKNOWN_SCOPE


async def test_a_scope_not_granted_to_the_friend_is_refused(
    node: IngressHostFake, friend_id: NodeIdentity
) -> None:
    node.scopes["files"] = InviteScope("files", "file transfer")
    (o,) = await outcomes(node, seal(friend_id, node, scope="files"))
    assert o.reason == Reason.SCOPE_NOT_GRANTED


async def test_a_payload_its_scope_does_not_accept_is_refused_with_the_scopes_reason(
    node: IngressHostFake, friend_id: NodeIdentity
) -> None:
    def text_only(content_type: str, body: bytes) -> None:
        if content_type != "text/plain":
            raise ValueError("text only")

    node.scopes[DEFAULT_SCOPE] = InviteScope(DEFAULT_SCOPE, "text", text_only)
    (o,) = await outcomes(node, seal(friend_id, node, content_type="image/png"))
    assert (o.reason, o.detail) == (Reason.PAYLOAD_INVALID, "text only")


# -- duplicates -----------------------------------------------------------------


async def test_the_same_bytes_again_are_answered_duplicate_and_not_delivered_twice(
    node: IngressHostFake, friend_id: NodeIdentity
) -> None:
    envelope = seal(friend_id, node)
    await outcomes(node, envelope)
    (again,) = await outcomes(node, envelope)
    assert again.status == DUPLICATE and len(node.delivered) == 1


async def test_a_resealed_retry_of_a_seen_message_is_a_duplicate(
    node: IngressHostFake, friend_id: NodeIdentity
) -> None:
    message_id = os.urandom(16)
    await outcomes(node, seal(friend_id, node, message_id=message_id))
    (retry,) = await outcomes(node, seal(friend_id, node, message_id=message_id))
    assert (retry.status, retry.authenticated) == (DUPLICATE, True) and len(node.delivered) == 1


async def test_a_forged_copy_of_a_seen_message_id_is_not_a_duplicate(
    node: IngressHostFake, friend_id: NodeIdentity
) -> None:
    message_id = os.urandom(16)
    await outcomes(node, seal(friend_id, node, message_id=message_id))
    forged = mesh_pb2.Envelope.FromString(seal(friend_id, node, b"other", message_id=message_id))
    forged.signature = bytes(65)
    (o,) = await outcomes(node, forged.SerializeToString())
    assert (o.status, o.authenticated) == (REJECTED, False)


async def test_a_repeat_inside_one_batch_gets_its_first_copys_outcome(
    node: IngressHostFake, friend_id: NodeIdentity
) -> None:
    envelope = seal(friend_id, node)
    first, repeat = await outcomes(node, envelope, envelope)
    assert (first.status, repeat.status) == (ACCEPTED, DUPLICATE) and len(node.delivered) == 1
    node.deliver_fails = OSError("disk full")
    envelope = seal(friend_id, node)
    first, repeat = await outcomes(node, envelope, envelope)
    assert first.reason == repeat.reason == Reason.SINK_FAILED


# -- delivery -------------------------------------------------------------------


async def test_a_failing_sink_refuses_the_batch_so_the_sender_retries(
    node: IngressHostFake, friend_id: NodeIdentity
) -> None:
    node.deliver_fails = OSError("disk full")
    o1, o2 = await outcomes(node, seal(friend_id, node), seal(friend_id, node))
    assert {(o.status, o.reason) for o in (o1, o2)} == {(REJECTED, Reason.SINK_FAILED)}
    assert "disk full" in o1.detail and node.rejected == [Reason.SINK_FAILED]
    assert node.store.seen == {}  # not remembered: the retry is delivered


async def test_a_message_the_sinks_have_no_room_for_is_refused_quota_exceeded(
    node: IngressHostFake, friend_id: NodeIdentity
) -> None:
    full, fits = seal(friend_id, node), seal(friend_id, node)
    node.over_quota.add(env.parse(full, len(full)).message_id)
    refused, accepted = await outcomes(node, full, fits)
    assert (refused.reason, refused.authenticated) == (Reason.QUOTA_EXCEEDED, True)
    assert accepted.status == ACCEPTED and len(node.delivered) == 1


async def test_a_friends_contact_card_is_passed_on(node: IngressHostFake, friend_id: NodeIdentity) -> None:
    card = mesh_pb2.ContactCard(relay_hosts=["grpc://relay.example:7000"], endpoints=["192.0.2.1:7001"])
    await outcomes(node, seal(friend_id, node, contact=card))
    assert node.contacts == [(friend_id.node_id, ["grpc://relay.example:7000"], ["192.0.2.1:7001"])]


# -- first contact --------------------------------------------------------------


async def test_first_contact_adds_the_friend_and_uses_the_invite_once(node: IngressHostFake) -> None:
    token = node.issue_invite(uses=1)
    stranger, late = NodeIdentity.generate(), NodeIdentity.generate()
    card = mesh_pb2.ContactCard(alias="bob")
    (o,) = await outcomes(node, seal(stranger, node, invite=token, contact=card))
    assert o.status == ACCEPTED
    assert node.friends[stranger.node_id].alias == "bob" and node.delivered[0].from_alias == "bob"
    (second,) = await outcomes(node, seal(late, node, invite=token))
    assert second.reason == Reason.INVITE_USED and late.node_id not in node.friends


async def test_first_contact_the_store_refuses_is_refused_with_its_code(
    node: IngressHostFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another first contact used the invite between the check and the commit."""
    token = node.issue_invite()

    def used_meanwhile(*_: Any) -> None:
        raise MeshError("used", code=Reason.INVITE_USED)

    monkeypatch.setattr(node.store, "accept_first_contact", used_meanwhile)
    (o,) = await outcomes(node, seal(NodeIdentity.generate(), node, invite=token))
    assert (o.reason, o.authenticated) == (Reason.INVITE_USED, True) and node.delivered == []


async def test_first_contact_without_the_token_sealed_inside_is_refused(node: IngressHostFake) -> None:
    """The clear header names the invite and proves the token (the sender
    holds it), but the content sealed under it does not carry the token."""
    token = node.issue_invite()
    stranger = NodeIdentity.generate()
    eph_pub, shared = ephemeral_ecdh(node.identity.public_key)
    sealed = mesh_pb2.Envelope.FromString(seal(stranger, node, invite=token, ephemeral=(eph_pub, shared)))
    header = mesh_pb2.EnvelopeHeader.FromString(sealed.header)
    # The content again, without the token, encrypted and signed under the same header.
    key = env._content_key(shared, header.message_id, stranger.node_id, node.identity.node_id, eph_pub)
    content = mesh_pb2.SealedContent(scope=DEFAULT_SCOPE, content_type="text/plain", body=b"hi")
    sealed.ciphertext = ChaCha20Poly1305(key).encrypt(bytes(12), content.SerializeToString(), sealed.header)
    sealed.signature = stranger.sign(Domain.ENVELOPE, sealed.header, sealed.ciphertext)
    (o,) = await outcomes(node, sealed.SerializeToString())
    assert (o.reason, o.detail) == (
        Reason.INVITE_INVALID,
        "first contact without the invite token sealed inside",
    )


# -- what is answered -------------------------------------------------------------


async def test_answers_to_unauthenticated_strangers_stop_at_the_budget(node: IngressHostFake) -> None:
    ing = Ingress(node)
    strangers = [seal(NodeIdentity.generate(), node) for _ in range(100)]  # sealed before the clock matters
    answers = [await ing.handle(envelope, RELAY) for envelope in strangers]
    signed = [a for a in answers if a]
    assert ingress.UNAUTHENTICATED_ANSWER_BURST <= len(signed) < 100
    assert answers[-1] == b""


async def test_a_friend_is_still_answered_when_strangers_used_their_budget(
    node: IngressHostFake, friend_id: NodeIdentity
) -> None:
    ing = Ingress(node)
    for _ in range(ingress.UNAUTHENTICATED_ANSWER_BURST + 5):
        await ing.handle(seal(NodeIdentity.generate(), node), RELAY)
    node.friends[friend_id.node_id].blocked = True  # refused unauthenticated: from the friend's budget
    envelope = seal(friend_id, node)
    assert answer(await ing.handle(envelope, RELAY), friend_id, node, envelope).reason == Reason.BLOCKED


async def test_unauthenticated_rejections_are_logged_within_a_budget(
    node: IngressHostFake, caplog: pytest.LogCaptureFixture
) -> None:
    ing = Ingress(node)
    with caplog.at_level(logging.INFO, logger="tmax_mesh.ingress"):
        await ing.process([b"junk"] * 40, RELAY)
    assert len(node.rejected) == 40
    assert ingress.REJECT_LOG_BURST <= len(caplog.records) < 40


async def test_a_batch_answer_echoes_its_nonce_and_a_long_nonce_gets_none(
    node: IngressHostFake, friend_id: NodeIdentity
) -> None:
    ing = Ingress(node)
    envelope = seal(friend_id, node)
    assert await ing.handle_batch([envelope], RELAY, nonce=bytes(ingress.MAX_NONCE_LEN + 1)) == b""
    nonce = os.urandom(ingress.MAX_NONCE_LEN)
    entries = env.verify_ack_batch(
        await ing.handle_batch([envelope], RELAY, nonce=nonce),
        expected_signer_public_key=node.identity.public_key,
        expected_signer_node_id=node.identity.node_id,
        sender_node_id=friend_id.node_id,
        max_bytes=1 << 20,
        nonce=nonce,
    )
    assert [e.status for e in entries.values()] == [ACCEPTED]


async def test_a_batch_beyond_the_maximum_is_answered_for_its_first_envelopes_only(
    node: IngressHostFake, friend_id: NodeIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingress, "MAX_BATCH", 3)
    envelopes = [seal(friend_id, node, f"m{i}".encode()) for i in range(5)]
    data = await Ingress(node).handle_batch(envelopes, RELAY)
    body = mesh_pb2.AckBatchBody.FromString(mesh_pb2.SignedAck.FromString(data).body)
    assert len(body.entries) == 3 and [m.body for m in node.delivered] == [b"m0", b"m1", b"m2"]


async def test_empty_probes_are_answered_within_a_budget_per_source(node: IngressHostFake) -> None:
    ing = Ingress(node)
    flood = IngressSource("direct", "198.51.100.7:4000")
    answered = [bool(await ing.handle_batch([], flood)) for _ in range(ingress.PROBE_ANSWER_BURST + 5)]
    assert answered[: ingress.PROBE_ANSWER_BURST] == [True] * ingress.PROBE_ANSWER_BURST
    assert answered[-1] is False
    assert await ing.handle_batch([], IngressSource("direct", "203.0.113.9:4000"))  # another source still is
