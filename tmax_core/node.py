"""The running node: identity, state, transports, sinks and the operations
the local API exposes. One instance per ``tmax-node`` process.

SQLite is blocking, so store calls go through :meth:`Node.db`, which runs
them on one dedicated worker thread, or :meth:`Node.db_batch`, which runs a
small one at once when the database is idle (one connection, calls
serialized by a lock either way).
Sealing is CPU-bound and its EC arithmetic releases the GIL, so the outbox
seals on another thread (:meth:`Node.crypto`): the event loop stays free for
the local API and the network, and a second core can help.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pluggy

from tmax_core import envelope as env
from tmax_core.aliases import alias_key, alias_problem, generated_alias
from tmax_core.clock import now_ms
from tmax_core.config import Config, is_wildcard_host
from tmax_core.crypto import parse_node_id, to_checksum
from tmax_core.endpoints import endpoint_problem, relay_url_problem, screen_endpoints, screen_relay_urls
from tmax_core.ephemeral import EphemeralPool
from tmax_core.errors import ConfigError, InviteReason, MeshError, NotFound, QuotaExceeded, UsageError
from tmax_core.identity import NodeIdentity
from tmax_core.inboxfeed import InboxFeed, follow
from tmax_core.ingress import Ingress
from tmax_core.invites import Invite, create_invite, parse_invite, token_bytes
from tmax_core.model import (
    DEFAULT_SCOPE,
    DeliverySink,
    Friend,
    IngressSource,
    InviteScope,
    IssuedInvite,
    IssuedToken,
    OutboxEntry,
    OutgoingMessage,
    RateLimit,
    ReceivedMessage,
    Transport,
)
from tmax_core.outbox import Outbox
from tmax_core.plugin.nodeapi import PluginStates
from tmax_core.proto import mesh_pb2
from tmax_core.sendqueue import SendQueue
from tmax_core.store import Store

log = logging.getLogger("tmax_mesh.node")
T = TypeVar("T")

SEEN_MAX_ROWS = 1_000_000
# A store call over at most this many rows takes tens of microseconds: run on
# the event loop it costs less than the two thread wake-ups of a hop to the
# database thread (about 0.4 ms on a quiet 2-core machine).
INLINE_DB_ROWS = 8
MAINTENANCE_INTERVAL_S = 60.0

HELLO_CONTENT_TYPE = "application/vnd.tmax-mesh.hello"
"""First-contact message sent when an invite is accepted: makes the inviter
add us as a friend; it is acknowledged but not delivered to any sink."""


class Node:
    def __init__(
        self,
        *,
        state_dir: Path,
        config: Config,
        pm: pluggy.PluginManager,
        identity: NodeIdentity,
        store: Store,
        socket_path: Path,
    ) -> None:
        self.state_dir = state_dir
        self.config = config
        self.pm = pm
        self.identity = identity
        self.store = store
        self.socket_path = socket_path
        self.peer_listen: str | None = None
        self.started_at = time.monotonic()
        self.friends: dict[bytes, Friend] = {}
        # Every invite this node remembers issuing, by token id: ingress turns
        # a stranger away on this lookup and an HMAC, before any crypto.
        self.issued_invites: dict[bytes, IssuedToken] = {}
        self.transports: list[Transport] = []
        self.sinks: list[DeliverySink] = []
        self._sink_candidates: dict[str, DeliverySink] = {}  # every registered sink, by name
        self.scopes: dict[str, InviteScope] = {}
        self.counters: Counter[str] = Counter()
        self.friend_listeners: list[Callable[[], None]] = []
        self._plugin_states = PluginStates()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tmax-db")
        self._db_lock = threading.Lock()  # one store call at a time, whichever thread runs it
        # One thread: seals finish in the order they were asked for, which keeps
        # each friend's messages in order.
        self._crypto_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tmax-crypto")
        self._contact_card: mesh_pb2.ContactCard | None = None
        self.ephemeral = EphemeralPool()
        self._filling: set[bytes] = set()  # recipient keys with a refill queued
        self.inbox_feed = InboxFeed()
        self._peer_server: Any = None
        self._maintenance_task: asyncio.Task | None = None
        self.max_body_bytes = config.get("messages.max_bytes") - env.BODY_HEADROOM
        self.default_ttl_ms = self.duration_ms("messages.ttl")
        self.ingress = Ingress(self)
        self.outbox = Outbox(self)
        # Concurrent sends share outbox commits (see tmax_core.sendqueue).
        self._sends: SendQueue[OutboxEntry] = SendQueue(self.outbox.submit_many)

    # -- plumbing ------------------------------------------------------------

    def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        """Run a blocking store call on the database thread; await the result.

        The call is queued at once (not when awaited), so the caller can do
        other work, such as sealing, while the database thread runs it."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._executor, self._locked, fn, args, kwargs)

    def db_batch(self, fn: Callable[[Sequence[Any]], T], batch: Sequence[Any]) -> Awaitable[T]:
        """Like :meth:`db` for a store call over ``batch``; a small batch
        (``INLINE_DB_ROWS``) runs right here if no other store call is running,
        so a lone message does not pay a thread hop per database step. The
        loop never waits for the lock: if it is taken, the call queues."""
        if len(batch) <= INLINE_DB_ROWS and self._db_lock.acquire(blocking=False):
            result = asyncio.get_running_loop().create_future()
            try:
                result.set_result(fn(batch))
            except Exception as err:
                result.set_exception(err)
            finally:
                self._db_lock.release()
            return result
        return self.db(fn, batch)

    def _locked(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        with self._db_lock:
            return fn(*args, **kwargs)

    async def crypto(self, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU-bound crypto (sealing a batch) on the crypto thread."""
        return await asyncio.get_running_loop().run_in_executor(self._crypto_executor, fn, *args)

    def duration_ms(self, key: str) -> int:
        return self.config.get_duration_ms(key)

    @property
    def node_id_hex(self) -> str:
        return self.identity.node_id_hex

    def plugin_state(self, key: str, factory: Callable[[], T]) -> T:
        """Per-node plugin state (:class:`tmax_core.plugin.NodeAPI`): made by
        ``factory()`` on the first call with ``key``, the same object after."""
        return self._plugin_states.get(key, factory)

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        from tmax_core.peer import start_peer_server

        self.pm.hook.tmax_register_invite_scopes(register=self._register_scope)
        self.pm.hook.tmax_register_delivery_sinks(register=self._register_sink_candidate, node=self)
        self._select_sinks()
        self.pm.hook.tmax_register_transports(register=self._register_transport, node=self)
        self.transports.sort(key=lambda t: t.cost)
        for friend in await self.db(self.store.list_friends):
            # Contacts stored before they were screened are screened now (in memory).
            friend.relay_hosts, friend.endpoints = self.checked_contact(
                friend.node_id, friend.relay_hosts, friend.endpoints
            )
            self.friends[friend.node_id] = friend
        await self.invites_changed()
        listen = self.config.get("node.peer_listen")
        if self.config.get("node.peer_advertise") and not listen:
            raise ConfigError(
                "node.peer_advertise is set but node.peer_listen is not: nothing would answer there"
            )
        if listen:
            self._peer_server, self.peer_listen = await start_peer_server(self, listen)
        self.contact_card()  # now that the listener is known; seal threads only read it
        for transport in self.transports:
            await transport.start()
        await self.outbox.start()
        self._maintenance_task = asyncio.create_task(self._maintenance(), name="maintenance")
        self.pm.hook.tmax_node_started(node=self)
        log.info(
            "node %s started (sinks %s, transports %s, peer listener %s)",
            self.node_id_hex,
            [s.name for s in self.sinks],
            [t.name for t in self.transports],
            self.peer_listen,
        )

    async def stop(self) -> None:
        self.pm.hook.tmax_node_stopping(node=self)
        if self._peer_server is not None:
            await self._peer_server.stop(grace=1.0)
        await self._sends.stop()
        await self.outbox.stop()
        if self._maintenance_task is not None:
            self._maintenance_task.cancel()
            await asyncio.gather(self._maintenance_task, return_exceptions=True)
        for transport in reversed(self.transports):
            try:
                await transport.stop()
            except Exception:
                log.exception("stopping transport %s failed", transport.name)
        self.inbox_feed.close()
        await self.db(self.store.close)
        self._executor.shutdown(wait=True)
        self._crypto_executor.shutdown(wait=True)

    async def _maintenance(self) -> None:
        """Forget seen message ids past their retention (and beyond the row cap)."""
        retention = max(self.duration_ms("messages.seen_retention"), 2 * self.ingress.window_ms)
        while True:
            try:
                pruned = await self.db(self.store.seen_prune, now_ms() - retention, SEEN_MAX_ROWS)
                if pruned:
                    log.info("pruned %d seen message ids", pruned)
            except Exception:
                log.exception("maintenance pass failed")
            await asyncio.sleep(MAINTENANCE_INTERVAL_S)

    def _register_scope(self, scope: InviteScope) -> None:
        self.scopes[scope.name] = scope

    def _register_sink_candidate(self, sink: DeliverySink) -> None:
        self._sink_candidates[sink.name] = sink

    def _select_sinks(self) -> None:
        available = self._sink_candidates
        wanted = list(self.config.get("delivery.sinks"))
        if not wanted:
            raise ConfigError("delivery.sinks is empty: messages would have nowhere to land")
        missing = [name for name in wanted if name not in available]
        if missing:
            raise ConfigError(
                f"delivery.sinks names {', '.join(missing)}, which no installed plugin provides "
                f"(available: {', '.join(sorted(available)) or 'none'})"
            )
        self.sinks = [available[name] for name in wanted]

    def _register_transport(self, transport: Transport) -> None:
        if any(t.name == transport.name for t in self.transports):
            raise ConfigError(f"two plugins register a transport named {transport.name!r}")
        self.transports.append(transport)

    # -- ingress ---------------------------------------------------------------

    async def handle_envelope(self, data: bytes, source: IngressSource) -> bytes:
        """Entry point for transports: run ingress, return the signed ack bytes
        (empty bytes: no answer, see :mod:`tmax_core.ingress`)."""
        self.counters["envelopes_in"] += 1
        return await self.ingress.handle(data, source)

    async def handle_envelope_batch(
        self, envelopes: list[bytes], source: IngressSource, nonce: bytes = b""
    ) -> bytes:
        """Entry point for batching transports: one signed batch ack for them
        all, echoing ``nonce`` (empty bytes: no answer, see :mod:`tmax_core.ingress`)."""
        self.counters["envelopes_in"] += len(envelopes)
        return await self.ingress.handle_batch(envelopes, source, nonce)

    async def handle_ack(self, ack: bytes, from_node_id: bytes) -> None:
        """Entry point for transports that carry acks separately (relay store-and-forward)."""
        friend = self.friends.get(from_node_id)
        if friend is not None:
            await self.outbox.handle_async_ack(ack, friend)

    async def deliver_many(self, messages: list[ReceivedMessage]) -> list[ReceivedMessage]:
        """Hand accepted messages to every configured sink, then remember their ids.

        Sinks are idempotent by message id, so a crash between the two steps
        only means the sender retries and the sinks ignore the repeat.

        Returns the messages a sink refused for lack of quota: they go to no
        later sink and are not remembered (a sink before may have kept one)."""
        for_sinks = [m for m in messages if m.content_type != HELLO_CONTENT_TYPE]
        refused: list[ReceivedMessage] = []
        for sink in self.sinks:
            if not for_sinks:
                break
            deliver_many = getattr(sink, "deliver_many", None)
            if deliver_many is not None:
                over = await deliver_many(for_sinks) or []
            else:
                over = []
                for message in for_sinks:
                    try:
                        await sink.deliver(message)
                    except QuotaExceeded:
                        over.append(message)
            if over:
                refused.extend(over)
                gone = {id(m) for m in over}
                for_sinks = [m for m in for_sinks if id(m) not in gone]
        gone = {id(m) for m in refused}
        messages = [m for m in messages if id(m) not in gone]
        records = [
            (m.from_node_id, m.message_id, m.envelope_hash, "accepted", m.received_at_ms) for m in messages
        ]
        await self.db_batch(self.store.record_received_many, records)
        for m in messages:
            self.counters[f"in:{m.via or '-'}"] += 1
            friend = self.friends.get(m.from_node_id)
            if friend is not None:
                friend.last_seen_ms = max(friend.last_seen_ms or 0, m.received_at_ms)
        self.counters["messages_in"] += len(messages)
        return refused

    def metrics_rejected(self, reason: str) -> None:
        self.counters[f"rejected:{reason}"] += 1

    def count_send(self, status: str, path: str | None) -> None:
        self.counters[f"send:{status}:{path or '-'}"] += 1

    # -- friends -----------------------------------------------------------------

    def friend_changed(self, friend: Friend | None = None) -> None:
        """Record a changed friend (or just notify), kick the outbox and tell
        ``friend_listeners`` (e.g. the relay transport's lookup allow-list)."""
        if friend is not None:
            self.friends[friend.node_id] = friend
        self.outbox.kick()
        for listener in self.friend_listeners:
            listener()

    def free_alias(self, wanted: str | None) -> str | None:
        """``wanted`` if no friend uses it yet, else ``wanted-2``, ``wanted-3``...
        (compared by :func:`~tmax_core.aliases.alias_key`: a case variant is taken too)."""
        if not wanted:
            return None
        taken = {alias_key(f.alias) for f in self.friends.values() if f.alias}
        alias, n = wanted, 1
        while alias_key(alias) in taken:
            n += 1
            alias = f"{wanted}-{n}"
        return alias

    def remote_alias(self, suggested: str | None, node_id: bytes) -> str | None:
        """A free alias for a friend from the one it suggested (invite or
        contact card); a suggestion that breaks the alias rules
        (:mod:`tmax_core.aliases`) is replaced by a generated one, so a bad
        name never fails a friendship."""
        if not suggested:
            return None
        problem = alias_problem(suggested)
        if problem is not None:
            log.warning("alias suggested by %s refused: %s", to_checksum(node_id), problem)
            suggested = generated_alias(node_id)
        return self.free_alias(suggested)

    def checked_contact(
        self, node_id: bytes, relay_hosts: Iterable[str], endpoints: Iterable[str]
    ) -> tuple[list[str], list[str]]:
        """The relay hosts and endpoints that ``node_id`` (a friend, its invite)
        gave and that this node keeps (see :mod:`tmax_core.endpoints`); what
        is dropped is logged here."""
        hosts, eps, dropped = _screen_contact(relay_hosts, endpoints)
        if dropped:
            log.warning("contact of %s: dropped %s", to_checksum(node_id), dropped)
        return hosts, eps

    async def update_contact(
        self, friend: Friend, relay_hosts: Iterable[str], endpoints: Iterable[str]
    ) -> None:
        """A friend's card (on every message): store it if it changed. What a
        card drops is logged when the stored contact changes, not per message."""
        relay_hosts, endpoints = list(relay_hosts), list(endpoints)
        if relay_hosts == friend.relay_hosts and endpoints == friend.endpoints:
            return  # the usual case: the card as stored (and screened) before, no work per message
        hosts, eps, dropped = _screen_contact(relay_hosts, endpoints)
        if (hosts and hosts != friend.relay_hosts) or (eps and eps != friend.endpoints):
            if dropped:
                log.warning("contact of %s: dropped %s", to_checksum(friend.node_id), dropped)
            await self.db(self.store.update_friend_contact, friend.node_id, hosts, eps)
            self.friend_changed(await self.db(self.store.get_friend, friend.node_id))

    async def first_contact_done(self, friend: Friend) -> None:
        friend.invite_token = None
        await self.db(self.store.clear_friend_invite_token, friend.node_id)

    def find_friend(self, ref: str) -> Friend:
        ref = ref.strip()
        if ref.lower().startswith("0x"):
            node_id = parse_node_id(ref)
            friend = self.friends.get(node_id)
            if friend is None:
                raise NotFound(f"no friend with node id {ref}")
            return friend
        # At most one friend matches: the store keeps aliases unique by this key.
        key = alias_key(ref)
        for friend in self.friends.values():
            if friend.alias and alias_key(friend.alias) == key:
                return friend
        raise NotFound(f"no friend named {ref!r} (see `tmax-mesh friends list`)")

    async def list_friends(self) -> list[Friend]:
        return sorted(self.friends.values(), key=lambda f: f.added_at_ms)

    async def set_blocked(self, ref: str, blocked: bool) -> Friend:
        friend = self.find_friend(ref)
        updated = await self.db(self.store.set_blocked, friend.node_id, blocked)
        self.friend_changed(updated)
        return updated

    async def remove_friend(self, ref: str) -> Friend:
        friend = self.find_friend(ref)
        await self.db(self.store.remove_friend, friend.node_id)
        self.friends.pop(friend.node_id, None)
        self.friend_changed()
        return friend

    # -- invites -------------------------------------------------------------------

    def contact_card(self) -> mesh_pb2.ContactCard:
        """What every sealed message tells its recipient about reaching us.
        Built once the peer listener is up (nothing in it changes after)."""
        if self._contact_card is None:
            self._contact_card = mesh_pb2.ContactCard(
                relay_hosts=self.relay_hosts(),
                endpoints=self.advertised_endpoints(),
                alias=self.config.get("node.alias") or "",
            )
        return self._contact_card

    def relay_hosts(self) -> list[str]:
        return list(self.config.get("node.relays"))

    def rendezvous_endpoints(self) -> list[str]:
        """What to tell a relay host for direct upgrade: ``node.peer_advertise``,
        else the listener as bound; wildcards included (the host pairs their
        port with the IP it observes)."""
        if not self.peer_listen:
            return []
        return list(self.config.get("node.peer_advertise")) or [self.peer_listen]

    def advertised_endpoints(self) -> list[str]:
        """What invites and contact cards carry: the endpoints of
        :meth:`rendezvous_endpoints` that are dialable as written (not a wildcard)."""
        return [ep for ep in self.rendezvous_endpoints() if not is_wildcard_host(ep.rpartition(":")[0])]

    async def create_invite(
        self,
        *,
        ttl_ms: int | None,
        uses: int | None,
        scopes: list[str],
        relay_hosts: list[str],
        endpoints: list[str],
        alias: str | None,
        rate_limit: RateLimit | None,
    ) -> Invite:
        scopes = scopes or [DEFAULT_SCOPE]
        if alias and (problem := alias_problem(alias)):
            raise UsageError(problem)
        # What the invitee would drop (see tmax_core.endpoints) is refused here.
        for flag, values, problem_of in (
            ("--relay", relay_hosts, relay_url_problem),
            ("--endpoint", endpoints, endpoint_problem),
        ):
            for value in values:
                if (problem := problem_of(value)) is not None:
                    raise UsageError(f"{flag} {value!r}: {problem}")
        unknown = [s for s in scopes if s not in self.scopes]
        if unknown:
            raise UsageError(f"unknown scope {unknown[0]!r} (known: {', '.join(sorted(self.scopes))})")
        invite = create_invite(
            self.identity,
            ttl_ms=ttl_ms or self.duration_ms("invites.default_ttl"),
            max_uses=1 if uses is None else uses,
            scopes=scopes,
            relay_hosts=relay_hosts or self.relay_hosts(),
            endpoints=endpoints or self.advertised_endpoints(),
            rate_limit=rate_limit,
            alias=alias or self.config.get("node.alias") or None,
        )
        record = IssuedInvite(
            token_id=invite.token_id,
            created_at_ms=invite.issued_at_ms,
            expires_at_ms=invite.expires_at_ms,
            max_uses=invite.max_uses,
            uses_left=invite.max_uses or None,
            scopes=list(invite.scopes),
            rate_limit=invite.rate_limit,
        )
        await self.db(self.store.record_issued_invite, record, invite.token)
        await self.invites_changed()
        return invite

    async def revoke_invite(self, token_id: bytes) -> None:
        await self.db(self.store.revoke_invite, token_id)
        await self.invites_changed()

    async def invites_changed(self) -> None:
        """Reload the issued invites ingress checks first contact against
        (after one is created, revoked or used)."""
        issued = await self.db(self.store.issued_invite_tokens)
        tokens = {}
        for token_id, (invite, text) in issued.items():
            raw = token_bytes(text)
            tokens[token_id] = IssuedToken(invite, raw, env.invite_proof_key(raw))
        self.issued_invites = tokens

    async def accept_invite(self, token: str, alias: str | None) -> Friend:
        invite = parse_invite(token, now_ms=now_ms(), known_scopes=set(self.scopes))
        if invite.inviter_node_id == self.identity.node_id:
            raise MeshError(
                "this invite was created by this node; give it to another node", code=InviteReason.SELF
            )
        if alias and (problem := alias_problem(alias)):
            raise UsageError(problem)
        relay_hosts, endpoints = self.checked_contact(
            invite.inviter_node_id, invite.relay_hosts, invite.endpoints
        )
        friend = Friend(
            node_id=invite.inviter_node_id,
            public_key=invite.inviter_public_key,
            alias=alias or self.remote_alias(invite.alias, invite.inviter_node_id),
            scopes=list(invite.scopes),
            relay_hosts=relay_hosts,
            endpoints=endpoints,
            # The invite's rate limit is what the inviter grants *us*; the
            # inviter's own messages get this node's configured defaults.
            rate_limit=None,
            added_at_ms=now_ms(),
            invite_token=invite.raw,
        )
        friend = await self.db(self.store.add_friend, friend)
        self.friend_changed(friend)
        await self.send(friend.node_id, b"", content_type=HELLO_CONTENT_TYPE)
        return friend

    # -- messages ------------------------------------------------------------------

    async def send(self, to: bytes | str, body: bytes, **options: Any) -> OutboxEntry:
        """Persist one message in the outbox and start sending it."""
        (entry,) = await self._sends.submit([self._outbox_entry(OutgoingMessage(to, body, **options))])
        return entry

    async def send_many(self, messages: list[OutgoingMessage]) -> list[OutboxEntry]:
        """Persist several messages in one transaction and start sending them.
        All are checked first: one bad message rejects the call and stores nothing.
        Concurrent calls share the transaction; each still gets its own result."""
        return await self._sends.submit([self._outbox_entry(m) for m in messages])

    def _outbox_entry(self, m: OutgoingMessage) -> OutboxEntry:
        friend = self.friends.get(m.to) if isinstance(m.to, bytes) else self.find_friend(m.to)
        if friend is None:
            raise NotFound("no such friend")
        if friend.blocked:
            raise UsageError(f"{friend.alias or to_checksum(friend.node_id)} is blocked; unblock it first")
        if m.scope not in self.scopes:
            raise UsageError(f"unknown scope {m.scope!r}")
        if len(m.body) > self.max_body_bytes:
            raise UsageError(f"message body is {len(m.body)} bytes; the limit is {self.max_body_bytes}")
        now = now_ms()
        return OutboxEntry(
            message_id=os.urandom(16),
            to_node_id=friend.node_id,
            scope=m.scope,
            content_type=m.content_type,
            body=m.body,
            created_at_ms=now,
            expires_at_ms=now + (m.ttl_ms or self.default_ttl_ms),
            next_attempt_ms=now,
            reply_to=m.reply_to,
        )

    def seal_many(self, friend: Friend, entries: list[OutboxEntry]) -> list[bytes]:
        """Envelopes for ``entries`` to ``friend`` (thread-safe)."""
        contact = self.contact_card()
        invite = friend.invite_token or b""
        take = self.ephemeral.take
        return [
            env.seal(
                self.identity,
                to_node_id=friend.node_id,
                to_public_key=friend.public_key,
                scope=entry.scope,
                content_type=entry.content_type,
                body=entry.body,
                reply_to=entry.reply_to or b"",
                contact=contact,
                invite=invite,
                message_id=entry.message_id,
                ephemeral=take(friend.public_key),
            )
            for entry in entries
        ]

    def prepare_ephemeral(self, friend: Friend) -> None:
        """Refill the friend's one-time key pairs on the crypto thread (see
        :mod:`tmax_core.ephemeral`), unless it has them or a refill is queued."""
        key = friend.public_key
        if key in self._filling or not self.ephemeral.wants(key):
            return
        self._filling.add(key)
        refill = asyncio.get_running_loop().run_in_executor(self._crypto_executor, self.ephemeral.fill, key)
        refill.add_done_callback(lambda f: self._refilled(key, f))

    def _refilled(self, key: bytes, refill: asyncio.Future) -> None:
        self._filling.discard(key)
        if not refill.cancelled() and refill.exception() is not None:
            log.warning("making one-time keys ahead failed: %s", refill.exception())

    def transports_for(self, friend: Friend) -> list[Transport]:
        candidates = [t for t in self.transports if t.can_reach(friend)]
        ordered = self.pm.hook.tmax_select_transport(friend=friend, candidates=candidates, node=self)
        return candidates if ordered is None else ordered

    def transport(self, name: str) -> Transport | None:
        """The registered transport called ``name``, or ``None``."""
        return next((t for t in self.transports if t.name == name), None)

    def transport_reconnected(self, name: str) -> None:
        """Transport ``name`` (re)connected: retry due messages now, and resend
        those it had accepted for later delivery (see :meth:`Outbox.kick`)."""
        self.outbox.kick(resend_handed_off_via=name)

    def transport_failed(self, transport: Transport, friend: Friend, err: Exception) -> None:
        log.info("send to %s via %s failed: %s", to_checksum(friend.node_id), transport.name, err)

    async def message_status(self, message_id: bytes) -> OutboxEntry:
        entry = await self.db(self.store.outbox_get, message_id)
        if entry is None:
            raise NotFound(f"no sent message with id {message_id.hex()}")
        return entry

    async def wait_message(self, message_id: bytes, timeout: float) -> OutboxEntry:
        await self.message_status(message_id)
        entry = await self.outbox.wait_final(message_id, timeout)
        assert entry is not None
        return entry

    # -- inbox -----------------------------------------------------------------------

    async def watch_inbox(self, include_existing_unread: bool) -> AsyncIterator[Any]:
        """Yield inbox messages as they arrive, in rowid order, each once.

        New messages are those after the newest row at subscription (read or
        not). The subscription starts before that row is read, so nothing
        stored in between is missed (see :func:`tmax_core.inboxfeed.follow`).
        Ends when the node stops.
        """
        with self.inbox_feed.subscribe() as watch:
            last = await self.db(self.store.inbox_max_rowid)
            if include_existing_unread:
                for rowid, message in await self.db(self.store.inbox_list, True, None, 0):
                    if rowid <= last:
                        yield message
            read_after = functools.partial(self.db, self.store.inbox_list, False, None)
            async for message in follow(watch, last, read_after):
                yield message

    # -- status ------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        transports = []
        for t in self.transports:
            details = t.status()
            transports.append({"name": t.name, "state": details.pop("state", "unknown"), **details})
        return {
            "node_id": self.node_id_hex,
            "friends": len(self.friends),
            "transports": transports,
            "peer_listen": self.peer_listen,
            "uptime_ms": int((time.monotonic() - self.started_at) * 1000),
            "inbox_unread": await self.db(self.store.inbox_unread),
            "outbox": await self.db(self.store.outbox_counts),
            "sinks": [s.name for s in self.sinks],
            "counters": dict(sorted(self.counters.items())),
        }


def _screen_contact(relay_hosts: Iterable[str], endpoints: Iterable[str]) -> tuple[list[str], list[str], str]:
    """Kept relay hosts, kept endpoints, and what was dropped ("" if nothing)."""
    hosts = screen_relay_urls(relay_hosts)
    eps = screen_endpoints(endpoints)
    dropped = [
        f"{s.dropped} {what} (first: {s.example})"
        for s, what in ((hosts, "relay host(s)"), (eps, "endpoint(s)"))
        if s.dropped
    ]
    return hosts.kept, eps.kept, "; ".join(dropped)
