"""Bounded in-memory store-and-forward for offline recipients.

Every dimension is capped: messages and bytes per recipient, bytes per
sender (so one sender cannot fill the host for everyone), total bytes, the
number of recipients with a queue, and a TTL per message. A message is keyed
by ``(sender, message_id)`` (DESIGN §7: two senders may pick the same id), so
a sender's outbox re-sending the same message does not store it twice and
another sender's message with that id is its own entry.

Who may store at all is the hub's decision (only the recipient's friends,
see ``hub``). Among them a recipient's capacity is shared fairly: while the
queue has room anyone may use it, and when it is full a sender holding less
than its fair share (1/k of the messages and of the bytes, k = the senders
with something queued, itself included) pushes out the oldest messages of
the sender that holds the most. So one friend can fill an idle queue but
cannot keep the others out of it. A pushed-out message had been answered
``Queued``; its sender's outbox sends it again later (an entry handed off to
a relay is re-sent when no ack came), and it counts as ``evicted``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

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
    """Store-and-forward bounds; tmax-host's ``queue_*`` options default to these."""

    max_messages: int = 1000
    max_bytes: int = 16 * 1024 * 1024
    ttl_s: float = 24 * 3600.0
    total_bytes: int = 256 * 1024 * 1024
    sender_bytes: int = 64 * 1024 * 1024
    max_recipients: int = 100_000


@dataclass(slots=True)
class _Queue:
    """One recipient's messages (oldest first) and what each sender holds in it."""

    items: OrderedDict[tuple[bytes, bytes], Held] = field(default_factory=OrderedDict)
    size: int = 0  # bytes held
    senders: dict[bytes, list[int]] = field(default_factory=dict)  # sender -> [count, bytes]

    def add(self, item: Held) -> None:
        self.items[item.key] = item
        self.size += item.cost
        usage = self.senders.setdefault(item.sender, [0, 0])
        usage[0] += 1
        usage[1] += item.cost

    def remove(self, item: Held) -> None:
        del self.items[item.key]
        self.size -= item.cost
        usage = self.senders[item.sender]
        usage[0] -= 1
        usage[1] -= item.cost
        if usage[0] == 0:
            del self.senders[item.sender]

    def oldest_of(self, sender: bytes) -> Iterator[Held]:
        return (item for item in self.items.values() if item.sender == sender)


class StoreAndForward:
    def __init__(self, limits: QueueLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._queues: dict[bytes, _Queue] = {}
        self._sender_bytes: dict[bytes, int] = {}
        self.total_bytes = 0
        self.total_messages = 0
        self.evicted = 0  # messages pushed out by a sender within its fair share (a counter)

    def __len__(self) -> int:
        return self.total_messages

    def depth(self, recipient: bytes) -> int:
        queue = self._queues.get(recipient)
        return len(queue.items) if queue is not None else 0

    def put(self, recipient: bytes, item: Held) -> str | None:
        """Store ``item``; ``None`` if stored (or already stored), else the refusal reason:
        ``queue_full`` (the recipient's count/bytes, and this sender already holds its
        fair share), ``sender_full``, ``host_full`` (total bytes) or ``unknown_recipient``
        (no room for one more recipient queue)."""
        lim = self.limits
        queue = self._queues.get(recipient)
        if queue is not None and item.key in queue.items:
            return None
        if queue is None and len(self._queues) >= lim.max_recipients:
            return "unknown_recipient"
        cost = item.cost
        if cost > lim.max_bytes:
            return "queue_full"
        if self._sender_bytes.get(item.sender, 0) + cost > lim.sender_bytes:
            return "sender_full"
        victims: list[Held] = []
        if queue is not None:
            found = self._make_room(queue, item)
            if found is None:
                return "queue_full"
            victims = found
        if self.total_bytes - sum(v.cost for v in victims) + cost > lim.total_bytes:
            return "host_full"
        if queue is None:
            queue = self._queues[recipient] = _Queue()
        for victim in victims:
            queue.remove(victim)
            self._account(victim, -1)
        self.evicted += len(victims)
        queue.add(item)
        self._account(item, +1)
        return None

    def _make_room(self, queue: _Queue, item: Held) -> list[Held] | None:
        """The messages to push out so that ``item`` fits (none if it fits as is), or
        ``None`` if it does not fit and its sender would exceed its fair share."""
        lim = self.limits
        count, size = len(queue.items) + 1, queue.size + item.cost
        if count <= lim.max_messages and size <= lim.max_bytes:
            return []
        mine = queue.senders.get(item.sender, [0, 0])
        k = len(queue.senders) + (item.sender not in queue.senders)
        if (mine[0] + 1) * k > lim.max_messages or (mine[1] + item.cost) * k > lim.max_bytes:
            return None

        def weight(usage: list[int]) -> float:
            return max(usage[0] / lim.max_messages, usage[1] / lim.max_bytes)

        own = weight([mine[0] + 1, mine[1] + item.cost])
        others = {s: list(u) for s, u in queue.senders.items() if s != item.sender}
        oldest = {s: queue.oldest_of(s) for s in others}
        victims: list[Held] = []
        while count > lim.max_messages or size > lim.max_bytes:
            heaviest = max(others, key=lambda s: weight(others[s]), default=None)
            if heaviest is None or weight(others[heaviest]) <= own:
                return None
            victim = next(oldest[heaviest])
            victims.append(victim)
            others[heaviest][0] -= 1
            others[heaviest][1] -= victim.cost
            if others[heaviest][0] == 0:
                del others[heaviest]
            count -= 1
            size -= victim.cost
        return victims

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
                if key in queue.items:
                    queue.items.move_to_end(key, last=False)
        return lost

    def take_all(self, recipient: bytes) -> tuple[list[Held], int]:
        """Remove and return the recipient's unexpired messages (oldest first) and
        the number of expired ones dropped."""
        queue = self._queues.pop(recipient, None)
        if queue is None:
            return [], 0
        now = self.clock()
        live = []
        for item in queue.items.values():
            self._account(item, -1)
            if item.expires_at > now:
                live.append(item)
        return live, len(queue.items) - len(live)

    def expire(self) -> int:
        """Drop every expired message; returns how many."""
        now = self.clock()
        dropped = 0
        for recipient in list(self._queues):
            queue = self._queues[recipient]
            for item in [i for i in queue.items.values() if i.expires_at <= now]:
                queue.remove(item)
                self._account(item, -1)
                dropped += 1
            if not queue.items:
                del self._queues[recipient]
        return dropped

    def new_item(self, sender: bytes, message_id: bytes, envelope: bytes) -> Held:
        return Held(sender, message_id, envelope, self.clock() + self.limits.ttl_s)

    def _account(self, item: Held, sign: int) -> None:
        cost = item.cost * sign
        self.total_bytes += cost
        self.total_messages += sign
        left = self._sender_bytes.get(item.sender, 0) + cost
        if left > 0:
            self._sender_bytes[item.sender] = left
        else:
            self._sender_bytes.pop(item.sender, None)
