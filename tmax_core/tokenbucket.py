"""A token bucket: ``burst`` tokens at most, ``rate`` new tokens per second."""

from __future__ import annotations

import time


class TokenBucket:
    """Refills lazily from the clock it is given (``time.monotonic`` by
    default), so it needs no background task. ``take`` refuses when empty;
    ``reserve`` never refuses and returns how long to wait instead (pacing)."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float | None = None) -> None:
        self.rate = rate
        self.burst = float(max(burst, 1))
        self.tokens = self.burst
        self.stamp = time.monotonic() if now is None else now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def full(self, now: float | None = None) -> bool:
        """Whether the bucket is full (an idle one, safe to forget)."""
        self._refill(time.monotonic() if now is None else now)
        return self.tokens >= self.burst

    def take(self, now: float | None = None) -> bool:
        """Take one token if there is one."""
        self._refill(time.monotonic() if now is None else now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def reserve(self, now: float | None = None) -> float:
        """Take one token, going into debt if needed; returns seconds to wait (0 = go)."""
        self._refill(time.monotonic() if now is None else now)
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate
