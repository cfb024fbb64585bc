"""Lookup allow lists on the host: compact storage, and the lists of offline
nodes remembered for store-and-forward (DESIGN §10).

A node's allow list (its friends) gates both lookups and store-and-forward.
It is kept as **one bytes object**: the sorted, de-duplicated 8-byte keyed
fingerprints (BLAKE2b with a random key of this host process) of the ids,
concatenated. At the default limit of 1,000 ids that is 8,000 bytes, against
20,000 for the raw 20-byte ids and about 90 KB for a ``frozenset`` of 1,000
``bytes`` objects; membership is one hash and a binary search.

Measured with ``bench/relay_scale.py`` (1,000 ids per node): raw ids cost
tmax-host ~69 KiB per connection against ~41 KiB for the bare relay (1.7x);
fingerprints bring it within the 1.5x target.

Why 8-byte fingerprints are safe here: a stranger is taken for a friend only
if its id's fingerprint equals one of the friends'. The key is secret and
new per process, so fingerprints cannot be computed or searched offline;
online, each try costs a new registered key (rate limited per address) and
succeeds with probability about n / 2**64 (n <= 1,000 friends).

When a node disconnects, the host still needs its list to decide whom to
store envelopes for, so :class:`RememberedAllowLists` keeps it for a while:
until ``ttl_s`` after the disconnect (the store-and-forward TTL, past which
nothing stored for it would survive anyway) and within a total byte budget,
oldest disconnect evicted first. A node whose list is not remembered (never
seen since the host started, expired or evicted) gets nothing stored: every
sender is then treated as a stranger, and its outbox tries again later.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Iterable

FINGERPRINT_LEN = 8
ENTRY_OVERHEAD = 160
"""Bytes counted per remembered list on top of its fingerprints (key, tuple, dict slot)."""


class Fingerprints:
    """Packs node ids into the compact form and tests membership in it."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else os.urandom(16)

    def _of(self, node_id: bytes) -> bytes:
        return hashlib.blake2b(node_id, key=self._key, digest_size=FINGERPRINT_LEN).digest()

    def pack(self, node_ids: Iterable[bytes]) -> bytes:
        """Sorted, unique, concatenated fingerprints of ``node_ids``."""
        return b"".join(sorted({self._of(node_id) for node_id in node_ids}))

    def contains(self, packed: bytes, node_id: bytes) -> bool:
        """Whether ``node_id`` is in a list made by :meth:`pack` (binary search)."""
        fp, n = self._of(node_id), FINGERPRINT_LEN
        lo, hi = 0, len(packed) // n
        while lo < hi:
            mid = (lo + hi) // 2
            if packed[mid * n : (mid + 1) * n] < fp:
                lo = mid + 1
            else:
                hi = mid
        return packed[lo * n : (lo + 1) * n] == fp


def count(packed: bytes) -> int:
    return len(packed) // FINGERPRINT_LEN


class RememberedAllowLists:
    """Allow lists of nodes that disconnected, bounded by age and total bytes."""

    def __init__(self, ttl_s: float, max_bytes: int) -> None:
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self.bytes = 0
        # node id -> (packed list, forget-at time); insertion order = disconnect order.
        self._lists: OrderedDict[bytes, tuple[bytes, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._lists)

    def remember(self, node_id: bytes, packed: bytes, now: float) -> int:
        """Keep ``packed`` for ``node_id`` until ``now + ttl_s``; returns how many
        older lists were evicted to stay within the byte budget."""
        self.forget(node_id)
        cost = len(packed) + ENTRY_OVERHEAD
        if not packed or cost > self.max_bytes:
            return 0  # no friends: nothing would ever be stored for it
        self._lists[node_id] = (packed, now + self.ttl_s)
        self.bytes += cost
        evicted = 0
        while self.bytes > self.max_bytes:
            _, (old, _) = self._lists.popitem(last=False)
            self.bytes -= len(old) + ENTRY_OVERHEAD
            evicted += 1
        return evicted

    def forget(self, node_id: bytes) -> None:
        entry = self._lists.pop(node_id, None)
        if entry is not None:
            self.bytes -= len(entry[0]) + ENTRY_OVERHEAD

    def get(self, node_id: bytes, now: float) -> bytes | None:
        entry = self._lists.get(node_id)
        if entry is None:
            return None
        if entry[1] <= now:
            self.forget(node_id)
            return None
        return entry[0]

    def expire(self, now: float) -> int:
        """Drop lists past their time (the oldest come first); returns how many."""
        dropped = 0
        while self._lists:
            node_id, (_, forget_at) = next(iter(self._lists.items()))
            if forget_at > now:
                break
            self.forget(node_id)
            dropped += 1
        return dropped
