"""Hook implementations of the ``relay`` plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tmax_core.config import validate_duration
from tmax_core.plugin import hookimpl

if TYPE_CHECKING:
    from tmax_core.config import ConfigRegistry


@hookimpl
def tmax_add_config(registry: ConfigRegistry) -> None:
    # The relay URLs themselves are the core key ``node.relays``.
    registry.add(
        "relay.reconnect_max",
        str,
        "30s",
        "longest delay between reconnection attempts to a relay host",
        validate=validate_duration,
    )
