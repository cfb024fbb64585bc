"""Times for people in text output: local time, or how long ago ("3 min ago").
``--json`` keeps the epoch milliseconds."""

from __future__ import annotations

import time

from tmax_core.clock import now_ms

_UNITS = ((86400, "day"), (3600, "h"), (60, "min"), (1, "s"))


def span(seconds: float) -> str:
    """``seconds`` (not negative) in its largest whole unit: "42 s", "3 min", "5 h", "2 days"."""
    for size, unit in _UNITS:
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if unit == 'day' and n != 1 else ''}"
    return "0 s"


def relative(ms: int | None, now: int | None = None) -> str:
    """ "3 min ago", "in 2 h", "just now" (within a second), "never" for None/0."""
    if not ms:
        return "never"
    delta = ((now if now is not None else now_ms()) - ms) / 1000
    if abs(delta) < 1:
        return "just now"
    return f"{span(delta)} ago" if delta > 0 else f"in {span(-delta)}"


def local(ms: int | None) -> str:
    """Local time, to the second: "2026-12-06 21:05:09"; "-" for None/0."""
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def local_and_relative(ms: int | None, now: int | None = None) -> str:
    """ "2026-12-06 21:05:09 (3 min ago)"; "-" for None/0."""
    return f"{local(ms)} ({relative(ms, now)})" if ms else "-"
