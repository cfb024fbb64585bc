"""Bounded in-memory store-and-forward for offline recipients.

Every dimension is capped: messages and bytes per recipient, bytes per
sender (so one sender cannot fill the host for everyone), total bytes, the
number of recipients with a queue, and a TTL per message. A message is keyed
by ``(sender, message_id)``, so a sender's outbox re-sending the same message
does not store it twice.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

ITEM_OVERHEAD = 128
"""Bytes counted per stored message on top of its envelope (keys, bookkeeping)."""


@dataclass(slots=True)
class Held:
    sender: bytes
    message_id: bytes
    envelope: bytes
    expires_at: float  # clock() time

    @property
    def key(self) -> tuple[bytes, bytes]:
        return (self.sender, self.message_id)

    @property
    def cost(self) -> int:
        return len(self.envelope) + ITEM_OVERHEAD


@dataclass(frozen=True)
class QueueLimits:
    max_messages: int = 1000
    max_bytes: int = 16 * 1024 * 1024
    ttl_s: float = 24 * 3600.0
    total_bytes: int = 256 * 1024 * 1024
    sender_bytes: int = 64 * 1024 * 1024
    max_recipients: int = 100_000


class StoreAndForward:
    def __init__(self, limits: QueueLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._queues: dict[bytes, OrderedDict[tuple[bytes, bytes], Held]] = {}
        self._bytes: dict[bytes, int] = {}
        self._sender_bytes: dict[bytes, int] = {}
        self.total_bytes = 0
        self.total_messages = 0

    def __len__(self) -> int:
        return self.total_messages

    def depth(self, recipient: bytes) -> int:
        return len(self._queues.get(recipient, ()))

    def put(self, recipient: bytes, item: Held) -> str | None:
        """Store ``item``; ``None`` if stored (or already stored), else the refusal reason:
        ``queue_full`` (recipient's count/bytes), ``sender_full``, ``host_full`` (total
        bytes) or ``unknown_recipient`` (no room for one more recipient queue)."""
        lim = self.limits
        queue = self._queues.get(recipient)
        if queue is not None and item.key in queue:
            return None
        if queue is None and len(self._queues) >= lim.max_recipients:
            return "unknown_recipient"
        cost = item.cost
        if queue is not None and (
            len(queue) >= lim.max_messages or self._bytes[recipient] + cost > lim.max_bytes
        ):
            return "queue_full"
        if cost > lim.max_bytes:
            return "queue_full"
        if self._sender_bytes.get(item.sender, 0) + cost > lim.sender_bytes:
            return "sender_full"
        if self.total_bytes + cost > lim.total_bytes:
            return "host_full"
        if queue is None:
            queue = self._queues[recipient] = OrderedDict()
            self._bytes[recipient] = 0
        queue[item.key] = item
        self._account(recipient, item, +1)
        return None

    def requeue(self, recipient: bytes, items: list[Held]) -> int:
        """Put back messages that were handed out but never acknowledged, ahead of
        newer ones (limits still apply). Returns how many could not be stored."""
        lost = 0
        stored: list[tuple[bytes, bytes]] = []
        now = self.clock()
        for item in items:
            if item.expires_at <= now or self.put(recipient, item) is not None:
                lost += 1
            else:
                stored.append(item.key)
        queue = self._queues.get(recipient)
        if queue is not None:
            for key in reversed(stored):
                if key in queue:
                    queue.move_to_end(key, last=False)
        return lost

    def take_all(self, recipient: bytes) -> tuple[list[Held], int]:
        """Remove and return the recipient's unexpired messages (oldest first) and
        the number of expired ones dropped."""
        queue = self._queues.pop(recipient, None)
        if queue is None:
            return [], 0
        now = self.clock()
        live = []
        for item in queue.values():
            self._account(recipient, item, -1)
            if item.expires_at > now:
                live.append(item)
        self._bytes.pop(recipient, None)
        return live, len(queue) - len(live)

    def expire(self) -> int:
        """Drop every expired message; returns how many."""
        now = self.clock()
        dropped = 0
        for recipient in list(self._queues):
            queue = self._queues[recipient]
            for key, item in list(queue.items()):
                if item.expires_at <= now:
                    del queue[key]
                    self._account(recipient, item, -1)
                    dropped += 1
            if not queue:
                del self._queues[recipient]
                self._bytes.pop(recipient, None)
        return dropped

    def new_item(self, sender: bytes, message_id: bytes, envelope: bytes) -> Held:
        return Held(sender, message_id, envelope, self.clock() + self.limits.ttl_s)

    def _account(self, recipient: bytes, item: Held, sign: int) -> None:
        cost = item.cost * sign
        self.total_bytes += cost
        self.total_messages += sign
        if recipient in self._bytes:
            self._bytes[recipient] += cost
        left = self._sender_bytes.get(item.sender, 0) + cost
        if left > 0:
            self._sender_bytes[item.sender] = left
        else:
            self._sender_bytes.pop(item.sender, None)
