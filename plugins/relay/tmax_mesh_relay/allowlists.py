"""Lookup allow lists on the host: compact storage, and the lists of offline
nodes remembered for store-and-forward (DESIGN §10).

A node's allow list (its friends) gates both lookups and store-and-forward.
It is kept as **one bytes object**: the sorted, de-duplicated 20-byte ids
concatenated. At the default limit of 1,000 ids that is 20,000 bytes, against
about 90 KB for a ``frozenset`` of 1,000 ``bytes`` objects (each ~56 bytes
plus the set's table); membership is a binary search over the records.

When a node disconnects, the host still needs its list to decide whom to
store envelopes for, so :class:`RememberedAllowLists` keeps it for a while:
until ``ttl_s`` after the disconnect (the store-and-forward TTL, past which
nothing stored for it would survive anyway) and within a total byte budget,
oldest disconnect evicted first. A node whose list is not remembered (never
seen since the host started, expired or evicted) gets nothing stored: every
sender is then treated as a stranger, and its outbox tries again later.
"""

from __future__ import annotations

from collections import OrderedDict

from tmax_core.crypto import NODE_ID_LEN

ENTRY_OVERHEAD = 160
"""Bytes counted per remembered list on top of its ids (key, tuple, dict slot)."""


def pack(node_ids: list[bytes]) -> bytes:
    """The compact form: sorted, unique, concatenated ids (callers check each is 20 bytes)."""
    return b"".join(sorted(set(node_ids)))


def contains(packed: bytes, node_id: bytes) -> bool:
    """Whether ``node_id`` is in a list made by :func:`pack` (binary search)."""
    if len(node_id) != NODE_ID_LEN:
        return False
    lo, hi = 0, len(packed) // NODE_ID_LEN
    while lo < hi:
        mid = (lo + hi) // 2
        if packed[mid * NODE_ID_LEN : (mid + 1) * NODE_ID_LEN] < node_id:
            lo = mid + 1
        else:
            hi = mid
    return packed[lo * NODE_ID_LEN : (lo + 1) * NODE_ID_LEN] == node_id


def count(packed: bytes) -> int:
    return len(packed) // NODE_ID_LEN


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
