"""Domain objects shared by the core and plugins.

Hook arguments are these dataclasses (never ``*_pb2`` messages), so plugins do
not depend on the wire format. Node ids and message ids are raw ``bytes``
(20 and 16 bytes); use :func:`tmax_core.crypto.to_checksum` / ``.hex()`` to
show them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

DEFAULT_SCOPE = "message"


@dataclass(frozen=True)
class RateLimit:
    """Token bucket parameters granted to a friend (by an invite or config)."""

    rate_per_s: float
    burst: int


@dataclass
class Friend:
    node_id: bytes
    public_key: bytes
    alias: str | None = None
    blocked: bool = False
    scopes: list[str] = field(default_factory=lambda: [DEFAULT_SCOPE])
    relay_hosts: list[str] = field(default_factory=list)
    endpoints: list[str] = field(default_factory=list)
    rate_limit: RateLimit | None = None
    added_at_ms: int = 0
    last_seen_ms: int | None = None
    # Serialized SignedInvite we accepted from this friend: sent with our first
    # messages until the friend has acknowledged one (then cleared).
    invite_token: bytes | None = None


@dataclass
class IssuedInvite:
    """What this node remembers about an invite it created."""

    token_id: bytes
    created_at_ms: int
    expires_at_ms: int
    max_uses: int  # 0 = unlimited until expiry
    uses_left: int | None  # None = unlimited
    scopes: list[str]
    rate_limit: RateLimit | None
    revoked: bool = False


@dataclass(frozen=True)
class IssuedToken:
    """An invite this node issued, as first contact is checked against it:
    its record, its serialized token, and the key of its proof (see
    :func:`tmax_core.envelope.invite_proof`)."""

    invite: IssuedInvite
    raw: bytes
    proof_key: bytes


@dataclass
class InboxMessage:
    message_id: bytes
    from_node_id: bytes
    from_alias: str | None
    sent_at_ms: int
    received_at_ms: int
    scope: str
    content_type: str
    body: bytes
    acked: bool = False
    reply_to: bytes | None = None


@dataclass
class OutboxEntry:
    message_id: bytes
    to_node_id: bytes
    scope: str
    content_type: str
    body: bytes
    created_at_ms: int
    expires_at_ms: int
    status: str = "queued"  # queued | sent | delivered | failed
    path: str | None = None  # direct | relay | None
    attempts: int = 0
    next_attempt_ms: int = 0
    error: str | None = None
    reply_to: bytes | None = None
    delivered_at_ms: int | None = None
    sent_hashes: bytes = b""  # hashes of the envelopes sent for it (32 bytes each), newest last


@dataclass(frozen=True)
class OutgoingMessage:
    """A message to send: ``to`` is a node id (bytes) or a friend reference (alias or 0x id)."""

    to: bytes | str
    body: bytes
    scope: str = DEFAULT_SCOPE
    content_type: str = "text/plain"
    ttl_ms: int | None = None
    reply_to: bytes | None = None


@dataclass(frozen=True)
class IngressSource:
    """Where an envelope came from, as the transport saw it (not as it claims).

    ``transport`` is the transport name (``direct``, ``relay``, ...); ``peer``
    is a transport-level identity that the sender cannot choose freely: the
    TCP peer address for direct connections, the relay-authenticated node id
    for relayed frames.
    """

    transport: str
    peer: str


@dataclass(frozen=True)
class IngressMeta:
    """Cheap facts about an envelope, available before any crypto."""

    message_id: bytes
    from_node_id: bytes
    to_node_id: bytes
    timestamp_ms: int
    size: int
    has_invite: bool  # names an invite this node issued that is still active
    friend: Friend | None  # the stored friend claimed by from_node_id, if any
    invite_token_id: bytes = b""  # the token id it names (first contact), else empty


@dataclass(frozen=True)
class Verdict:
    """A hook's rejection: ``reason`` is a :class:`tmax_core.errors.Reason` code."""

    reason: str
    detail: str = ""


@dataclass
class ReceivedMessage:
    """A verified, decrypted message on its way to the delivery sinks."""

    message_id: bytes
    from_node_id: bytes
    from_alias: str | None
    to_node_id: bytes
    sent_at_ms: int
    received_at_ms: int
    scope: str
    content_type: str
    body: bytes
    reply_to: bytes | None = None
    via: str = ""  # transport name
    envelope_hash: bytes = b""  # of the envelope it came in (what its ack names)


@dataclass(frozen=True)
class InviteScope:
    """A scope an invite can grant. ``validate(content_type, body)`` raises
    ``ValueError`` with a one-line reason when a payload is not acceptable."""

    name: str
    description: str
    validate: Callable[[str, bytes], None] | None = None


class DeliverySink(Protocol):
    """Where accepted messages land. ``deliver`` must be durable when it
    returns and idempotent by ``message_id`` (it may be called twice for one
    message after a crash)."""

    name: str

    async def deliver(self, message: ReceivedMessage) -> None: ...

    # Optional: ``async def deliver_many(messages)`` for a batch (one
    # transaction); without it the node calls ``deliver`` once per message.
    # A sink with storage quotas raises ``tmax_core.errors.QuotaExceeded``
    # from ``deliver``, or returns the refused messages from ``deliver_many``.


class Transport(Protocol):
    """A way to carry envelopes to a friend.

    ``cost`` orders candidates when no plugin decides (lower first).
    ``can_reach`` is a cheap synchronous check; ``send`` returns the recipient's
    serialized SignedAck bytes, or ``None`` when an intermediary (a relay host's
    store-and-forward) took the envelope to deliver later, or raises
    ``ConnectionError``/``TimeoutError``.

    Optional: ``send_batch(friend, envelopes, timeout)`` returns one serialized
    batch SignedAck for several envelopes, or ``None`` when it could not carry
    them as one batch (the outbox then hands each to ``send``); ``answer_unverifiable(friend)`` is
    told when a returned ack did not verify as the friend's.
    """

    name: str
    cost: int

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def can_reach(self, friend: Friend) -> bool: ...

    async def send(self, friend: Friend, envelope: bytes, timeout: float) -> bytes | None: ...

    def status(self) -> dict[str, Any]: ...


EnvelopeHandler = Callable[[bytes, IngressSource], Awaitable[bytes]]
"""What transports call with inbound envelope bytes; returns SignedAck bytes."""
