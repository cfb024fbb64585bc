"""Stand-ins for the node around ingress and the outbox: a store in memory
with only the methods they call, and hosts that satisfy
:mod:`tmax_core.nodeports`' Protocols (checked by the tests that use them).
Crypto is real (keys are cheap); nothing touches disk or the network."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from tmax_core import envelope as env
from tmax_core.clock import now_ms
from tmax_core.config import Config, build_registry
from tmax_core.errors import MeshError, Reason
from tmax_core.identity import NodeIdentity
from tmax_core.invites import create_invite
from tmax_core.model import (
    DEFAULT_SCOPE,
    Friend,
    InviteScope,
    IssuedInvite,
    IssuedToken,
    OutboxEntry,
    ReceivedMessage,
    Transport,
)
from tmax_core.outbox import FINAL
from tmax_core.plugin.manager import create_plugin_manager
from tmax_core.store import expired_error

T = TypeVar("T")


def core_config(**overrides: Any) -> Config:
    """The core's defaults (no plugins, no file, no environment), then ``overrides``
    (``messages__max_bytes=...`` for ``messages.max_bytes``)."""
    config = Config.load(None, build_registry(create_plugin_manager(load_entrypoints=False)), env={})
    for key, value in overrides.items():
        config.override(key.replace("__", "."), value)
    return config


class MemoryStore:
    """The store calls ingress and the outbox make, on dicts. ``calls`` counts
    them by name, so a test can tell a write that did not happen."""

    def __init__(self) -> None:
        self.seen: dict[tuple[bytes, bytes], bytes | None] = {}
        self.outbox: dict[bytes, OutboxEntry] = {}
        self.invites: dict[bytes, IssuedInvite] = {}
        self.friends: dict[bytes, Friend] = {}
        self.calls: dict[str, int] = {}

    def _called(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    # -- ingress --------------------------------------------------------------

    def seen_check_many(self, keys: Sequence[tuple[bytes, bytes]]) -> dict[tuple[bytes, bytes], bytes | None]:
        self._called("seen_check_many")
        return {k: self.seen[k] for k in keys if k in self.seen}

    def accept_first_contact(self, token_id: bytes, friend: Friend, now_ms: int) -> Friend:
        """The real store's rules for the invite's use (see Store.accept_first_contact)."""
        self._called("accept_first_contact")
        invite = self.invites.get(token_id)
        if invite is None:
            raise MeshError("invite not issued here", code=Reason.INVITE_UNKNOWN)
        if invite.uses_left is not None:
            if invite.uses_left <= 0:
                raise MeshError("invite used", code=Reason.INVITE_USED)
            invite.uses_left -= 1
        self.friends[friend.node_id] = friend
        return friend

    # -- outbox ---------------------------------------------------------------

    def outbox_put_many(self, entries: Sequence[OutboxEntry]) -> None:
        self._called("outbox_put_many")
        for entry in entries:
            self.outbox[entry.message_id] = replace(entry)

    def outbox_get(self, message_id: bytes) -> OutboxEntry | None:
        entry = self.outbox.get(message_id)
        return None if entry is None else replace(entry)

    def outbox_due(self, now_ms: int, limit: int, skip: Iterable[bytes] = ()) -> list[OutboxEntry]:
        skipped = set(skip)
        due = [
            replace(e)
            for e in self.outbox.values()
            if e.status in ("queued", "sent") and e.next_attempt_ms <= now_ms and e.message_id not in skipped
        ]
        return due[:limit]

    def outbox_due_again(self, path: str, now_ms: int) -> int:
        again = [e for e in self.outbox.values() if e.status == "sent" and e.path == path]
        for e in again:
            e.next_attempt_ms = now_ms
        return len(again)

    def outbox_expire(self, now_ms: int) -> list[bytes]:
        expired = [
            e for e in self.outbox.values() if e.status in ("queued", "sent") and e.expires_at_ms <= now_ms
        ]
        for e in expired:
            e.status, e.error = "failed", expired_error(e.error)
        return [e.message_id for e in expired]

    def outbox_update_many(self, updates: Sequence[tuple[bytes, dict[str, Any]]]) -> None:
        """Like the real store: a final entry stays as it is."""
        self._called("outbox_update_many")
        for message_id, fields in updates:
            entry = self.outbox[message_id]
            if entry.status not in FINAL:
                for name, value in fields.items():
                    setattr(entry, name, value)


class _HostBase:
    """What ingress and the outbox both use of the node (nodeports._Storage)."""

    def __init__(self, identity: NodeIdentity | None = None, config: Config | None = None) -> None:
        self.identity = identity or NodeIdentity.generate()
        self.config = config or core_config()
        self.store = MemoryStore()
        self.friends: dict[bytes, Friend] = {}

    def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        """Runs ``fn`` at once (no thread: the store is in memory)."""
        result: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        try:
            result.set_result(fn(*args, **kwargs))
        except Exception as err:
            result.set_exception(err)
        return result

    def db_batch(self, fn: Callable[[Sequence[Any]], T], batch: Sequence[Any]) -> Awaitable[T]:
        return self.db(fn, batch)

    def duration_ms(self, key: str) -> int:
        return self.config.get_duration_ms(key)

    def befriend(self, other: NodeIdentity, **fields: Any) -> Friend:
        friend = Friend(node_id=other.node_id, public_key=other.public_key, **fields)
        self.friends[friend.node_id] = friend
        return friend


class IngressHostFake(_HostBase):
    """An :class:`~tmax_core.nodeports.IngressHost`: records deliveries and
    rejections; ``deliver_fails`` / ``over_quota`` make the sinks fail or refuse."""

    def __init__(self, identity: NodeIdentity | None = None, config: Config | None = None) -> None:
        super().__init__(identity, config)
        self.pm = create_plugin_manager(load_entrypoints=False)
        self.scopes = {DEFAULT_SCOPE: InviteScope(DEFAULT_SCOPE, "plain messages")}
        self.issued_invites: dict[bytes, IssuedToken] = {}
        self.delivered: list[ReceivedMessage] = []
        self.rejected: list[str] = []
        self.contacts: list[tuple[bytes, list[str], list[str]]] = []
        self.deliver_fails: Exception | None = None
        self.over_quota: set[bytes] = set()  # message ids the sinks have no room for

    def metrics_rejected(self, reason: str) -> None:
        self.rejected.append(reason)

    async def deliver_many(self, messages: list[ReceivedMessage]) -> list[ReceivedMessage]:
        if self.deliver_fails is not None:
            raise self.deliver_fails
        refused = [m for m in messages if m.message_id in self.over_quota]
        kept = [m for m in messages if m.message_id not in self.over_quota]
        self.delivered += kept
        for m in kept:
            self.store.seen[(m.from_node_id, m.message_id)] = m.envelope_hash
        return refused

    async def invites_changed(self) -> None:
        self.issued_invites = {
            t: replace(issued, invite=self.store.invites[t])
            for t, issued in self.issued_invites.items()
            if t in self.store.invites
        }

    def friend_changed(self, friend: Friend | None = None) -> None:
        if friend is not None:
            self.friends[friend.node_id] = friend

    def remote_alias(self, suggested: str | None, node_id: bytes) -> str | None:
        return suggested or None

    def checked_contact(
        self, node_id: bytes, relay_hosts: Iterable[str], endpoints: Iterable[str]
    ) -> tuple[list[str], list[str]]:
        return list(relay_hosts), list(endpoints)

    async def update_contact(
        self, friend: Friend, relay_hosts: Iterable[str], endpoints: Iterable[str]
    ) -> None:
        self.contacts.append((friend.node_id, list(relay_hosts), list(endpoints)))

    def issue_invite(self, *, uses: int = 1, ttl_ms: int = 60_000, revoked: bool = False) -> bytes:
        """An invite this node issued (a real token); returns the serialized token."""
        invite = create_invite(
            self.identity,
            ttl_ms=ttl_ms,
            max_uses=uses,
            scopes=[DEFAULT_SCOPE],
            relay_hosts=[],
            endpoints=[],
            rate_limit=None,
            alias="inviter",
        )
        record = IssuedInvite(
            token_id=invite.token_id,
            created_at_ms=invite.issued_at_ms,
            expires_at_ms=invite.expires_at_ms,
            max_uses=uses,
            uses_left=uses or None,
            scopes=[DEFAULT_SCOPE],
            rate_limit=None,
            revoked=revoked,
        )
        self.store.invites[invite.token_id] = record
        self.issued_invites[invite.token_id] = IssuedToken(
            record, invite.raw, env.invite_proof_key(invite.raw)
        )
        return invite.raw


class OutboxHostFake(_HostBase):
    """An :class:`~tmax_core.nodeports.OutboxHost` whose transports are the
    test's; seals for real, on the event loop."""

    def __init__(self, identity: NodeIdentity | None = None, config: Config | None = None) -> None:
        super().__init__(identity, config)
        self.transports: list[Transport] = []
        self.failures: list[tuple[str, Exception]] = []
        self.sends: list[tuple[str, str | None]] = []
        self.first_contacts: list[bytes] = []

    async def crypto(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)

    def seal_many(self, friend: Friend, entries: list[OutboxEntry]) -> list[bytes]:
        return [
            env.seal(
                self.identity,
                to_node_id=friend.node_id,
                to_public_key=friend.public_key,
                scope=e.scope,
                content_type=e.content_type,
                body=e.body,
                message_id=e.message_id,
            )
            for e in entries
        ]

    def prepare_ephemeral(self, friend: Friend) -> None: ...

    def transports_for(self, friend: Friend) -> list[Transport]:
        return [t for t in self.transports if t.can_reach(friend)]

    def transport_failed(self, transport: Transport, friend: Friend, err: Exception) -> None:
        self.failures.append((transport.name, err))

    async def first_contact_done(self, friend: Friend) -> None:
        friend.invite_token = None
        self.first_contacts.append(friend.node_id)

    def count_send(self, status: str, path: str | None) -> None:
        self.sends.append((status, path))


def outbox_entry(to: bytes, body: bytes = b"hi", *, ttl_ms: int = 60_000, **fields: Any) -> OutboxEntry:
    now = now_ms()
    return OutboxEntry(
        message_id=os.urandom(16),
        to_node_id=to,
        scope=DEFAULT_SCOPE,
        content_type="text/plain",
        body=body,
        created_at_ms=now,
        expires_at_ms=now + ttl_ms,
        next_attempt_ms=now,
        **fields,
    )
