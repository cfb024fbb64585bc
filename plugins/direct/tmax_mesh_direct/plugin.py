"""Hook implementations of the ``direct`` plugin: start an :class:`Upgrader`
(and, with ``direct.punch``, a :class:`Puncher`) per node that has both a
relay and the core direct transport, and order each send's transports by what
they learned (DESIGN §11, §16)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tmax_core.peer import DirectTransport
from tmax_core.plugin import hookimpl
from tmax_core.plugin.helpers import validate_duration
from tmax_mesh_direct.upgrade import Upgrader

if TYPE_CHECKING:
    from tmax_core.model import Friend, Transport
    from tmax_core.plugin import NodeAPI
    from tmax_core.plugin.helpers import ConfigRegistry
    from tmax_mesh_direct.punch import Puncher

PLUGIN = "direct"


@dataclass
class DirectState:
    """The plugin's state on one node (:meth:`NodeAPI.plugin_state`)."""

    upgrader: Upgrader | None = None
    puncher: Puncher | None = None


def state_of(node: NodeAPI) -> DirectState:
    return node.plugin_state(PLUGIN, DirectState)


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
    registry.add(
        "direct.punch",
        bool,
        True,
        "TCP hole punching, coordinated by the relay host, to friends no endpoint can be dialled for",
    )
    registry.add(
        "direct.punch_timeout",
        str,
        "5s",
        "the window in which both friends try to connect (simultaneous open) before using the relay",
        validate=validate_duration,
    )


@hookimpl
def tmax_node_started(node: NodeAPI) -> None:
    from tmax_mesh_relay.transport import find_relay

    relay = find_relay(node)
    direct = node.transport(DirectTransport.name)
    if not isinstance(direct, DirectTransport):
        return  # nothing to upgrade to
    direct.set_dial_timeout(node.duration_ms("direct.dial_timeout") / 1000)
    if relay is None or not relay.links:
        # No relay host to ask (the core transport still dials what friends
        # advertise in invites and contact cards).
        return
    upgrader = Upgrader(node, relay, direct)
    state = state_of(node)
    state.upgrader = upgrader
    upgrader.start()
    if node.config.get("direct.punch"):
        from tmax_mesh_direct.punch import Puncher

        state.puncher = Puncher(node, relay, direct, upgrader)
        state.puncher.start()


@hookimpl
def tmax_node_stopping(node: NodeAPI) -> None:
    state = state_of(node)
    if state.puncher is not None:
        state.puncher.stop()
        state.puncher = None
    if state.upgrader is not None:
        state.upgrader.stop()
        state.upgrader = None


@hookimpl
def tmax_select_transport(
    friend: Friend, candidates: list[Transport], node: NodeAPI
) -> list[Transport] | None:
    """Healthy direct first; direct known not to work last; unknown: leave the default."""
    upgrader = state_of(node).upgrader
    if upgrader is None or not any(t is upgrader.direct for t in candidates):
        return None
    prefers = upgrader.prefers_direct(friend)
    if prefers is None:
        return None
    direct: list[Transport] = [t for t in candidates if t is upgrader.direct]
    others = [t for t in candidates if t is not upgrader.direct]
    return direct + others if prefers else others + direct
