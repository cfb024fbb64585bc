"""Hook implementations of the ``direct`` plugin: start an :class:`Upgrader`
per node that has both a relay and the core direct transport, and order each
send's transports by what it learned (DESIGN §11)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tmax_core.config import validate_duration
from tmax_core.peer import DirectTransport
from tmax_core.plugin import hookimpl
from tmax_mesh_direct.upgrade import Upgrader

if TYPE_CHECKING:
    from tmax_core.config import ConfigRegistry
    from tmax_core.model import Friend, Transport

_upgraders: dict[bytes, Upgrader] = {}  # local node id -> its upgrader


@hookimpl
def tmax_add_config(registry: ConfigRegistry) -> None:
    registry.add(
        "direct.dial_timeout",
        str,
        "1s",
        "how long one direct connection attempt or probe may take, and an established "
        "direct connection may go unanswered, before falling back",
        validate=validate_duration,
    )
    registry.add(
        "direct.probe_interval",
        str,
        "15s",
        "how often friends' direct endpoints are looked up (through the relay host) and probed again",
        validate=validate_duration,
    )


@hookimpl
def tmax_node_started(node: Any) -> None:
    from tmax_mesh_relay.transport import find_relay

    relay = find_relay(node)
    direct = next((t for t in node.transports if isinstance(t, DirectTransport)), None)
    if direct is not None:
        direct.set_dial_timeout(node.duration_ms("direct.dial_timeout") / 1000)
    if relay is None or not relay.links or direct is None:
        # No relay host to ask (the core transport still dials what friends
        # advertise in invites and contact cards), or nothing to upgrade to.
        return
    upgrader = Upgrader(node, relay, direct)
    _upgraders[node.identity.node_id] = upgrader
    upgrader.start()


@hookimpl
def tmax_node_stopping(node: Any) -> None:
    upgrader = _upgraders.pop(node.identity.node_id, None)
    if upgrader is not None:
        upgrader.stop()


@hookimpl
def tmax_select_transport(friend: Friend, candidates: list[Transport]) -> list[Transport] | None:
    """Healthy direct first; direct known not to work last; unknown: leave the default."""
    # The upgrader of the node that is sending: the one whose direct transport
    # is among the candidates (several nodes may run in one process). No direct
    # candidate: nothing to reorder.
    upgrader = next(
        (u for u in _upgraders.values() if any(t is u.direct for t in candidates)),
        None,
    )
    if upgrader is None:
        return None
    prefers = upgrader.prefers_direct(friend)
    if prefers is None:
        return None
    direct = [t for t in candidates if t is upgrader.direct]
    others = [t for t in candidates if t is not upgrader.direct]
    return direct + others if prefers else others + direct
