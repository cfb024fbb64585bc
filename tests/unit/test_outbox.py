"""The outbox (tmax_core/outbox.py) on a fake node and an in-memory store:
what each answer, error or silence of a transport does to an entry (final,
retried after a backoff, handed off), and that a final status stays final.
Envelopes and the friend's acks are real (sealed, signed, verified)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.polling import wait_for_async
from tests.unit.nodefakes import OutboxHostFake, core_config, outbox_entry
from tmax_core import envelope as env
from tmax_core import outbox
from tmax_core.clock import now_ms
from tmax_core.errors import Reason
from tmax_core.identity import NodeIdentity
from tmax_core.model import Friend, OutboxEntry
from tmax_core.nodeports import OutboxHost
from tmax_core.outbox import Outbox
from tmax_core.proto import mesh_pb2
from tmax_core.store import EXPIRED_ERROR

ACCEPTED = mesh_pb2.ACK_STATUS_ACCEPTED
REJECTED = mesh_pb2.ACK_STATUS_REJECTED
RETRY_INITIAL_MS, RETRY_MAX_MS = 1000, 8000


class Peer:
    """A transport to the friend that answers each envelope as the friend
    would (a signed ack with ``status`` and ``reason``), or raises ``error``.
    ``signer``: who signs the answers (the friend unless an impostor is wanted)."""

    cost = 1

    def __init__(
        self,
        signer: NodeIdentity,
        *,
        name: str = "direct",
        status: int = ACCEPTED,
        reason: str = "",
        error: BaseException | None = None,
    ) -> None:
        self.signer, self.name, self.status, self.reason, self.error = signer, name, status, reason, error
        self.calls: list[list[bytes]] = []  # the envelopes of each call
        self.unverifiable: list[bytes] = []  # friends whose answer did not verify

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def can_reach(self, friend: Friend) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        return {}

    def answer_unverifiable(self, friend: Friend) -> None:
        self.unverifiable.append(friend.node_id)

    def entry(self, envelope: bytes) -> mesh_pb2.AckEntry:
        p = env.parse(envelope, 1 << 20)
        return mesh_pb2.AckEntry(
            message_id=p.message_id, status=self.status, reason=self.reason, envelope_hash=p.digest
        )

    async def send(self, friend: Friend, envelope: bytes, timeout: float) -> bytes | None:
        self.calls.append([envelope])
        if self.error is not None:
            raise self.error
        e = self.entry(envelope)
        return env.make_ack(
            self.signer,
            message_id=e.message_id,
            to_node_id=env.parse(envelope, 1 << 20).from_node_id,
            envelope_hash=e.envelope_hash,
            status=e.status,
            reason=e.reason,
        )


class BatchPeer(Peer):
    """A :class:`Peer` that takes whole batches (one signed batch ack);
    ``skip`` leaves the first envelope unanswered."""

    skip = False

    async def send_batch(self, friend: Friend, envelopes: list[bytes], timeout: float) -> bytes:
        self.calls.append(list(envelopes))
        if self.error is not None:
            raise self.error
        entries = [self.entry(e) for e in envelopes[1 if self.skip else 0 :]]
        sender = env.parse(envelopes[0], 1 << 20).from_node_id
        return env.make_ack_batch(self.signer, to_node_id=sender, entries=entries)


class Relay(Peer):
    """Store-and-forward: takes every envelope and answers none now."""

    async def send(self, friend: Friend, envelope: bytes, timeout: float) -> bytes | None:
        self.calls.append([envelope])
        return None


@pytest.fixture
def host() -> OutboxHostFake:
    config = core_config(
        messages__retry_initial=f"{RETRY_INITIAL_MS}ms", messages__retry_max=f"{RETRY_MAX_MS}ms"
    )
    return OutboxHostFake(config=config)


@pytest.fixture
def friend(host: OutboxHostFake) -> NodeIdentity:
    identity = NodeIdentity.generate()
    host.befriend(identity, alias="friend")
    return identity


@pytest.fixture
async def box(host: OutboxHostFake) -> AsyncIterator[Outbox]:
    """The outbox; its scheduler runs only in the tests that start it."""
    b = Outbox(host)
    try:
        yield b
    finally:
        await b.stop()


async def submit(box: Outbox, host: OutboxHostFake, *entries: OutboxEntry) -> list[OutboxEntry]:
    return await box.submit_many(list(entries))


def stored(host: OutboxHostFake, entry: OutboxEntry) -> OutboxEntry:
    return host.store.outbox[entry.message_id]


async def attempted(host: OutboxHostFake, entry: OutboxEntry, attempts: int = 1) -> OutboxEntry:
    """The stored entry once its ``attempts``-th attempt is recorded."""
    await wait_for_async(
        lambda: stored(host, entry).attempts >= attempts, what=f"attempt {attempts} of the entry recorded"
    )
    return stored(host, entry)


async def final(box: Outbox, entry: OutboxEntry) -> OutboxEntry:
    result = await box.wait_final(entry.message_id, 20)
    assert result is not None and result.status in outbox.FINAL, result
    return result


def test_the_fake_satisfies_the_outbox_protocol(host: OutboxHostFake) -> None:
    assert isinstance(host, OutboxHost)


# -- answers ------------------------------------------------------------------------


async def test_one_batch_ack_from_the_friend_delivers_every_entry(
    box: Outbox, host: OutboxHostFake, friend: NodeIdentity
) -> None:
    peer = BatchPeer(friend)
    host.transports = [peer]
    entries = await submit(box, host, *(outbox_entry(friend.node_id, f"m{i}".encode()) for i in range(3)))
    results = [await final(box, e) for e in entries]
    assert {(r.status, r.path, r.error) for r in results} == {("delivered", "direct", None)}
    assert len(peer.calls) == 1 and len(peer.calls[0]) == 3
    assert host.sends == [("delivered", "direct")] * 3


async def test_without_send_batch_each_envelope_goes_in_its_own_call(
    box: Outbox, host: OutboxHostFake, friend: NodeIdentity
) -> None:
    peer = Peer(friend)
    host.transports = [peer]
    entries = await submit(box, host, outbox_entry(friend.node_id), outbox_entry(friend.node_id))
    assert [(await final(box, e)).status for e in entries] == ["delivered", "delivered"]
    assert [len(c) for c in peer.calls] == [1, 1]


async def test_a_permanent_rejection_fails_the_entry_with_its_reason(
    box: Outbox, host: OutboxHostFake, friend: NodeIdentity
) -> None:
    host.transports = [BatchPeer(friend, status=REJECTED, reason=Reason.BLOCKED)]
    (entry,) = await submit(box, host, outbox_entry(friend.node_id))
    result = await final(box, entry)
    assert (result.status, result.path, result.error) == ("failed", "direct", "rejected: blocked")
    assert host.sends == [("failed", "direct")]


async def test_a_passing_rejection_keeps_the_entry_for_a_retry(
    box: Outbox, host: OutboxHostFake, friend: NodeIdentity
) -> None:
    host.transports = [BatchPeer(friend, status=REJECTED, reason=Reason.RATE_LIMITED)]
    (entry,) = await submit(box, host, outbox_entry(friend.node_id))
    result = await attempted(host, entry)
    assert (result.status, result.error) == ("queued", "rejected: rate_limited") and host.sends == []


async def test_a_rejection_without_a_reason_counts_as_internal_and_is_retried(
    box: Outbox, host: OutboxHostFake, friend: NodeIdentity
) -> None:
    host.transports = [BatchPeer(friend, status=REJECTED)]
    (entry,) = await submit(box, host, outbox_entry(friend.node_id))
    result = await attempted(host, entry)
    assert (result.status, result.error) == ("queued", "rejected: internal")


async def test_a_batch_ack_signed_by_another_key_delivers_nothing_and_is_reported(
    box: Outbox, host: OutboxHostFake, friend: NodeIdentity
) -> None:
    impostor = BatchPeer(NodeIdentity.generate())
    host.transports = [impostor]
    (entry,) = await submit(box, host, outbox_entry(friend.node_id))
    result = await attempted(host, entry)
    assert result.status == "queued" and "unverifiable batch ack" in (result.error or "")
    assert impostor.unverifiable == [friend.node_id]
    assert [name for name, _ in host.failures] == ["direct"]


async def test_a_single_ack_signed_by_another_key_is_reported(
    box: Outbox, host: OutboxHostFake, friend: NodeIdentity
) -> None:
    impostor = Peer(NodeIdentity.generate())
    host.transports = [impostor]
    (entry,) = await submit(box, host, outbox_entry(friend.node_id))
    result = await attempted(host, entry)
    assert result.status == "queued" and (result.error or "").startswith("unverifiable ack via direct")
    assert impostor.unverifiable == [friend.node_id]


async def test_an_envelope_the_batch_ack_does_not_answer_is_retried(
    box: Outbox, host: OutboxHostFake, friend: NodeIdentity
) -> None:
    peer = BatchPeer(friend)
    peer.skip = True
    host.transports = [peer]
    unanswered, answered = await submit(box, host, outbox_entry(friend.node_id), outbox_entry(friend.node_id))
    assert (await final(box, answered)).status == "delivered"
    result = await attempted(host, unanswered)
    assert (result.status, result.error) == ("queued", "direct: no ack for this envelope in the batch")


# -- no answer ------------------------------------------------------------------------


async def test_a_transport_error_keeps_the_entry_with_the_error_and_a_first_backoff(
    box: Outbox, host: OutboxHostFake, friend: NodeIdentity
) -> None:
    host.transports = [BatchPeer(friend, error=ConnectionError("refused"))]
    before = now_ms()
    (entry,) = await submit(box, host, outbox_entry(friend.node_id))
    result = await attempted(host, entry)
    assert (result.status, result.error, result.attempts) == ("queued", "direct: refused", 1)
    assert before + RETRY_INITIAL_MS // 2 <= result.next_attempt_ms <= now_ms() + RETRY_INITIAL_MS
    assert [(name, str(err)) for name, err in host.failures] == [("direct", "refused")]


@pytest.mark.parametrize(("attempts_before", "backoff_ms"), [(2, RETRY_INITIAL_MS * 4), (40, RETRY_MAX_MS)])
async def test_the_backoff_doubles_per_attempt_up_to_retry_max(
    box: Outbox, host: OutboxHostFake, friend: NodeIdentity, attempts_before: int, backoff_ms: int
) -> None:
    host.transports = [BatchPeer(friend, error=TimeoutError())]
    before = now_ms()
    (entry,) = await submit(box, host, outbox_entry(friend.node_id, attempts=attempts_before))
    result = await attempted(host, entry, attempts_before + 1)
    assert before + backoff_ms // 2 <= result.next_attempt_ms <= now_ms() + backoff_ms


@pytest.mark.parametrize("peer", [BatchPeer, Peer])
async def test_an_error_without_a_message_is_named_by_its_type(
    box: Outbox, host: OutboxHostFake, friend: NodeIdentity, peer: type[Peer]
) -> None:
    """A timeout's str() is empty: the entry's error must still say what happened."""
    host.transports = [peer(friend, error=TimeoutError())]
    (entry,) = await submit(box, host, outbox_entry(friend.node_id))
    assert (await attempted(host, entry)).error == "direct: TimeoutError"


async def test_a_transport_bug_is_recorded_as_internal_and_the_retry_kept(
    box: Outbox, host: OutboxHostFake, friend: NodeIdentity
) -> None:
    host.transports = [BatchPeer(friend, error=KeyError("bug"))]
    (entry,) = await submit(box, host, outbox_entry(friend.node_id))
    result = await attempted(host, entry)
    assert (result.status, result.error) == ("queued", "direct: internal error (KeyError)")


async def test_no_transport_for_the_friend_keeps_the_entry_saying_so(
    box: Outbox, host: OutboxHostFake, friend: NodeIdentity
) -> None:
    (entry,) = await submit(box, host, outbox_entry(friend.node_id))
    result = await attempted(host, entry)
    assert (result.status, result.error) == ("queued", "no transport can reach this friend")


async def test_the_next_transport_is_tried_when_one_fails(
    box: Outbox, host: OutboxHostFake, friend: NodeIdentity
) -> None:
    host.transports = [BatchPeer(friend, error=OSError("unreachable")), Peer(friend, name="relay")]
    (entry,) = await submit(box, host, outbox_entry(friend.node_id))
    result = await final(box, entry)
    assert (result.status, result.path) == ("delivered", "relay")


async def test_an_entry_handed_off_is_sent_and_offered_to_no_other_transport(
    box: Outbox, host: OutboxHostFake, friend: NodeIdentity
) -> None:
    relay, later = Relay(friend, name="relay"), Peer(friend, name="other")
    host.transports = [relay, later]
    before = now_ms()
    (entry,) = await submit(box, host, outbox_entry(friend.node_id))
    result = await attempted(host, entry)
    assert (result.status, result.path, result.error) == ("sent", "relay", None)
    assert later.calls == []
    # the async ack gets time before a re-send: at least half the longest backoff
    assert result.next_attempt_ms >= before + RETRY_MAX_MS // 2


# -- at the attempt --------------------------------------------------------------------


async def test_an_entry_past_its_ttl_fails_at_its_attempt_keeping_the_last_error(
    box: Outbox, host: OutboxHostFake, friend: NodeIdentity
) -> None:
    peer = BatchPeer(friend)
    host.transports = [peer]
    late = outbox_entry(friend.node_id, ttl_ms=-1, error="rejected: rate_limited")
    (entry,) = await submit(box, host, late)
    result = await final(box, entry)
    assert (result.status, result.error) == (
        "failed",
        f"{EXPIRED_ERROR} (last error: rejected: rate_limited)",
    )
    assert peer.calls == []


async def test_sealing_ahead_that_fails_is_done_again_at_the_attempt(
    box: Outbox,
    host: OutboxHostFake,
    friend: NodeIdentity,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    host.transports = [BatchPeer(friend)]
    seal_many = host.seal_many
    failures = iter([RuntimeError("no entropy")])

    def flaky(friend: Friend, entries: list[OutboxEntry]) -> list[bytes]:
        if (err := next(failures, None)) is not None:
            raise err
        return seal_many(friend, entries)

    monkeypatch.setattr(host, "seal_many", flaky)
    with caplog.at_level(logging.ERROR, logger="tmax_mesh.outbox"):
        (entry,) = await submit(box, host, outbox_entry(friend.node_id))
        assert (await final(box, entry)).status == "delivered"
    assert "sealing ahead failed" in caplog.text


async def test_a_batch_holds_no_more_envelope_bytes_than_a_peer_reads(friend: NodeIdentity) -> None:
    host = OutboxHostFake(config=core_config(messages__max_bytes=16_384))
    host.befriend(friend)
    peer = BatchPeer(friend)
    host.transports = [peer]
    box = Outbox(host)
    try:
        entries = await box.submit_many([outbox_entry(friend.node_id, bytes(6000)) for _ in range(5)])
        for e in entries:
            assert (await final(box, e)).status == "delivered"
    finally:
        await box.stop()
    assert sorted(len(c) for c in peer.calls) == [1, 2, 2]
    assert all(sum(map(len, c)) <= 16_384 for c in peer.calls)


async def test_only_the_last_sent_envelope_hashes_are_kept(
    box: Outbox, host: OutboxHostFake, friend: NodeIdentity
) -> None:
    relay = Relay(friend, name="relay")
    host.transports = [relay]
    old = [bytes([i]) * outbox.HASH_LEN for i in range(outbox.SENT_HASHES_KEPT)]
    (entry,) = await submit(box, host, outbox_entry(friend.node_id, sent_hashes=b"".join(old)))
    result = await attempted(host, entry)
    (envelope,) = relay.calls[0]
    assert result.sent_hashes == b"".join([*old[1:], env.envelope_hash(envelope)])


async def test_the_first_delivery_to_an_invited_friend_clears_its_invite(
    box: Outbox, host: OutboxHostFake, friend: NodeIdentity
) -> None:
    host.friends[friend.node_id].invite_token = b"signed invite"
    host.transports = [BatchPeer(friend)]
    (entry,) = await submit(box, host, outbox_entry(friend.node_id))
    await final(box, entry)
    assert host.first_contacts == [friend.node_id] and host.friends[friend.node_id].invite_token is None


# -- acks that arrive on their own -------------------------------------------------------


async def handed_off(box: Outbox, host: OutboxHostFake, friend: NodeIdentity) -> tuple[OutboxEntry, bytes]:
    """An entry the relay holds, and the envelope it took."""
    relay = Relay(friend, name="relay")
    host.transports = [relay]
    (entry,) = await submit(box, host, outbox_entry(friend.node_id))
    await attempted(host, entry)
    return entry, relay.calls[0][0]


def ack_for(signer: NodeIdentity, envelope: bytes, status: int = ACCEPTED, reason: str = "") -> bytes:
    p = env.parse(envelope, 1 << 20)
    return env.make_ack(
        signer,
        message_id=p.message_id,
        to_node_id=p.from_node_id,
        envelope_hash=p.digest,
        status=status,
        reason=reason,
    )


async def test_an_async_ack_for_a_handed_off_envelope_delivers_it(
    box: Outbox, host: OutboxHostFake, friend: NodeIdentity
) -> None:
    entry, envelope = await handed_off(box, host, friend)
    await box.handle_async_ack(ack_for(friend, envelope), host.friends[friend.node_id])
    assert (stored(host, entry).status, stored(host, entry).path) == ("delivered", "relay")
    assert host.sends == [("delivered", "relay")]


async def test_an_async_ack_cannot_change_a_final_entry(
    box: Outbox, host: OutboxHostFake, friend: NodeIdentity
) -> None:
    entry, envelope = await handed_off(box, host, friend)
    await box.handle_async_ack(ack_for(friend, envelope), host.friends[friend.node_id])
    updates = host.store.calls["outbox_update_many"]
    await box.handle_async_ack(
        ack_for(friend, envelope, REJECTED, Reason.BLOCKED), host.friends[friend.node_id]
    )
    assert host.store.calls["outbox_update_many"] == updates and stored(host, entry).status == "delivered"


async def test_an_async_ack_from_another_friend_is_ignored(
    box: Outbox, host: OutboxHostFake, friend: NodeIdentity
) -> None:
    entry, envelope = await handed_off(box, host, friend)
    other = NodeIdentity.generate()
    await box.handle_async_ack(ack_for(other, envelope), host.befriend(other))
    assert stored(host, entry).status == "sent"


async def test_an_unparseable_async_ack_is_dropped_with_a_line(
    box: Outbox, host: OutboxHostFake, friend: NodeIdentity, caplog: pytest.LogCaptureFixture
) -> None:
    entry, _ = await handed_off(box, host, friend)
    updates = host.store.calls["outbox_update_many"]
    with caplog.at_level(logging.INFO, logger="tmax_mesh.outbox"):
        await box.handle_async_ack(b"\xff junk", host.friends[friend.node_id])
    assert "dropping unparseable ack" in caplog.text
    assert host.store.calls["outbox_update_many"] == updates and stored(host, entry).status == "sent"


# -- the scheduler and waiters ----------------------------------------------------------


async def test_wait_final_gives_the_entry_as_it_is_when_the_time_is_up(
    box: Outbox, host: OutboxHostFake, friend: NodeIdentity
) -> None:
    entry, _ = await handed_off(box, host, friend)
    result = await box.wait_final(entry.message_id, 0.01)
    assert result is not None and result.status == "sent"
    assert await box.wait_final(b"\x00" * 16, 0.01) is None


async def test_the_scheduler_fails_entries_past_their_ttl_and_wakes_their_waiters(
    box: Outbox, host: OutboxHostFake, friend: NodeIdentity
) -> None:
    entry = outbox_entry(friend.node_id, ttl_ms=-1)
    host.store.outbox_put_many([entry])
    waiting = asyncio.create_task(box.wait_final(entry.message_id, 60))
    await box.start()
    result = await asyncio.wait_for(waiting, 10)  # woken, not timed out
    assert result is not None and (result.status, result.error) == ("failed", EXPIRED_ERROR)


async def test_the_scheduler_fails_what_waits_for_a_removed_friend(box: Outbox, host: OutboxHostFake) -> None:
    gone = outbox_entry(NodeIdentity.generate().node_id)
    host.store.outbox_put_many([gone])
    await box.start()
    result = await final(box, gone)
    assert (result.status, result.error) == ("failed", "not a friend any more")


async def test_a_transport_back_online_gets_what_it_held_again_at_once(
    box: Outbox, host: OutboxHostFake, friend: NodeIdentity
) -> None:
    entry, _ = await handed_off(box, host, friend)
    assert stored(host, entry).next_attempt_ms > now_ms()  # not due for seconds
    host.transports = [Peer(friend, name="relay")]  # the relay restarted and the friend is there now
    await box.start()
    box.kick(resend_handed_off_via="relay")
    result = await final(box, entry)
    assert (result.status, result.path) == ("delivered", "relay")


class StalePeer(Peer):
    """Answers a re-send with the friend's ack for an earlier copy of the same
    message (a relay cluster delivered the copy it held, and that ack is what
    comes back for the message id)."""

    def __init__(self, signer: NodeIdentity, earlier: bytes, **kw: Any) -> None:
        super().__init__(signer, **kw)
        self.earlier = earlier

    async def send(self, friend: Friend, envelope: bytes, timeout: float) -> bytes | None:
        self.calls.append([envelope])
        return ack_for(self.signer, self.earlier)


async def test_an_ack_for_an_earlier_copy_of_the_message_delivers_it_at_a_resend(
    box: Outbox, host: OutboxHostFake, friend: NodeIdentity
) -> None:
    entry, first_copy = await handed_off(box, host, friend)
    stale = StalePeer(friend, first_copy, name="relay")
    host.transports = [stale]
    await box.start()
    box.kick(resend_handed_off_via="relay")
    result = await final(box, entry)
    assert stale.calls and stale.calls[0][0] != first_copy  # a new copy went out (a fresh seal)
    assert (result.status, result.path) == ("delivered", "relay")
    assert stale.unverifiable == []
