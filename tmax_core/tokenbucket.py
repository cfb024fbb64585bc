"""A token bucket: ``burst`` tokens at most, ``rate`` new tokens per second."""

from __future__ import annotations

import math
import time


class TokenBucket:
    """Refills lazily from the clock it is given (``time.monotonic`` by
    default), so it needs no background task. ``take`` refuses when empty;
    ``reserve`` never refuses and returns how long to wait instead (pacing).
    A clock that goes backwards adds nothing."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float | None = None) -> None:
        self.rate = rate
        self.burst = float(max(burst, 1))
        self.tokens = self.burst
        self.stamp = time.monotonic() if now is None else now

    def _refill(self, now: float | None) -> None:
        now = time.monotonic() if now is None else now
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def reconfigure(self, rate: float, burst: int) -> None:
        """New parameters (a friend's grant changed): the tokens are kept, capped at the new burst."""
        self.rate = rate
        self.burst = float(max(burst, 1))
        self.tokens = min(self.tokens, self.burst)

    def full(self, now: float | None = None) -> bool:
        """Whether the bucket is full (an idle one, safe to forget)."""
        self._refill(now)
        return self.tokens >= self.burst

    def can_take(self, now: float | None = None) -> bool:
        """Whether :meth:`take` would succeed now (takes nothing)."""
        self._refill(now)
        return self.tokens >= 1.0

    def take(self, now: float | None = None) -> bool:
        """Take one token if there is one."""
        if not self.can_take(now):
            return False
        self.tokens -= 1.0
        return True

    def reserve(self, now: float | None = None) -> float:
        """Take one token, going into debt if needed; returns seconds to wait (0 = go)."""
        self._refill(now)
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def retry_after_ms(self, now: float | None = None) -> int:
        """Milliseconds until one token is available (0 if one is now)."""
        self._refill(now)
        missing = 1.0 - self.tokens
        if missing <= 0:
            return 0
        # the epsilon keeps float noise (0.6000000001 s) from adding a millisecond
        return max(1, math.ceil(missing / self.rate * 1000 - 1e-6))
