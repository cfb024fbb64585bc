"""Human durations on the command line and in config: ``30s``, ``15m``, ``24h``, ``7d``."""

from __future__ import annotations

import re

from tmax_core.errors import UsageError

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_RE = re.compile(r"(\d{1,15})\s*(ms|s|m|h|d|w)?")


def parse_duration_ms(text: str | int) -> int:
    """``"30s"``, ``"15m"``, ``"24h"``, ``"7d"``, ``"500ms"`` or plain seconds -> milliseconds."""
    if isinstance(text, bool):
        raise UsageError(f"invalid duration {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise UsageError(f"invalid duration {text!r}: must not be negative")
        return text * 1000
    if not isinstance(text, str):
        raise UsageError(f"invalid duration {text!r}")
    m = _RE.fullmatch(text.strip().lower())
    if m is None:
        raise UsageError(
            f"invalid duration {text!r}: use a number with a unit, e.g. 30s, 15m, 24h, 7d (plain = seconds)"
        )
    return int(m.group(1)) * _UNITS_MS[m.group(2) or "s"]
