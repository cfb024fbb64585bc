"""The outbox: persisted sends, retried with jittered exponential backoff.

``msg send`` stores an :class:`OutboxEntry` first; only then do transports
try it. A delivery counts only when the recipient's *signed* ack verifies, so
neither a relay nor an impostor can fake one. Entries past their TTL end
``failed``. Re-sends reuse the message id, so the recipient's dedup keeps
delivery exactly-once.

Due entries join a per-friend *lane*; at most ``LANE_BATCHES`` tasks per
friend drain it, each taking up to ``BATCH_MAX`` entries (and no more bytes
than one peer call may carry) at a time. A transport with ``send_batch``
carries the whole batch in one call and one signed batch ack; others get the
envelopes one by one, concurrently. Status updates of a batch are written in
one transaction. Lanes hold at most ``LANES_MAX_ENTRIES`` entries
(``LANES_MAX_BYTES``) in memory; the rest wait in the database until the
scheduler loads them, sealed ahead, as the lanes drain.

Envelopes are sealed on the node's crypto thread, never on the event loop. A
new message's first envelope is sealed while its outbox row commits, so it can
leave as soon as it is durable; a re-send is sealed again at its attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from tmax_core import envelope as env
from tmax_core.clock import now_ms
from tmax_core.crypto import to_checksum
from tmax_core.errors import EnvelopeError, Reason
from tmax_core.model import OutboxEntry
from tmax_core.printable import bounded_printable
from tmax_core.proto import mesh_pb2
from tmax_core.store import expired_error

if TYPE_CHECKING:
    from tmax_core.model import Friend, Transport
    from tmax_core.nodeports import OutboxHost

log = logging.getLogger("tmax_mesh.outbox")

# Rejections that will not change by trying again.
PERMANENT = frozenset(
    {
        Reason.MALFORMED,
        Reason.WRONG_RECIPIENT,
        Reason.BLOCKED,
        Reason.UNKNOWN_SENDER,
        Reason.BAD_SIGNATURE,
        Reason.ID_KEY_MISMATCH,
        Reason.KEY_CHANGED,
        Reason.INVITE_INVALID,
        Reason.INVITE_USED,
        Reason.INVITE_EXPIRED,
        Reason.INVITE_REVOKED,
        Reason.INVITE_UNKNOWN,
        Reason.DECRYPT_FAILED,
        Reason.SCOPE_NOT_GRANTED,
        Reason.UNKNOWN_SCOPE,
        Reason.PAYLOAD_INVALID,
        Reason.TOO_LARGE,
        # Final: the recipient's quota frees only when its owner reads or
        # deletes messages, which retrying cannot bring about.
        Reason.QUOTA_EXCEEDED,
    }
)
FINAL = frozenset({"delivered", "failed"})
SEND_TIMEOUT_S = 10.0
BATCH_MAX = 128  # envelopes per transport call
# Up to this many new messages are sealed on the event loop while the database
# thread commits them (a thread hop would cost more than sealing them); more
# go to the crypto thread.
SEAL_INLINE_MAX = 4
# Batches in flight per friend: the recipient verifies one while the next
# travels and its answer comes back (with 4, the recipient of a 2-core pair
# of nodes sat idle 15 % of the time, waiting on the round trip).
LANE_BATCHES = 8
MAX_BATCHES = 64  # batches in flight over all friends
ACCEPTED = (mesh_pb2.ACK_STATUS_ACCEPTED, mesh_pb2.ACK_STATUS_DUPLICATE)
# An entry remembers the hashes of its last few envelopes (each attempt may
# seal anew), so that an ack arriving late, after store-and-forward, still
# finds the envelope it answers. One older than that is ignored: the message
# is sent again and answered "duplicate" under the new hash.
HASH_LEN = 32
SENT_HASHES_KEPT = 8
# An envelope sealed ahead that waited longer than this in its lane is sealed
# again, so its timestamp stays well inside the recipient's replay window.
RESEAL_AFTER_MS = 60_000
# Entries waiting in lanes hold their body and sealed envelope in memory. Past
# either bound (over all lanes), new entries wait in the database only, and
# the scheduler loads them as the lanes drain, so a sender much faster than
# its friend costs disk, not memory.
LANES_MAX_ENTRIES = 65536
LANES_MAX_BYTES = 32 * 1024 * 1024
SCHEDULER_BATCH = 2048  # due entries the scheduler loads per pass (a pass sorts all due ids)
ENTRY_OVERHEAD = 512  # bytes of Python objects around an entry waiting in a lane
SEALING_ADDS = 512  # about what sealing adds to a body (header, keys, signature, contact card)


@dataclass
class _Queued:
    """An entry waiting in a lane, with its envelope if it was sealed ahead."""

    entry: OutboxEntry
    envelope: bytes | None = None
    sealed_at_ms: int = 0

    @property
    def size(self) -> int:
        """Bytes it holds (roughly): body, envelope and the objects around them."""
        envelope = len(self.envelope) if self.envelope is not None else 0
        return len(self.entry.body) + envelope + ENTRY_OVERHEAD


@dataclass
class _Lane:
    """Entries waiting to go to one friend, and how many tasks drain them."""

    queue: deque[_Queued] = field(default_factory=deque)
    active: int = 0


@dataclass
class _Attempt:
    """One entry's progress through one send attempt."""

    entry: OutboxEntry
    envelope: bytes
    final: str | None = None  # delivered | failed once decided
    path: str | None = None
    handed_off: str | None = None  # transport that holds it for later delivery
    error: str | None = None

    @cached_property
    def digest(self) -> bytes:
        """What the recipient's ack must name: the hash of this envelope."""
        return env.envelope_hash(self.envelope)


def _hashes(packed: bytes) -> list[bytes]:
    return [packed[i : i + HASH_LEN] for i in range(0, len(packed), HASH_LEN)]


class Outbox:
    def __init__(self, node: OutboxHost) -> None:
        self.node = node
        self.retry_initial_ms = node.duration_ms("messages.retry_initial")
        self.retry_max_ms = node.duration_ms("messages.retry_max")
        # The largest envelope a peer reads, and so also the largest batch ack
        # accepted and the most envelope bytes put in one batch.
        self._max_bytes = node.config.get("messages.max_bytes")
        self._lanes: dict[bytes, _Lane] = {}
        self._pending: set[bytes] = set()  # ids in a lane or being sent
        self._waiting = 0  # entries in lanes (not yet taken into a batch)
        self._waiting_bytes = 0
        self._held_back = False  # an entry stayed in the database because lanes were full
        self._slots = asyncio.Semaphore(MAX_BATCHES)
        self._wake = asyncio.Event()
        self._resend_via: set[str] = set()
        self._waiters: dict[bytes, list[asyncio.Future]] = {}
        self._task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._scheduler(), name="outbox-scheduler")

    async def stop(self) -> None:
        tasks = [t for t in [self._task, *self._tasks] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def submit_many(self, entries: list[OutboxEntry]) -> list[OutboxEntry]:
        """Persist new messages in one transaction, then start sending them.

        Sealing overlaps the commit where it pays: many envelopes are sealed on
        the crypto thread while the database thread commits them; a few are
        sealed right here (their small commit may already have run inline, see
        :meth:`Node.db_batch`)."""
        if log.isEnabledFor(logging.DEBUG):
            for entry in entries:
                log.debug(
                    "message %s to %s: accepted",
                    entry.message_id.hex(),
                    to_checksum(entry.to_node_id),
                    extra={"message_id": entry.message_id.hex(), "event": "accepted"},
                )
        persisting = self.node.db_batch(self.node.store.outbox_put_many, entries)
        ahead = entries[: self._room_for(entries)]  # the rest wait in the database, sealed later
        if len(ahead) > SEAL_INLINE_MAX:
            sealing = asyncio.ensure_future(self.node.crypto(self._seal, ahead))
            try:
                await persisting
            except BaseException:
                sealing.cancel()
                raise
            self._spawn(self._launch_when_sealed(entries, sealing))
            return entries
        try:
            sealed = self._seal(ahead)
        except Exception:
            log.exception("sealing ahead failed; the send attempt seals again")
            sealed = {}
        await persisting
        self._launch_all(entries, sealed)
        await asyncio.sleep(0)  # let the send start before the caller's reply is written
        return entries

    @property
    def in_memory(self) -> tuple[int, int]:
        """Entries waiting in lanes (not yet in a batch) and the bytes they hold."""
        return self._waiting, self._waiting_bytes

    def kick(self, resend_handed_off_via: str | None = None) -> None:
        """Retry due entries now (a transport came up, a friend came online...).

        ``resend_handed_off_via``: a transport that just (re)connected; entries
        it had accepted for later delivery (``sent``) are due again at once, since
        an intermediary that restarted has lost them (duplicates are harmless)."""
        if resend_handed_off_via is not None:
            self._resend_via.add(resend_handed_off_via)
        self._wake.set()

    async def wait_final(self, message_id: bytes, timeout: float) -> OutboxEntry | None:
        """Wait until the entry is delivered or failed, or ``timeout`` passes."""
        fut = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(message_id, []).append(fut)
        try:
            entry = await self.node.db(self.node.store.outbox_get, message_id)
            if entry is None or entry.status in FINAL:
                return entry
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            pass
        finally:
            waiters = self._waiters.get(message_id, [])
            if fut in waiters:
                waiters.remove(fut)
            if not waiters:
                self._waiters.pop(message_id, None)
        return await self.node.db(self.node.store.outbox_get, message_id)

    async def handle_async_ack(self, ack_bytes: bytes, sender_friend: Friend) -> None:
        """An ack that arrived on its own (relayed after store-and-forward)."""
        try:
            body = mesh_pb2.AckBody.FromString(mesh_pb2.SignedAck.FromString(ack_bytes).body)
        except Exception:
            log.info("dropping unparseable ack from %s", to_checksum(sender_friend.node_id))
            return
        entry = await self.node.db(self.node.store.outbox_get, body.message_id)
        if entry is None or entry.status in FINAL or entry.to_node_id != sender_friend.node_id:
            return
        attempt = _Attempt(entry, b"")
        self._apply_single_ack(attempt, sender_friend, ack_bytes, "relay", _hashes(entry.sent_hashes))
        if attempt.final is not None:
            await self._record(sender_friend, [attempt])

    # -- internals ---------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _full(self) -> bool:
        return self._waiting >= LANES_MAX_ENTRIES or self._waiting_bytes >= LANES_MAX_BYTES

    def _has_room(self) -> bool:
        """The lanes are at most half full: time to load more from the database."""
        return self._waiting <= LANES_MAX_ENTRIES // 2 and self._waiting_bytes <= LANES_MAX_BYTES // 2

    def _room_for(self, entries: list[OutboxEntry]) -> int:
        """How many of ``entries`` (in order) fit in the lanes now, with their
        envelopes (about the body's size again)."""
        budget = LANES_MAX_BYTES - self._waiting_bytes
        fits = 0
        for entry in entries[: max(0, LANES_MAX_ENTRIES - self._waiting)]:
            budget -= 2 * len(entry.body) + SEALING_ADDS + ENTRY_OVERHEAD
            if budget < 0:
                break
            fits += 1
        return fits

    def _seal(self, entries: list[OutboxEntry]) -> dict[bytes, bytes]:
        """``{message_id: envelope}`` for the entries to current friends."""
        groups: dict[bytes, list[OutboxEntry]] = {}
        for entry in entries:
            groups.setdefault(entry.to_node_id, []).append(entry)
        sealed: dict[bytes, bytes] = {}
        for node_id, group in groups.items():
            friend = self.node.friends.get(node_id)
            if friend is not None:
                envelopes = self.node.seal_many(friend, group)
                sealed.update(zip((e.message_id for e in group), envelopes, strict=True))
        return sealed

    async def _launch_when_sealed(self, entries: list[OutboxEntry], sealing: asyncio.Future) -> None:
        try:
            sealed = await sealing
        except Exception:
            log.exception("sealing ahead failed; each attempt seals its own envelopes")
            sealed = {}
        self._launch_all(entries, sealed)

    def _launch_all(self, entries: list[OutboxEntry], sealed: dict[bytes, bytes]) -> None:
        now = now_ms()
        for entry in entries:
            self._launch(entry, sealed.get(entry.message_id), now)

    def _launch(self, entry: OutboxEntry, envelope: bytes | None = None, sealed_at_ms: int = 0) -> None:
        if entry.message_id in self._pending:
            return
        queued = _Queued(entry, envelope, sealed_at_ms)
        if self._waiting and (
            self._waiting >= LANES_MAX_ENTRIES or self._waiting_bytes + queued.size > LANES_MAX_BYTES
        ):
            self._held_back = True  # it is due in the database: the scheduler launches it later
            return
        self._pending.add(entry.message_id)
        self._waiting += 1
        self._waiting_bytes += queued.size
        lane = self._lanes.setdefault(entry.to_node_id, _Lane())
        lane.queue.append(queued)
        if lane.active < LANE_BATCHES:
            lane.active += 1
            self._spawn(self._drain(entry.to_node_id, lane))

    async def _drain(self, to_node_id: bytes, lane: _Lane) -> None:
        try:
            while lane.queue:
                batch = self._take_batch(lane.queue)
                self._waiting -= len(batch)
                self._waiting_bytes -= sum(q.size for q in batch)
                if self._held_back and self._has_room():
                    self._held_back = False
                    self._wake.set()  # room again: load what waits in the database
                try:
                    async with self._slots:
                        await self._attempt(to_node_id, batch)
                except Exception:  # never lose the retry: the scheduler picks them up again
                    log.exception("send attempt to %s failed", to_checksum(to_node_id))
                finally:
                    self._pending.difference_update(q.entry.message_id for q in batch)
        finally:
            lane.active -= 1
            if lane.active == 0 and not lane.queue:
                self._lanes.pop(to_node_id, None)

    async def _launch_due(self, now: int) -> None:
        """Load due entries that are not on their way yet into the lanes, as
        many as fit, sealed ahead on the crypto thread (not one batch at a time
        in its attempt)."""
        if self._full():  # nothing could be launched: spare the query
            self._held_back = True
            return
        # Entries already on their way come first in due order: skip them.
        due = await self.node.db(self.node.store.outbox_due, now, SCHEDULER_BATCH, frozenset(self._pending))
        fits = due[: self._room_for(due)]
        if fits:
            await self._launch_when_sealed(fits, asyncio.ensure_future(self.node.crypto(self._seal, fits)))
        if len(fits) < len(due) or len(due) == SCHEDULER_BATCH:
            self._held_back = True  # more are due: load them as the lanes drain

    def _take_batch(self, queue: deque[_Queued]) -> list[_Queued]:
        """The next entries of a lane that fit one transport call: at most
        ``BATCH_MAX``, and (beyond the first) at most ``messages.max_bytes`` of
        envelopes in all, the most a peer's gRPC server reads in one message."""
        batch = [queue.popleft()]
        size = self._envelope_size(batch[0])
        while queue and len(batch) < BATCH_MAX:
            size += self._envelope_size(queue[0])
            if size > self._max_bytes:
                break
            batch.append(queue.popleft())
        return batch

    @staticmethod
    def _envelope_size(q: _Queued) -> int:
        return len(q.envelope) if q.envelope is not None else len(q.entry.body) + env.BODY_HEADROOM

    async def _scheduler(self) -> None:
        while True:
            self._wake.clear()  # a wake-up during this pass means: one more pass
            try:
                now = now_ms()
                while self._resend_via:
                    await self.node.db(self.node.store.outbox_due_again, self._resend_via.pop(), now)
                for message_id in await self.node.db(self.node.store.outbox_expire, now):
                    log.info("message %s failed: ttl passed", message_id.hex())
                    self._notify(message_id)
                await self._launch_due(now)
            except Exception:
                log.exception("outbox scheduler pass failed")
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow
            # the cancellation that stop() sends when the wake-up lands with it.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(1.0, self.retry_initial_ms / 1000)):
                    await self._wake.wait()

    async def _attempt(self, to_node_id: bytes, queued: list[_Queued]) -> None:
        """One send attempt for a batch of entries to one friend."""
        node = self.node
        friend = node.friends.get(to_node_id)
        now = now_ms()
        live: list[_Queued] = []
        done: list[_Attempt] = []
        for q in queued:
            entry = q.entry
            if friend is None:
                done.append(_Attempt(entry, b"", final="failed", error="not a friend any more"))
            elif entry.expires_at_ms <= now:
                done.append(_Attempt(entry, b"", final="failed", error=expired_error(entry.error)))
            else:
                entry.attempts += 1
                if q.envelope is None or now - q.sealed_at_ms > RESEAL_AFTER_MS:
                    q.envelope = None
                live.append(q)
        to_seal = [q for q in live if q.envelope is None]
        if to_seal and friend is not None:
            envelopes = await node.crypto(node.seal_many, friend, [q.entry for q in to_seal])
            for q, envelope in zip(to_seal, envelopes, strict=True):
                q.envelope = envelope
        attempts = [_Attempt(q.entry, q.envelope or b"") for q in live]
        last_error = "no transport can reach this friend"
        if friend is not None and attempts:
            for transport in node.transports_for(friend):
                open_ = [a for a in attempts if a.final is None and a.handed_off is None]
                if not open_:
                    break
                try:
                    await self._send_with(transport, friend, open_)
                except (ConnectionError, TimeoutError, OSError) as err:
                    last_error = f"{transport.name}: {str(err) or type(err).__name__}"
                    node.transport_failed(transport, friend, err)
                except Exception as err:  # a transport bug must not lose the retry
                    log.exception("transport %s raised while sending", transport.name)
                    last_error = f"{transport.name}: internal error ({type(err).__name__})"
                    node.transport_failed(transport, friend, err)
        for a in attempts:
            if a.final is None and a.handed_off is None and a.error is None:
                a.error = last_error
        await self._record(friend, done + attempts)
        if friend is not None:
            node.prepare_ephemeral(friend)  # after the attempt: the refill does not compete with it

    async def _send_with(self, transport: Transport, friend: Friend, attempts: list[_Attempt]) -> None:
        """Offer ``attempts`` to one transport; marks each final, handed off, or with an error."""
        send_batch = getattr(transport, "send_batch", None)
        ack = None
        if send_batch is not None:
            ack = await send_batch(friend, [a.envelope for a in attempts], SEND_TIMEOUT_S)
        if ack is not None:  # None: the transport could not carry them as a batch
            try:
                entries = env.verify_ack_batch(
                    ack,
                    expected_signer_public_key=friend.public_key,
                    expected_signer_node_id=friend.node_id,
                    sender_node_id=self.node.identity.node_id,
                    max_bytes=self._max_bytes,
                )
            except EnvelopeError as err:
                self._answer_unverifiable(transport, friend)
                raise ConnectionError(f"unverifiable batch ack: {err}") from None
            for a in attempts:
                entry = entries.get((a.entry.message_id, a.digest))
                if entry is None:
                    a.error = f"{transport.name}: no ack for this envelope in the batch"
                else:
                    self._apply_status(a, entry.status, entry.reason, entry.detail, transport.name)
            return
        results = await asyncio.gather(
            *(transport.send(friend, a.envelope, SEND_TIMEOUT_S) for a in attempts), return_exceptions=True
        )
        failures = []
        for a, result in zip(attempts, results, strict=True):
            if isinstance(result, BaseException):
                a.error = f"{transport.name}: {str(result) or type(result).__name__}"
                failures.append(result)
            elif result is None:  # accepted by an intermediary (store-and-forward)
                a.handed_off = transport.name
            elif not self._apply_single_ack(a, friend, result, transport.name, self._answerable(a)):
                self._answer_unverifiable(transport, friend)
        if failures and len(failures) == len(attempts):
            raise failures[0] if isinstance(failures[0], Exception) else ConnectionError(str(failures[0]))

    @staticmethod
    def _answerable(a: _Attempt) -> list[bytes]:
        """The envelopes an ack at this attempt may answer: this copy, and the
        earlier copies of the message still in flight somewhere (a relay may
        deliver the copy it held and hand back that ack for the message id)."""
        return [*_hashes(a.entry.sent_hashes), a.digest]

    @staticmethod
    def _answer_unverifiable(transport: Transport, friend: Friend) -> None:
        """Tell a transport that its answer did not carry the friend's signed ack
        (an impostor or a broken peer where it delivered), if it wants to know."""
        told = getattr(transport, "answer_unverifiable", None)
        if told is not None:
            told(friend)

    def _apply_single_ack(
        self, a: _Attempt, friend: Friend, ack: bytes, path: str, envelope_hashes: list[bytes]
    ) -> bool:
        """Apply a verified ack's status to ``a``; False if the ack does not
        verify or answers none of ``envelope_hashes``."""
        try:
            body = env.verify_ack(
                ack,
                expected_signer_public_key=friend.public_key,
                expected_signer_node_id=friend.node_id,
                sender_node_id=self.node.identity.node_id,
                message_id=a.entry.message_id,
                envelope_hashes=envelope_hashes,
            )
        except EnvelopeError as err:
            a.error = f"unverifiable ack via {path}: {err}"
            log.warning("message %s: %s", a.entry.message_id.hex(), a.error)
            return False
        self._apply_status(a, body.status, body.reason, body.detail, path)
        return True

    @staticmethod
    def _apply_status(a: _Attempt, status: int, reason: str, detail: str, path: str) -> None:
        """``reason`` and ``detail`` are the friend's text (signed, but chosen by
        it): escaped and cut before they are recorded, shown and logged."""
        if status in ACCEPTED:
            a.final, a.path, a.error = "delivered", path, None
            return
        reason = reason or Reason.INTERNAL
        shown = bounded_printable(reason, 64)
        a.error = f"rejected: {shown}" + (f" ({bounded_printable(detail)})" if detail else "")
        if reason in PERMANENT:
            a.final, a.path = "failed", path

    async def _record(self, friend: Friend | None, attempts: list[_Attempt]) -> None:
        """Write the outcome of every attempt in one transaction and wake waiters."""
        now = now_ms()
        updates: list[tuple[bytes, dict[str, Any]]] = []
        for a in attempts:
            e = a.entry
            if a.final == "delivered":
                fields: dict[str, Any] = {
                    "status": "delivered",
                    "path": a.path,
                    "error": None,
                    "delivered_at_ms": now,
                }
            elif a.final == "failed":
                fields = {"status": "failed", "error": a.error}
                if a.path is not None:
                    fields["path"] = a.path
                log.info(
                    "message %s to %s failed: %s", e.message_id.hex(), to_checksum(e.to_node_id), a.error
                )
            else:
                backoff = min(self.retry_max_ms, self.retry_initial_ms * 2 ** min(max(e.attempts, 1) - 1, 16))
                if a.handed_off:  # the relay holds it; give the async ack time before re-sending
                    backoff = max(backoff, self.retry_max_ms)
                fields = {
                    "status": "sent" if a.handed_off else e.status,
                    "path": a.handed_off,
                    "next_attempt_ms": now + int(backoff * random.uniform(0.5, 1.0)),
                    "error": None if a.handed_off else a.error,
                }
            fields["attempts"] = e.attempts
            if a.envelope and a.final is None:  # a late ack may still answer this envelope
                e.sent_hashes = b"".join(_hashes(e.sent_hashes + a.digest)[-SENT_HASHES_KEPT:])
                fields["sent_hashes"] = e.sent_hashes
            updates.append((e.message_id, fields))
        await self.node.db_batch(self.node.store.outbox_update_many, updates)
        if (
            friend is not None
            and friend.invite_token is not None
            and any(a.final == "delivered" for a in attempts)
        ):
            await self.node.first_contact_done(friend)
        for a in attempts:
            if a.final is not None:
                self.node.count_send(a.final, a.path)
                self._notify(a.entry.message_id)

    def _notify(self, message_id: bytes) -> None:
        for fut in self._waiters.get(message_id, []):
            if not fut.done():
                fut.set_result(None)
