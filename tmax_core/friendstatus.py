"""Which path a message to a friend would take now, for ``tmax-mesh status``."""

from __future__ import annotations

from collections.abc import Iterable

from tmax_core.model import Friend, Transport

OFFLINE = "offline"


def path_now(friend: Friend, transports: Iterable[Transport]) -> str:
    """The first transport (the node keeps them by cost) that can reach
    ``friend`` now, as the outbox would try them; ``offline`` if none can."""
    return next((t.name for t in transports if t.can_reach(friend)), OFFLINE)
