"""Store-and-forward of a relay cluster in JetStream (DESIGN §15).

One stream, ``TMAX_HELD``, one subject per recipient (``tmax.held.<id>``), each
message the ``HostFrame{deliver}`` to write to the recipient:

- per-subject limits are the per-recipient cap (``--queue-max-messages``),
  with ``discard new`` per subject so a full queue refuses the newest envelope
  (``queue_full``) instead of silently dropping an older one;
- ``max_age`` is the queue TTL and ``max_bytes`` the total cap.

A held envelope leaves the stream only when its recipient acknowledges it, so
it survives the crash of any member (and, with replicas, of a NATS server) and
is drained by whichever member the recipient registers on next.

The ``tmax_held_index`` KV bucket, shared by every member, keeps what the
stream cannot:

- ``m.<recipient>.<sender>.<message id>``: the envelope is held (its sequence
  and size). Created before the envelope is published, so a sender's outbox
  re-sending a message answered ``Queued`` adds no second copy; deleted when
  the recipient acknowledges it, so a re-send after a lost ack is held again.
  Until the envelope is published the entry is empty and lives ``PENDING_S``
  only, and a re-send meanwhile is answered ``unavailable`` (the outbox retries
  soon): a member killed in between, or a NATS failure, delays the message,
  never loses it.
- ``s.<sender>``: the bytes held for the sender, updated by compare-and-set,
  so one sender cannot take more than ``--queue-sender-bytes`` of the cluster's
  store whichever members it sends through (``sender_full``). An entry expires
  a queue TTL after its last change, when everything it counted has expired too.

Each member also limits how fast one sender gets envelopes held
(``HOLD_RATE_PER_S``), which bounds the compare-and-set traffic one sender causes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats.errors
import nats.js.errors
from google.protobuf.message import DecodeError
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from tmax_core.tokenbucket import TokenBucket
from tmax_mesh_relay.members import open_bucket
from tmax_mesh_relay.proto import host_pb2
from tmax_mesh_relay.storeforward import QueueLimits

log = logging.getLogger("tmax_mesh.host")

STREAM = "TMAX_HELD"
PREFIX = "tmax.held."
FRAME_OVERHEAD = 1024
"""Bytes a held frame may need beyond the largest envelope (frame fields, ids)."""
PER_SUBJECT_FULL = 10077
"""JetStream's error code for a subject at its message limit with ``discard new``."""
INDEX_BUCKET = "tmax_held_index"
INDEX_ENTRY_BYTES = 512
"""The largest index value (a sequence and a size, or a byte count), with room to spare."""
PENDING_S = 60.0
"""How long an index entry lives before its envelope is published (then: the queue TTL)."""
CAS_TRIES = 5
"""Compare-and-set attempts on a sender's byte count before answering ``unavailable``."""
HOLD_RATE_PER_S = 20.0
HOLD_BURST = 100
"""Envelopes one sender may get held through one member: per second, and at once."""
ELECTION_TRIES = 20
ELECTION_RETRY_S = 0.25
"""A write that finds no stream leader (JetStream is electing one, e.g. after a NATS
server died) is tried again for up to ELECTION_TRIES x ELECTION_RETRY_S, as nats.go's
publish does, rather than refused at once: a refusal makes the sender's outbox back off."""
HOLD_BUCKETS_MAX = 10_000
"""Senders whose hold rate a member tracks before it forgets the idle ones."""


def held_subject(node_id: bytes) -> str:
    return f"{PREFIX}{node_id.hex()}"


def stream_config(limits: QueueLimits, max_frame_bytes: int, replicas: int) -> StreamConfig:
    return StreamConfig(
        name=STREAM,
        description="tmax-host: envelopes held for offline nodes",
        subjects=[f"{PREFIX}*"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_msgs_per_subject=limits.max_messages,
        discard=DiscardPolicy.NEW,
        discard_new_per_subject=True,
        max_age=limits.ttl_s,
        max_bytes=limits.total_bytes,
        max_msg_size=max_frame_bytes + FRAME_OVERHEAD,
        num_replicas=replicas,
    )


T = TypeVar("T")


async def through_elections(call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, tried again while JetStream answers that no stream leader is there."""
    for _ in range(ELECTION_TRIES - 1):
        try:
            return await call()
        except nats.js.errors.NoStreamResponseError:
            await asyncio.sleep(ELECTION_RETRY_S)
    return await call()


def message_key(to: bytes, sender: bytes, message_id: bytes) -> str:
    return f"m.{to.hex()}.{sender.hex()}.{message_id.hex()}"


def sender_key(sender: bytes) -> str:
    return f"s.{sender.hex()}"


class HeldStream:
    """The cluster's held envelopes; NATS failures are reported, never raised."""

    def __init__(
        self,
        js: Any,
        index: Any,
        sender_bytes: int,
        errors: dict[str, int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.js = js
        self.index = index
        self.sender_bytes = sender_bytes
        self.errors = errors
        self.clock = clock
        self._rates: dict[bytes, TokenBucket] = {}

    @classmethod
    async def open(
        cls,
        nc: Any,
        limits: QueueLimits,
        max_frame_bytes: int,
        replicas: int,
        errors: dict[str, int],
        clock: Callable[[], float] = time.monotonic,
    ) -> HeldStream:
        """Bind the stream and its index, creating them if no member has yet (existing
        ones keep their config)."""
        js = nc.jetstream()
        try:
            await js.stream_info(STREAM)
        except nats.js.errors.NotFoundError:
            await js.add_stream(stream_config(limits, max_frame_bytes, replicas))
        index = await open_bucket(
            nc,
            INDEX_BUCKET,
            replicas,
            limits.ttl_s,
            max_bytes=limits.total_bytes,
            max_value_size=INDEX_ENTRY_BYTES,
        )
        return cls(js, index, limits.sender_bytes, errors, clock)

    async def put(self, to: bytes, frame: host_pb2.HostFrame) -> str | None:
        """Hold ``frame`` for ``to`` once: None (held, or already held), ``queue_full``,
        ``sender_full``, ``hold_rate_limited`` or ``unavailable`` (not held)."""
        deliver = frame.deliver
        sender = bytes(getattr(deliver, "from"))
        if not self._rate(sender).take(self.clock()):
            return "hold_rate_limited"
        data = frame.SerializeToString()
        key = message_key(to, sender, deliver.message_id)
        try:
            try:
                await through_elections(lambda: self.index.create(key, b"", msg_ttl=PENDING_S))
            except nats.js.errors.KeyWrongLastSequenceError:
                return await self._already(key)
            refused = await self._charge(sender, len(data))
            if refused is None:
                refused = await self._publish(to, data, key)
                if refused is not None:
                    await self._charge(sender, -len(data))
            if refused is not None:
                await self.index.delete(key)
            return refused
        except (TimeoutError, nats.errors.Error) as err:
            self._failed("holding an envelope", err)
            return "unavailable"

    async def _already(self, key: str) -> str | None:
        """A re-send of an envelope in the index: None if it is held, ``unavailable``
        if it is still being held (or that failed and its pending entry is left over):
        the sender's outbox then retries soon, rather than after a ``Queued``."""
        try:
            entry = await self.index.get(key)
        except nats.js.errors.KeyNotFoundError:
            return "unavailable"  # acknowledged (or expired) meanwhile: the retry holds it
        return None if entry.value else "unavailable"

    async def _publish(self, to: bytes, data: bytes, key: str) -> str | None:
        """Append to the stream and record where in the index: None (held),
        ``queue_full`` or ``unavailable``."""
        try:
            ack = await through_elections(lambda: self.js.publish(held_subject(to), data, stream=STREAM))
        except (TimeoutError, nats.errors.Error) as err:
            if isinstance(err, nats.js.errors.APIError) and err.err_code == PER_SUBJECT_FULL:
                return "queue_full"
            self._failed("holding an envelope", err)
            return "unavailable"
        try:
            await self.index.put(key, f"{ack.seq} {len(data)}".encode())
        except (TimeoutError, nats.errors.Error) as err:
            # Held all the same; its pending entry expires, and a re-send may add a copy.
            self._failed("indexing a held envelope", err)
        return None

    def _failed(self, what: str, err: BaseException) -> None:
        self.errors["jetstream"] += 1
        log.info("cluster: %s failed: %s", what, err)

    def _rate(self, sender: bytes) -> TokenBucket:
        bucket = self._rates.get(sender)
        if bucket is None:
            now = self.clock()
            if len(self._rates) >= HOLD_BUCKETS_MAX:
                self._rates = {s: b for s, b in self._rates.items() if not b.full(now)}
            bucket = self._rates[sender] = TokenBucket(HOLD_RATE_PER_S, HOLD_BURST, now)
        return bucket

    async def _charge(self, sender: bytes, delta: int) -> str | None:
        """Add ``delta`` bytes to what ``sender`` has held: ``sender_full`` past the cap,
        ``unavailable`` if other members kept changing it meanwhile."""
        key = sender_key(sender)
        for _ in range(CAS_TRIES):
            try:
                entry = await self.index.get(key)
                used, last = int(entry.value or b"0"), entry.revision
            except nats.js.errors.KeyNotFoundError:
                used, last = 0, None
            total = max(0, used + delta)
            if delta > 0 and total > self.sender_bytes:
                return "sender_full"
            try:
                if last is None:
                    await self.index.create(key, str(total).encode())
                else:
                    await self.index.update(key, str(total).encode(), last=last)
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
            return None
        return "unavailable"

    async def next(self, node_id: bytes, seq: int) -> tuple[int, host_pb2.HostFrame] | None:
        """The first envelope held for ``node_id`` at or after ``seq`` (None: no more, or NATS failed)."""
        while True:
            try:
                msg = await self.js.get_msg(STREAM, seq=seq, subject=held_subject(node_id), next=True)
            except nats.js.errors.NotFoundError:
                return None
            except (TimeoutError, nats.errors.Error) as err:
                self._failed("reading held envelopes", err)
                return None
            try:
                frame = host_pb2.HostFrame.FromString(msg.data or b"")
            except DecodeError:
                frame = None
            if frame is not None and frame.WhichOneof("frame") == "deliver":
                return msg.seq, frame
            self.errors["malformed"] += 1
            seq = msg.seq + 1

    async def remove(self, to: bytes, sender: bytes, message_id: bytes, seq: int) -> None:
        """Drop a delivered envelope and its index entry, and uncharge its sender
        (already gone, e.g. expired, is fine)."""
        key = message_key(to, sender, message_id)
        try:
            try:
                entry = await self.index.get(key)
                seq, size = (int(n) for n in (entry.value or b"").split())
            except (nats.js.errors.KeyNotFoundError, ValueError):
                size = 0  # held before the index, or its entry expired: the stream's seq
            try:
                await self.js.delete_msg(STREAM, seq)
            except nats.js.errors.NotFoundError:
                size = 0  # removed already (another ack of it), or expired
            if size:
                await self._charge(sender, -size)
            await self.index.delete(key)
        except (TimeoutError, nats.errors.Error) as err:
            self._failed("removing a delivered envelope", err)
