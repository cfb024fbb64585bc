"""When a writer should hold its next write so that the frames arriving behind
it share one (a Nagle rule for the relay cluster's writes to NATS, engaged only
under load; :mod:`tmax_mesh_relay.pacedpublish` applies it).

A write costs far more than the bytes it carries (a socket write here, a read
and a write in nats-server, a read on the receiving member). A member's frames
for NATS arrive one per event-loop iteration, so without a hold each goes out
alone. Holding every write would cost every message latency, and asyncio's
timers tick in whole milliseconds; so :class:`Pacer` holds only while frames
arrive less than ``BUSY_GAP_S`` apart on average, and then for at most
``INTERVAL_S`` after the previous write. At 1,000 msg/s nothing waits.
"""

from __future__ import annotations

INTERVAL_S = 0.0005
"""Under load, at most one write per this many seconds."""
BUSY_GAP_S = 0.0005
"""Frames arriving closer than this on average (over 2,000/s) mean "under load"."""
_WEIGHT = 0.125
"""The weight of the newest gap in the running average."""
_IDLE_GAP_S = 0.002
"""Gaps longer than this count as this long (the average recovers quickly)."""


class Pacer:
    """The arrivals and writes of one destination (a NATS connection)."""

    __slots__ = ("_gap", "_last_arrival", "_last_write", "interval_s")

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._gap = _IDLE_GAP_S
        self._last_arrival = float("-inf")
        self._last_write = float("-inf")

    def arrived(self, now: float) -> None:
        """A frame for the destination arrived at ``now`` (the loop's clock)."""
        gap = min(now - self._last_arrival, _IDLE_GAP_S)
        self._gap += (gap - self._gap) * _WEIGHT
        self._last_arrival = now

    def hold(self, now: float) -> float:
        """Seconds to wait before the next write (0.0: write now)."""
        if self._gap >= BUSY_GAP_S:
            return 0.0
        return max(0.0, self._last_write + self.interval_s - now)

    def wrote(self, now: float) -> None:
        """A write to the destination started or ended at ``now``."""
        self._last_write = now
