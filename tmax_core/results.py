"""What the local API answers, as typed, frozen dataclasses (the SDK's results).

Each type is built from its protobuf reply (``from_pb``) and turns into the
JSON shape of the command-line contract (``as_dict``, DESIGN §14), so the CLI
and the SDK share one conversion. Ids are strings here, as the API shows
them (``0x…`` checksummed node ids, hex message and token ids); the core's
own :mod:`tmax_core.model` types hold raw bytes, hence the different names
(:class:`FriendInfo`, not ``Friend``).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any

from tmax_core import boundedjson
from tmax_core.errors import UnreadableReply
from tmax_core.model import RateLimit
from tmax_core.proto import node_pb2 as pb

TEXT_TYPES = ("text/", "application/json")

MSG_SEND_FIELDS = ("message_id", "status", "path", "attempts", "error")
"""The fields of ``msg send --json`` (a subset of :class:`MsgState`)."""


MAX_DETAILS_NESTING = 100
"""How deep a transport's details may nest (protobuf's own parser stops at 100 too)."""
TRANSPORT_FIELDS = ("name", "state")
"""A transport's fields in ``node status``; its details cannot replace them."""


def _details(text: str) -> dict[str, Any]:
    """A transport's ``details_json`` as a dict; :class:`UnreadableReply` if it is none
    (nested deeper than :data:`MAX_DETAILS_NESTING` included), without a ``name`` or
    ``state`` of its own (:data:`TRANSPORT_FIELDS`). The message names no
    part of the reply: it may come from anything listening on the socket."""
    details = None
    with contextlib.suppress(ValueError):
        details = boundedjson.loads(text or "{}", MAX_DETAILS_NESTING)
    if not isinstance(details, dict):
        raise UnreadableReply("unreadable node status: a transport's details are not a JSON object")
    return {k: v for k, v in details.items() if k not in TRANSPORT_FIELDS}  # never the transport's own


def body_for_json(content_type: str, body: bytes) -> tuple[str, str | None]:
    """Text bodies as text; anything else base64 (DESIGN §14). Returns (body, encoding)."""
    if content_type.startswith(TEXT_TYPES):
        try:
            return body.decode("utf-8"), None
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode(), "base64"


class _Result:
    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of the command-line contract."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class NodeInfo(_Result):
    node_id: str
    public_key: str
    state_dir: str
    socket: str
    version: str

    @classmethod
    def from_pb(cls, r: pb.NodeInfoReply) -> NodeInfo:
        return cls(r.node_id, r.public_key, r.state_dir, r.socket, r.version)


@dataclass(frozen=True)
class TransportInfo:
    """One transport in :class:`NodeStatus`; ``details`` are its own fields
    (for ``relay``: ``hosts`` with each link's ``state``; for ``direct``:
    ``friends`` with each friend's path)."""

    name: str
    state: str
    details: dict[str, Any]


@dataclass(frozen=True)
class NodeStatus(_Result):
    node_id: str
    friends: int
    peer_listen: str | None
    uptime_ms: int
    inbox_unread: int
    outbox: dict[str, int]
    sinks: list[str]
    counters: dict[str, int]
    transports: list[TransportInfo]

    @classmethod
    def from_pb(cls, s: pb.NodeStatusReply) -> NodeStatus:
        return cls(
            node_id=s.node_id,
            friends=s.friends,
            peer_listen=s.peer_listen or None,
            uptime_ms=s.uptime_ms,
            inbox_unread=s.inbox_unread,
            outbox=dict(s.outbox),
            sinks=list(s.sinks),
            counters=dict(sorted(s.counters.items())),
            transports=[TransportInfo(t.name, t.state, _details(t.details_json)) for t in s.transports],
        )

    def transport(self, name: str) -> TransportInfo | None:
        return next((t for t in self.transports if t.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["transports"] = [{"name": t.name, "state": t.state, **t.details} for t in self.transports]
        return out


@dataclass(frozen=True)
class FriendInfo(_Result):
    """A friend as the local API shows it (the store's record is :class:`tmax_core.model.Friend`)."""

    node_id: str
    alias: str | None
    blocked: bool
    scopes: list[str]
    relay_hosts: list[str]
    endpoints: list[str]
    added_at_ms: int
    last_seen_ms: int | None
    rate_limit: RateLimit | None

    @classmethod
    def from_pb(cls, f: pb.Friend) -> FriendInfo:
        return cls(
            node_id=f.node_id,
            alias=f.alias or None,
            blocked=f.blocked,
            scopes=list(f.scopes),
            relay_hosts=list(f.relay_hosts),
            endpoints=list(f.endpoints),
            added_at_ms=f.added_at_ms,
            last_seen_ms=f.last_seen_ms or None,
            rate_limit=RateLimit(f.rate_limit.rate_per_s, f.rate_limit.burst)
            if f.HasField("rate_limit")
            else None,
        )


@dataclass(frozen=True)
class CreatedInvite(_Result):
    """A new invite: give ``token`` to the other node. ``uses`` None = unlimited."""

    token: str
    token_id: str
    expires_at_ms: int
    uses: int | None
    scopes: list[str]
    relay_hosts: list[str]
    endpoints: list[str]

    @classmethod
    def from_pb(cls, r: pb.InviteCreateReply) -> CreatedInvite:
        return cls(
            r.token,
            r.token_id,
            r.expires_at_ms,
            r.uses or None,
            list(r.scopes),
            list(r.relay_hosts),
            list(r.endpoints),
        )


@dataclass(frozen=True)
class InviteInfo(_Result):
    """An invite this node issued. ``uses_left`` None = unlimited."""

    token_id: str
    expires_at_ms: int
    uses_left: int | None
    scopes: list[str]
    created_at_ms: int
    revoked: bool
    max_uses: int

    @classmethod
    def from_pb(cls, i: pb.IssuedInvite) -> InviteInfo:
        return cls(
            i.token_id,
            i.expires_at_ms,
            None if i.uses_left < 0 else i.uses_left,
            list(i.scopes),
            i.created_at_ms,
            i.revoked,
            i.max_uses,
        )


@dataclass(frozen=True)
class MsgState(_Result):
    """A sent message's delivery state: ``status`` is queued | sent | delivered |
    failed, ``path`` direct | relay | None."""

    message_id: str
    status: str
    path: str | None
    attempts: int
    error: str | None
    to: str
    created_at_ms: int
    delivered_at_ms: int | None

    @classmethod
    def from_pb(cls, m: pb.MsgState) -> MsgState:
        return cls(
            m.message_id,
            m.status,
            m.path or None,
            m.attempts,
            m.error or None,
            m.to,
            m.created_at_ms,
            m.delivered_at_ms or None,
        )

    @property
    def final(self) -> bool:
        """Delivered or failed: the state will not change any more."""
        return self.status in ("delivered", "failed")


@dataclass(frozen=True)
class InboxItem(_Result):
    """A received message as the local API shows it (the store's record is
    :class:`tmax_core.model.InboxMessage`). ``body`` is the exact bytes;
    :attr:`text` decodes it."""

    message_id: str
    from_node_id: str
    from_alias: str | None
    sent_at_ms: int
    received_at_ms: int
    scope: str
    content_type: str
    body: bytes
    acked: bool
    reply_to: str | None

    @classmethod
    def from_pb(cls, m: pb.InboxMessage) -> InboxItem:
        return cls(
            m.message_id,
            m.from_node_id,
            m.from_alias or None,
            m.sent_at_ms,
            m.received_at_ms,
            m.scope,
            m.content_type,
            m.body,
            m.acked,
            m.reply_to or None,
        )

    @property
    def sender(self) -> str:
        """The sender's alias, or its node id when it has none."""
        return self.from_alias or self.from_node_id

    @property
    def text(self) -> str:
        """The body as UTF-8 text (undecodable bytes replaced)."""
        return self.body.decode("utf-8", errors="replace")

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["body"], encoding = body_for_json(self.content_type, self.body)
        if encoding:
            out["body_encoding"] = encoding
        return out


@dataclass(frozen=True)
class FriendStatus(_Result):
    """A friend as ``tmax-mesh status`` shows it: ``path`` is how a message
    would go now (``direct``, ``relay``, another transport, or ``offline``);
    ``queued``/``sent``/``failed`` count the messages to it in the outbox
    (``sent``: handed over, awaiting the delivery ack)."""

    alias: str | None
    node_id: str
    path: str
    last_seen_ms: int | None
    queued: int
    sent: int
    failed: int
    blocked: bool

    @classmethod
    def from_pb(cls, f: pb.FriendStatus) -> FriendStatus:
        return cls(
            alias=f.alias or None,
            node_id=f.node_id,
            path=f.path,
            last_seen_ms=f.last_seen_ms or None,
            queued=f.outbox.get("queued", 0),
            sent=f.outbox.get("sent", 0),
            failed=f.outbox.get("failed", 0),
            blocked=f.blocked,
        )


def as_json(value: Any) -> Any:
    """A result (or a list of them) in its JSON shape."""
    if isinstance(value, list):
        return [as_json(v) for v in value]
    return value.as_dict() if isinstance(value, _Result) else value
