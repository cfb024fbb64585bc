"""The running node as plugins see it: :class:`NodeAPI`, the ``node`` argument
of every per-node hook.

This is the whole public surface of a node for plugins; anything else on the
object (``store``, ``outbox``, names starting with ``_``...) is the core's and
may change in any release. :class:`tmax_core.node.Node` satisfies the Protocol
structurally (a unit test checks it); tests may pass any object with these
members (:class:`PluginStates` gives a fake node its ``plugin_state``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from tmax_core.config import Config
from tmax_core.identity import NodeIdentity
from tmax_core.model import Friend, IngressSource, Transport

T = TypeVar("T")


@runtime_checkable
class NodeAPI(Protocol):
    """The node's public surface for plugins (see docs/plugins.md, "The node")."""

    friend_listeners: list[Callable[[], None]]
    """Callbacks called (no arguments) after any friend is added, changed or
    removed; append one at start, remove it at stop."""

    @property
    def identity(self) -> NodeIdentity:
        """This node's keys: ``node_id`` (20 bytes), ``public_key``, signing."""

    @property
    def node_id_hex(self) -> str:
        """This node's id as a checksummed ``0x...`` string (for logs)."""

    @property
    def config(self) -> Config:
        """The loaded configuration: ``config.get("plugin.key")``."""

    @property
    def state_dir(self) -> Path:
        """The node's state directory: a plugin keeps its files here (``sessions.db``)."""

    @property
    def friends(self) -> Mapping[bytes, Friend]:
        """The friends, by node id (live and read-only: change them through the CLI/API)."""

    def duration_ms(self, key: str) -> int:
        """A duration config key (``"30s"``, ``"1m"``...) in milliseconds."""

    def relay_hosts(self) -> list[str]:
        """The relay host URLs this node uses (config ``node.relays``)."""

    def rendezvous_endpoints(self) -> list[str]:
        """``HOST:PORT`` endpoints to tell a relay host for direct upgrade (wildcards included)."""

    def transport(self, name: str) -> Transport | None:
        """The registered transport called ``name``, or ``None``."""

    def transport_reconnected(self, name: str) -> None:
        """Transport ``name`` (re)connected: retry due messages now, and resend those it
        had accepted for later delivery (an intermediary that restarted lost them)."""

    async def handle_envelope(self, data: bytes, source: IngressSource) -> bytes:
        """Run an inbound envelope through ingress; returns the signed ack to send back
        (empty bytes: send no answer)."""

    async def handle_envelope_batch(
        self, envelopes: list[bytes], source: IngressSource, nonce: bytes = b""
    ) -> bytes:
        """Run several inbound envelopes (from one sender) through ingress as one
        batch; returns one signed batch ack for them all (``nonce`` echoed in it)."""

    async def handle_ack(self, ack: bytes, from_node_id: bytes) -> None:
        """A signed ack that arrived apart from its send (store-and-forward)."""

    def plugin_state(self, key: str, factory: Callable[[], T]) -> T:
        """This node's state for one plugin: ``factory()`` on the first call with
        ``key`` (use the plugin's name), the same object on every later call."""

    def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        """Run blocking ``fn(*args, **kwargs)`` on the node's database thread
        (serialized with the core's own store calls); await the result."""


class PluginStates:
    """Per-plugin state of one node, by key: what backs :meth:`NodeAPI.plugin_state`."""

    def __init__(self) -> None:
        self._by_key: dict[str, Any] = {}

    def get(self, key: str, factory: Callable[[], T]) -> T:
        """The state under ``key``, made by ``factory()`` on the first call."""
        if key not in self._by_key:
            self._by_key[key] = factory()
        return self._by_key[key]


__all__ = ["NodeAPI", "PluginStates"]
