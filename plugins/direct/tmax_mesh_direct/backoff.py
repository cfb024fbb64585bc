"""The puncher's retry delay after failures in a row (a friend's punches, a host's mapping)."""

from __future__ import annotations

BACKOFF_MAX_ROUNDS = 16


def doubling_backoff(interval_s: float, failures: int) -> float:
    """``interval_s`` after the first failure, doubling per failure, at most
    ``BACKOFF_MAX_ROUNDS`` intervals."""
    return min(interval_s * 2 ** min(failures - 1, 16), interval_s * BACKOFF_MAX_ROUNDS)
