"""Hook implementations of the ``session_mailbox`` plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tmax_core.plugin import hookimpl

if TYPE_CHECKING:
    from tmax_core.config import ConfigRegistry


def _validate_session(value: str) -> None:
    if not value.strip():
        raise ValueError("session name must not be empty")


@hookimpl
def tmax_add_config(registry: ConfigRegistry) -> None:
    registry.add(
        "session_mailbox.session",
        str,
        "root",
        "local session whose mailbox receives remote messages",
        validate=_validate_session,
    )
