"""Hook implementations of the ``direct`` plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tmax_core.config import validate_duration
from tmax_core.plugin import hookimpl

if TYPE_CHECKING:
    from tmax_core.config import ConfigRegistry


@hookimpl
def tmax_add_config(registry: ConfigRegistry) -> None:
    registry.add(
        "direct.dial_timeout",
        str,
        "1s",
        "how long one direct connection attempt may take before falling back",
        validate=validate_duration,
    )
