"""What the node's parts need of the node: one narrow Protocol each.

:class:`~tmax_core.node.Node` builds the ingress pipeline, the outbox and the
peer listener and hands itself to them. They type their ``node`` with these
Protocols instead of importing ``Node``, so the core's import graph has no
cycle: ``node`` imports them, never the other way round. ``Node`` satisfies
every one of them structurally (no registration, no base class).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

import pluggy

from tmax_core.config import Config
from tmax_core.identity import NodeIdentity
from tmax_core.model import (
    Friend,
    IngressSource,
    InviteScope,
    IssuedToken,
    OutboxEntry,
    ReceivedMessage,
    Transport,
)
from tmax_core.store import Store

T = TypeVar("T")


@runtime_checkable
class EnvelopeHandler(Protocol):
    """Where inbound envelopes go: the peer stream's and the transports' view."""

    async def handle_envelope(self, data: bytes, source: IngressSource) -> bytes: ...

    async def handle_envelope_batch(
        self, envelopes: list[bytes], source: IngressSource, nonce: bytes = b""
    ) -> bytes: ...


@runtime_checkable
class PeerHost(EnvelopeHandler, Protocol):
    """What the peer listener and the direct transport use."""

    config: Config

    @property
    def friends(self) -> Mapping[bytes, Friend]: ...


class _Storage(Protocol):
    identity: NodeIdentity
    config: Config
    store: Store

    @property
    def friends(self) -> Mapping[bytes, Friend]: ...

    def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]: ...

    def db_batch(self, fn: Callable[[Sequence[Any]], T], batch: Sequence[Any]) -> Awaitable[T]: ...

    def duration_ms(self, key: str) -> int: ...


@runtime_checkable
class IngressHost(_Storage, Protocol):
    """What the ingress pipeline uses."""

    pm: pluggy.PluginManager

    @property
    def scopes(self) -> Mapping[str, InviteScope]: ...

    @property
    def issued_invites(self) -> Mapping[bytes, IssuedToken]: ...

    def metrics_rejected(self, reason: str) -> None: ...

    async def deliver_many(self, messages: list[ReceivedMessage]) -> list[ReceivedMessage]: ...

    async def invites_changed(self) -> None: ...

    def friend_changed(self, friend: Friend | None = None) -> None: ...

    def remote_alias(self, suggested: str | None, node_id: bytes) -> str | None: ...

    def checked_contact(
        self, node_id: bytes, relay_hosts: Iterable[str], endpoints: Iterable[str]
    ) -> tuple[list[str], list[str]]: ...

    async def update_contact(
        self, friend: Friend, relay_hosts: Iterable[str], endpoints: Iterable[str]
    ) -> None: ...


@runtime_checkable
class OutboxHost(_Storage, Protocol):
    """What the outbox uses."""

    async def crypto(self, fn: Callable[..., T], *args: Any) -> T: ...

    def seal_many(self, friend: Friend, entries: list[OutboxEntry]) -> list[bytes]: ...

    def prepare_ephemeral(self, friend: Friend) -> None: ...

    def transports_for(self, friend: Friend) -> list[Transport]: ...

    def transport_failed(self, transport: Transport, friend: Friend, err: Exception) -> None: ...

    async def first_contact_done(self, friend: Friend) -> None: ...

    def count_send(self, status: str, path: str | None) -> None: ...
