"""The ``ratelimit`` plugin's bounded, lazily refilled store of token buckets
(:class:`tmax_core.tokenbucket.TokenBucket`).

No background task and no wall clock: every bucket refills when it is looked
at, from an injectable monotonic ``clock`` (tests pass a fake one). See
:mod:`tmax_mesh_ratelimit.plugin` for why buckets are keyed the way they are.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

from tmax_core.errors import Reason
from tmax_core.model import IngressMeta, IngressSource, RateLimit, Verdict
from tmax_core.plugin.helpers import TokenBucket, source_key

Clock = Callable[[], float]

EVICTION_SCAN = 32
"""How many of the least recently used buckets are scanned for a full (and so
stateless) one before the oldest is evicted regardless."""


def _limited(what: str, bucket: TokenBucket, now: float) -> Verdict:
    return Verdict(
        Reason.RATE_LIMITED,
        f"{what} over {bucket.rate:g}/s (burst {bucket.burst:g}); "
        f"retry after {bucket.retry_after_ms(now)} ms",
    )


class RateLimiter:
    """Per-friend and per-source token buckets, at most ``max_buckets`` in memory.

    * :meth:`precheck` runs before any crypto: it charges the envelope to its
      transport source's bucket and *looks at* (never charges) the bucket of
      the friend the envelope claims to come from.
    * :meth:`charge_verified` runs after the signature verified: only then is
      a token taken from the friend's bucket, so forged envelopes that claim
      to be a friend can never drain it.
    """

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        source_rate: float,
        source_burst: int,
        max_buckets: int,
        clock: Clock = time.monotonic,
    ) -> None:
        if max_buckets < 1:
            raise ValueError("max_buckets must be at least 1")
        self.default = RateLimit(rate_per_s=rate, burst=burst)
        self.source_limit = RateLimit(rate_per_s=source_rate, burst=source_burst)
        self.max_buckets = max_buckets
        self.clock = clock
        # Two LRU maps (least recently used first) sharing one bound: sources
        # are attacker-chosen and are evicted before friends.
        self._friends: OrderedDict[bytes, TokenBucket] = OrderedDict()
        self._sources: OrderedDict[tuple[str, str], TokenBucket] = OrderedDict()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._friends) + len(self._sources)

    # -- parameters --------------------------------------------------------------

    def friend_limit(self, granted: RateLimit | None) -> RateLimit:
        """The invite-granted limit if the friend has one, else the config default."""
        return granted if granted is not None else self.default

    @staticmethod
    def source_key(source: IngressSource) -> tuple[str, str]:
        """IPv6 sources by /64, IPv4 by address (:func:`tmax_core.netaddr.source_key`)."""
        return (source.transport, source_key(source.peer))

    # -- the two checks ----------------------------------------------------------------

    def precheck(self, meta: IngressMeta, source: IngressSource) -> Verdict | None:
        """Before crypto: charge the source; refuse if the claimed friend's bucket is empty."""
        now = self.clock()
        src = self._get(self._sources, self.source_key(source), self.source_limit, now)
        if not src.take(now):
            return _limited("this transport source is", src, now)
        if meta.friend is None:  # first contact (or unknown): the source bucket only
            return None
        bucket = self._friends.get(meta.friend.node_id)
        if bucket is None:  # no bucket = a full one; peeking never creates one
            return None
        limit = self.friend_limit(meta.friend.rate_limit)
        bucket.reconfigure(limit.rate_per_s, limit.burst)
        if not bucket.can_take(now):
            return _limited("this sender is", bucket, now)
        return None

    def charge_verified(self, node_id: bytes, granted: RateLimit | None) -> Verdict | None:
        """After the signature verified: take one token from the friend's bucket."""
        now = self.clock()
        bucket = self._get(self._friends, node_id, self.friend_limit(granted), now)
        if not bucket.take(now):
            return _limited("this sender is", bucket, now)
        return None

    # -- storage -----------------------------------------------------------------------

    def _get(self, table: OrderedDict, key: Hashable, limit: RateLimit, now: float) -> TokenBucket:
        bucket = table.get(key)
        if bucket is not None:
            table.move_to_end(key)
            if bucket.rate != limit.rate_per_s or bucket.burst != max(1, limit.burst):
                bucket.reconfigure(limit.rate_per_s, limit.burst)
            return bucket
        self._make_room(now)
        bucket = TokenBucket(limit.rate_per_s, limit.burst, now)
        table[key] = bucket
        return bucket

    def _make_room(self, now: float) -> None:
        """Evict until one more bucket fits.

        A full bucket carries no state (a new one would be identical), so full
        ones go first; then the least recently used source bucket; a friend
        bucket only when there are no source buckets at all. Evicting a bucket
        that is not full gives its key a fresh allowance: that is the price of
        bounded memory, and why ``max_buckets`` should exceed the number of
        sources expected at once.
        """
        while len(self) >= self.max_buckets:
            if self._evict_full(self._sources, now) or self._evict_full(self._friends, now):
                pass
            elif self._sources:
                self._sources.popitem(last=False)
            else:
                self._friends.popitem(last=False)
            self.evictions += 1

    @staticmethod
    def _evict_full(table: OrderedDict, now: float) -> bool:
        for n, (key, bucket) in enumerate(table.items()):
            if n >= EVICTION_SCAN:
                break
            if bucket.full(now):
                del table[key]
                return True
        return False

    def stats(self) -> dict[str, int]:
        return {
            "friend_buckets": len(self._friends),
            "source_buckets": len(self._sources),
            "evictions": self.evictions,
        }
