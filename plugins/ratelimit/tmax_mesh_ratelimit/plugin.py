"""Hook implementations of the ``ratelimit`` plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tmax_core.config import validate_positive
from tmax_core.plugin import hookimpl

if TYPE_CHECKING:
    from tmax_core.config import ConfigRegistry


@hookimpl
def tmax_add_config(registry: ConfigRegistry) -> None:
    add = registry.add
    add(
        "ratelimit.rate",
        float,
        5.0,
        "messages per second allowed per friend (when its invite sets no limit)",
        validate=validate_positive,
    )
    add("ratelimit.burst", int, 20, "token bucket size per friend", validate=validate_positive)
    add(
        "ratelimit.source_rate",
        float,
        50.0,
        "envelopes per second allowed per transport source (before any crypto)",
        validate=validate_positive,
    )
    add(
        "ratelimit.source_burst",
        int,
        200,
        "token bucket size per transport source",
        validate=validate_positive,
    )
    add(
        "ratelimit.max_buckets",
        int,
        10000,
        "most buckets kept in memory; the idlest are evicted first",
        validate=validate_positive,
    )
