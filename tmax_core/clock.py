"""Wall-clock time in epoch milliseconds, the unit of every timestamp the node
stores, signs and shows (a module of its own so light importers, such as the
CLI's time formatting, need not load the crypto stack)."""

from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000
