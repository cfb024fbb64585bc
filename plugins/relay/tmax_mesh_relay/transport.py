"""The node's ``relay`` transport: one registered stream per relay host in
``node.relays``, kept up with jittered exponential backoff.

Outbound: ``send`` writes RelaySend and waits for the recipient's signed ack
(relayed back by the host) or for ``Queued`` (the host stores it for an
offline recipient: ``None`` tells the outbox the message was handed off; its
ack arrives later and goes to ``node.handle_ack``).

Batches: ``send_batch`` carries a friend's envelopes as one RelaySendBatch when
the host takes batches (``Registered.max_batch`` > 0; older hosts say 0) and they
fit its limits; the host hands them to the friend as one DeliverBatch, and the
friend's one signed batch ack comes back as AckBatch (a cluster carries the batch
to the friend's member as one message). A host that cannot deliver the batch at
once (the friend is offline, or the cluster cannot take it now) answers
``batch_unavailable`` and keeps nothing: ``send_batch`` returns ``None`` and the
outbox sends the envelopes one by one, which the host stores or forwards.

Inbound: each Deliver runs through ``node.handle_envelope`` with the
host-authenticated sender as the ingress source, and the ack goes back as
AckSend. At most ``INBOUND_CONCURRENCY`` envelopes are processed at once per
stream; beyond that the stream is simply not read (back-pressure to the host).

Cluster hosts (DESIGN §15): a node keeps ONE link to a cluster. ``Registered``
(and later ``Members`` frames) list the cluster's member URLs; a configured
URL whose host and a registered link's host each name the other as a member is
not dialed (its link is on ``standby``: registering there too would supersede
the other link's stream, and back), and is dialed only while no such link is
connected, e.g. after that member died. One host's claim is not enough (see
``HostLink.same_cluster``), so each URL registers once at start and the later
registration supersedes the earlier. Links start one after the other (each
waits up to ``START_STAGGER_S`` for the previous one's first attempt).

Public API for other plugins (e.g. ``direct``): :func:`find_relay`,
:meth:`RelayTransport.lookup`, and for hole punching (DESIGN §16)
``RelayTransport.punch_listener`` (called with each ``punch_*`` frame a host
sends, and with ``None`` after each registration) plus :meth:`HostLink.write`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import random
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from tmax_core import envelope as env
from tmax_core.endpoints import relay_url_problem
from tmax_core.errors import ConfigError, EnvelopeError
from tmax_core.model import Friend, IngressSource
from tmax_core.plugin.helpers import now_ms, to_checksum
from tmax_core.printable import bounded_printable
from tmax_mesh_relay import wire
from tmax_mesh_relay.client import HostSession
from tmax_mesh_relay.proto import host_pb2

if TYPE_CHECKING:
    from tmax_core.plugin import NodeAPI

log = logging.getLogger("tmax_mesh.relay")

INBOUND_CONCURRENCY = 128
INITIAL_BACKOFF_S = 0.25
LOOKUP_TIMEOUT_S = 5.0
START_STAGGER_S = 5.0
STEADY_SESSION_S = 10.0
"""A registered session at least this long resets the reconnect backoff; a host
that drops every stream sooner (even right after ``Registered``) is re-dialed
with a growing delay, not ~5 times a second."""


def find_relay(node: NodeAPI) -> RelayTransport | None:
    """The running node's relay transport, if the plugin is active."""
    transport = node.transport(RelayTransport.name)
    return transport if isinstance(transport, RelayTransport) else None


class BatchUnavailable(ConnectionError):
    """The host did not deliver a batch at once (``batch_unavailable``): send one by one."""


MAX_ERROR_CHARS = 1000
"""Of a link's ``last_error``: the host's texts in it are cut shorter, where they arrive."""


def _seen(fut: asyncio.Future) -> None:
    """Mark a failure nobody awaits any more as seen: the link went down (or a
    newer attempt superseded this one) while the caller was still writing or
    had timed out, and the caller has raised its own error. Without this,
    asyncio logs "Future exception was never retrieved" with a traceback."""
    if fut.done() and not fut.cancelled():
        fut.exception()


MAX_MEMBER_URLS = 64
"""Cluster member URLs kept from one host (more are ignored)."""
MAX_MEMBER_ENTRIES = 4 * MAX_MEMBER_URLS
"""Entries of one host's member list looked at (the rest are ignored unread)."""


@functools.lru_cache(maxsize=4096)
def _url_key(url: str) -> tuple[bool, str, int] | None:
    """:func:`wire.url_key` of a relay URL given as text, or ``None`` if it is not one
    (cached: friends' relay hosts are compared on every send)."""
    try:
        return wire.url_key(wire.parse_relay_url(url))
    except ValueError:
        return None


class HostLink:
    """One relay host: keeps a registered stream up and multiplexes requests on it."""

    def __init__(self, relay: RelayTransport, url: wire.RelayUrl, previous: HostLink | None = None) -> None:
        self.relay = relay
        self.url = url
        self.previous = previous
        self._state = "connecting"
        # Set once the first registration succeeded or failed, or the link stood by.
        self.first_attempt = asyncio.Event()
        self.registered_since_ms: int | None = None
        self.last_error: str | None = None
        self.connection_id: str | None = None
        # A cluster host's members (Registered.member_urls, then Members frames): friends on
        # any of them are reached here. Kept while down: it says which links are one cluster.
        self.member_urls: list[str] = []
        self._member_keys: frozenset[tuple[bool, str, int]] = frozenset()
        # What the registered host takes in one RelaySendBatch (0 envelopes: no batches).
        self.max_batch = 0
        self.max_frame_bytes = 0
        self.session: HostSession | None = None
        self.task: asyncio.Task | None = None
        # Keyed by (recipient, message_id), or (recipient, batch_id) for a batch: an
        # Ack counts only from the node the envelope went to.
        self._acks: dict[tuple[bytes, bytes], asyncio.Future] = {}
        self._lookups: dict[bytes, list[asyncio.Future]] = {}
        self._inbound = asyncio.Semaphore(INBOUND_CONCURRENCY)
        self._tasks: set[asyncio.Task] = set()
        self._sent_allow: list[bytes] | None = None
        self._superseded = False

    @property
    def state(self) -> str:
        """connecting, connected, down, or standby (another link holds this URL's cluster)."""
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        if value != self._state:
            self._state = value
            self.relay.links_changed()

    @property
    def connected(self) -> bool:
        return self._state == "connected"

    def set_members(self, urls: Iterable[str]) -> bool:
        """The cluster members the host names (``Registered``, ``Members``): parsed
        once here, invalid ones dropped, at most :data:`MAX_MEMBER_URLS` (a hostile
        host's list costs the node no more than that on every send). Only the first
        :data:`MAX_MEMBER_ENTRIES` entries are looked at, so a list padded with
        repeats or invalid URLs costs no more than that either (an honest host
        names each member once). Returns whether the set of members changed."""
        members: dict[tuple[bool, str, int], str] = {}
        for url in itertools.islice(urls, MAX_MEMBER_ENTRIES):
            key = _url_key(url) if relay_url_problem(url) is None else None  # as friends' cards
            if key is not None and key not in members:
                members[key] = url
                if len(members) == MAX_MEMBER_URLS:
                    break
        keys = frozenset(members)
        changed = keys != self._member_keys
        self.member_urls, self._member_keys = list(members.values()), keys
        return changed

    def is_host(self, relay_url: str) -> bool:
        """Whether ``relay_url`` is this link's own host (not a member it names)."""
        return _url_key(relay_url) == wire.url_key(self.url)

    def reaches(self, relay_url: str) -> bool:
        """Whether a node registered at ``relay_url`` is reachable through this link:
        it is this link's host, or a member of the cluster the host says it is in."""
        key = _url_key(relay_url)
        return key is not None and (key == wire.url_key(self.url) or key in self._member_keys)

    def same_cluster(self, other: HostLink) -> bool:
        """Whether the two links' hosts are members of one cluster: EACH names the
        other (as last heard from it). One host's claim is not enough: a hostile
        host naming an honest one as its member would otherwise put the node's
        link to the honest host on standby and take all its traffic. So a link
        that never registered dials once, even if the other host claims it; the
        registration then supersedes the other link's, which stands by."""
        return self.reaches(other.url.url) and other.reaches(self.url.url)

    def status(self) -> dict[str, Any]:
        return {
            "url": self.url.url,
            "state": self.state,
            "registered_since_ms": self.registered_since_ms,
            "last_error": self.last_error,
            "connection_id": self.connection_id,  # as in the host's logs
            "members": self.member_urls,
        }

    # -- connection loop ---------------------------------------------------------

    async def run(self) -> None:
        """Keep this link registered (first waiting a while for the link started before it)."""
        if self.previous is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.previous.first_attempt.wait(), START_STAGGER_S)
        backoff = INITIAL_BACKOFF_S
        while True:
            await self._stand_by()
            self.state = "connecting"
            self._superseded = False
            try:
                await self._session()
            except wire.RegisterError as err:
                self._down(f"registration refused: {err}")
            except ConnectionError as err:
                self._down(str(err))
            except Exception as err:
                log.exception("relay %s: session failed", self.url.url)
                self._down(f"internal error: {err}")
            self.first_attempt.set()
            since = self.registered_since_ms
            if since is not None and now_ms() - since >= STEADY_SESSION_S * 1000:
                backoff = INITIAL_BACKOFF_S  # the last session worked: start over
            self.registered_since_ms = None
            delay = backoff * random.uniform(0.5, 1.0)
            if self._superseded and self.relay.cover(self) is None:
                # Another process registered this node id (same identity twice?):
                # do not fight over the route in a tight loop.
                delay = max(delay, self.relay.reconnect_max_s)
            backoff = min(backoff * 2, self.relay.reconnect_max_s)
            await asyncio.sleep(delay)

    async def _stand_by(self) -> None:
        """While another link is registered on this URL's cluster, do not dial."""
        while (cover := self.relay.cover(self)) is not None:
            if self.state != "standby":
                log.info("relay %s: same cluster as %s, standing by", self.url.url, cover.url.url)
            self.state = "standby"
            self.last_error = None
            self.first_attempt.set()  # the next link need not wait for this one
            await self.relay.wait_links_changed()

    def _down(self, error: str) -> None:
        """Mark the link down with ``error`` as its ``last_error`` (logged when it
        changes) and fail what waits on it. The host's texts in ``error`` come
        escaped and cut (``tmax_mesh_relay.client``); the cut here bounds the rest
        (an unexpected exception's text), as it is kept, logged and shown."""
        error = bounded_printable(error, MAX_ERROR_CHARS)
        if "CERTIFICATE_VERIFY_FAILED" in error:
            ca = self.relay.node.config.get("relay.ca_file") or "the system's trusted roots"
            error = f"the host's TLS certificate is not trusted by {ca} (relay.ca_file): {error}"
        self.state = "down"
        self.connection_id = None
        self.max_batch = 0
        if error != self.last_error:
            log.warning("relay %s: %s", self.url.url, error)
        self.last_error = error
        failure = ConnectionError(f"relay {self.url.url}: {error}")
        for fut in self._acks.values():
            if not fut.done():
                fut.set_exception(failure)
        for futs in self._lookups.values():
            for fut in futs:
                if not fut.done():
                    fut.set_exception(failure)
        self._acks.clear()
        self._lookups.clear()

    async def _session(self) -> None:
        relay, node = self.relay, self.relay.node
        # The registration is signed for this URL and, with TLS, this certificate:
        # a relay that forwards another host's challenge gets nothing usable there.
        cert_sha256 = b""
        if self.url.tls:
            cert_sha256 = await asyncio.to_thread(wire.certificate_sha256, self.url, relay.ca_file)
        session = await HostSession.open(
            self.url.target, relay.credentials(self.url), url=self.url.url, cert_sha256=cert_sha256
        )
        try:
            allow = relay.lookup_allow()
            registered = await session.register(node.identity, node.rendezvous_endpoints(), allow)
            self.session = session
            self._sent_allow = allow
            self.registered_since_ms = now_ms()
            # The host's text, shown in node status and logged: escaped and cut.
            self.connection_id = bounded_printable(registered.connection_id, 64)
            self.set_members(registered.member_urls)
            self.max_batch = registered.max_batch
            self.max_frame_bytes = registered.limits.max_frame_bytes
            self.last_error = None
            self.state = "connected"
            self.first_attempt.set()
            log.info(
                "relay %s: registered as %s (connection %s, %d stored for us)",
                self.url.url,
                node.node_id_hex,
                self.connection_id,
                registered.queued,
            )
            await self.update_allow(relay.lookup_allow())  # friends changed while registering?
            node.transport_reconnected(self.relay.name)
            self._tell_punch(None)
            pinger = None
            if registered.limits.idle_timeout_ms:
                pinger = asyncio.create_task(self._ping_every(registered.limits.idle_timeout_ms / 3000))
            try:
                await self._read_loop(session)
            finally:
                if pinger is not None:
                    pinger.cancel()
        finally:
            self.session = None
            await session.close()

    async def _read_loop(self, session: HostSession) -> None:
        while True:
            frame = await session.read()
            if frame is None:
                raise ConnectionError("the host closed the stream")
            if frame.WhichOneof("frame") == "frames":  # several that waited at the host, in order
                for inner in frame.frames.frames:
                    await self._on_frame(inner)
            else:
                await self._on_frame(frame)

    async def _on_frame(self, frame: host_pb2.HostFrame) -> None:
        kind = frame.WhichOneof("frame")
        if kind == "deliver":
            await self._inbound.acquire()
            self._spawn(self._on_deliver(frame.deliver))
        elif kind == "deliver_batch":
            await self._inbound.acquire()
            self._spawn(self._on_deliver_batch(frame.deliver_batch))
        elif kind == "ack":
            self._on_ack(frame.ack)
        elif kind == "ack_batch":
            # No one waiting (timed out): the outbox re-sends, and dedup answers.
            self._resolve_ack(getattr(frame.ack_batch, "from"), frame.ack_batch.batch_id, frame.ack_batch.ack)
        elif kind == "queued":
            self._resolve_ack(frame.queued.to, frame.queued.message_id, None)
        elif kind == "error":
            self._on_error(frame.error)
        elif kind == "lookup_result":
            result = frame.lookup_result
            endpoints = list(result.endpoints) if result.found else []
            for fut in self._lookups.pop(result.target, []):
                if not fut.done():
                    fut.set_result(endpoints)
        elif kind == "ping":
            await self.write(host_pb2.NodeFrame(pong=host_pb2.Pong(time_ms=frame.ping.time_ms)))
        elif kind is not None and kind.startswith("punch_"):
            self._tell_punch(frame)
        elif kind == "members" and self.set_members(frame.members.member_urls):
            self.relay.links_changed()  # only a new member set can change which links stand by

    def _tell_punch(self, frame: host_pb2.HostFrame | None) -> None:
        listener = self.relay.punch_listener
        if listener is not None:
            listener(self, frame)

    async def _ping_every(self, interval: float) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                await asyncio.sleep(interval)
                await self.write(host_pb2.NodeFrame(ping=host_pb2.Ping(time_ms=now_ms())))

    # -- inbound ---------------------------------------------------------------

    async def _on_deliver(self, deliver: host_pb2.Deliver) -> None:
        sender = getattr(deliver, "from")
        await self._deliver(
            "envelope",
            sender,
            1,
            lambda source: self.relay.node.handle_envelope(deliver.envelope, source),
            lambda ack: host_pb2.NodeFrame(
                ack_send=host_pb2.AckSend(to=sender, message_id=deliver.message_id, ack=ack)
            ),
        )

    async def _on_deliver_batch(self, batch: host_pb2.DeliverBatch) -> None:
        sender = getattr(batch, "from")
        envelopes = list(batch.envelopes)
        await self._deliver(
            "batch",
            sender,
            len(envelopes),
            lambda source: self.relay.node.handle_envelope_batch(envelopes, source),
            lambda ack: host_pb2.NodeFrame(
                ack_batch_send=host_pb2.AckBatchSend(to=sender, batch_id=batch.batch_id, ack=ack)
            ),
        )

    async def _deliver(
        self,
        what: str,
        sender: bytes,
        count: int,
        ingress: Callable[[IngressSource], Awaitable[bytes]],
        answer: Callable[[bytes], host_pb2.NodeFrame],
    ) -> None:
        """Hand ``count`` envelopes the host delivered from ``sender`` to the node's
        ``ingress`` and write the frame ``answer`` makes of its signed ack back to
        the host; whatever happens, free the inbound slot :meth:`_on_frame` took."""
        try:
            ack = await ingress(IngressSource("relay", peer=to_checksum(sender)))
            self.relay.received += count
            if not ack:  # a stranger beyond the answer budget (tmax_core.ingress): no answer
                return
            await self.write(answer(ack))
        except ConnectionError:
            pass  # the stream went away: the sender re-sends, and dedup answers "duplicate"
        except Exception:
            log.exception("relay %s: handling a delivered %s failed", self.url.url, what)
        finally:
            self._inbound.release()

    def _on_ack(self, ack: host_pb2.Ack) -> None:
        if not self._resolve_ack(getattr(ack, "from"), ack.message_id, ack.ack):
            # No one is waiting (the envelope was stored and forwarded later):
            # the outbox verifies the signed ack and marks the message delivered.
            self._spawn(self.relay.node.handle_ack(ack.ack, getattr(ack, "from")))

    def _on_error(self, error: host_pb2.Error) -> None:
        text = f"{bounded_printable(error.code)}: {bounded_printable(error.detail)}"  # the host's text
        key = (error.node_id, error.message_id)
        if error.message_id and key in self._acks:
            fut = self._acks[key]
            if not fut.done():
                failure = BatchUnavailable if error.code == "batch_unavailable" else ConnectionError
                fut.set_exception(failure(f"relay {self.url.url}: {text}"))
        elif (
            error.code in ("rate_limited", "unavailable")
            and not error.message_id
            and error.node_id in self._lookups
        ):
            for fut in self._lookups.pop(error.node_id):
                if not fut.done():
                    fut.set_exception(ConnectionError(f"relay {self.url.url}: {text}"))
        else:
            # superseded, idle_timeout, shutting_down...: the stream ends next.
            log.info("relay %s: host says %s", self.url.url, text)
            self._superseded = error.code == "superseded"

    def _resolve_ack(self, peer: bytes, message_id: bytes, ack: bytes | None) -> bool:
        fut = self._acks.get((peer, message_id))
        if fut is None or fut.done():
            return False
        fut.set_result(ack)
        return True

    # -- outbound ----------------------------------------------------------------

    async def write(self, frame: host_pb2.NodeFrame) -> None:
        session = self.session
        if session is None or not self.connected:
            raise ConnectionError(f"relay {self.url.url} is not connected")
        await session.write(frame)

    async def relay_envelope(
        self, to: bytes, message_id: bytes, envelope: bytes, timeout: float
    ) -> bytes | None:
        """Send one envelope; the recipient's ack bytes, or ``None`` if the host stored it."""
        frame = host_pb2.NodeFrame(relay_send=host_pb2.RelaySend(to=to, envelope=envelope))
        return await self._request((to, message_id), frame, timeout)

    def takes_batch(self, envelopes: list[bytes]) -> bool:
        """Whether the registered host takes these envelopes as one RelaySendBatch."""
        return (
            self.connected
            and 1 < len(envelopes) <= self.max_batch
            and sum(len(e) for e in envelopes) <= self.max_frame_bytes
        )

    async def relay_batch(self, to: bytes, envelopes: list[bytes], timeout: float) -> bytes | None:
        """Send envelopes as one batch; the recipient's batch ack bytes, or ``None`` if
        the host could not deliver them at once (send them one by one)."""
        batch_id = os.urandom(wire.MAX_BATCH_ID_LEN)
        frame = host_pb2.NodeFrame(
            relay_send_batch=host_pb2.RelaySendBatch(to=to, batch_id=batch_id, envelopes=envelopes)
        )
        try:
            return await self._request((to, batch_id), frame, timeout)
        except BatchUnavailable:
            return None

    async def _request(
        self, key: tuple[bytes, bytes], frame: host_pb2.NodeFrame, timeout: float
    ) -> bytes | None:
        """Write ``frame`` and wait for the answer the read loop resolves under ``key``."""
        fut = asyncio.get_running_loop().create_future()
        old = self._acks.get(key)
        if old is not None and not old.done():
            old.set_exception(ConnectionError("superseded by a newer attempt"))
        self._acks[key] = fut
        try:
            await self.write(frame)
            return await asyncio.wait_for(fut, timeout)
        finally:
            if self._acks.get(key) is fut:
                del self._acks[key]
            _seen(fut)

    async def lookup(self, target: bytes, timeout: float) -> list[str]:
        fut = asyncio.get_running_loop().create_future()
        self._lookups.setdefault(target, []).append(fut)
        try:
            await self.write(host_pb2.NodeFrame(lookup=host_pb2.Lookup(target=target)))
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        finally:
            waiters = self._lookups.get(target, [])
            if fut in waiters:
                waiters.remove(fut)
            _seen(fut)
            if not waiters:
                self._lookups.pop(target, None)

    async def update_allow(self, allow: list[bytes]) -> None:
        if self.connected and allow != self._sent_allow:
            self._sent_allow = allow
            with contextlib.suppress(ConnectionError):
                await self.write(host_pb2.NodeFrame(set_lookup_allow=host_pb2.SetLookupAllow(node_ids=allow)))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        tasks = [t for t in [self.task, *self._tasks] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()


class RelayTransport:
    """Transport ``relay`` (cost 50): see the module docstring."""

    name = "relay"
    cost = 50

    def __init__(self, node: NodeAPI) -> None:
        self.node = node
        self.reconnect_max_s = node.duration_ms("relay.reconnect_max") / 1000
        self.links: list[HostLink] = []
        self.sent = 0
        self.queued = 0
        self.received = 0
        self._credentials: grpc.ChannelCredentials | None = None
        self.ca_file: str | None = None
        self._allow_task: asyncio.Task | None = None
        self._allow_dirty = False
        self._allow_truncated_warned = False
        # Set by the direct plugin: gets each punch_* frame from a host, and
        # None after each (re)registration.
        self.punch_listener: Callable[[HostLink, host_pb2.HostFrame | None], None] | None = None
        self._links_changed = asyncio.Event()

    # -- Transport protocol -------------------------------------------------------

    async def start(self) -> None:
        urls = []
        for text in self.node.relay_hosts():
            try:
                urls.append(wire.parse_relay_url(text))
            except ValueError as err:
                raise ConfigError(f"node.relays: {err}") from None
        if any(u.tls for u in urls):
            self._credentials = self._load_tls()
        for url in urls:
            if not url.tls and not url.loopback:
                log.warning(
                    "relay %s is not loopback and not TLS: metadata (who talks to whom, when) travels "
                    "in clear; use grpcs:// (message contents stay end-to-end encrypted either way)",
                    url.url,
                )
            link = HostLink(self, url, self.links[-1] if self.links else None)
            link.task = asyncio.create_task(link.run(), name=f"relay-{url.url}")
            self.links.append(link)
        self.node.friend_listeners.append(self._friends_changed)

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.node.friend_listeners.remove(self._friends_changed)
        if self._allow_task is not None:
            self._allow_task.cancel()
        await asyncio.gather(*(link.stop() for link in self.links), return_exceptions=True)

    def can_reach(self, friend: Friend) -> bool:
        return bool(self._links_for(friend))

    async def send(self, friend: Friend, envelope: bytes, timeout: float) -> bytes | None:
        """The recipient's ack bytes; ``None`` when a host stored the envelope for later."""
        try:
            message_id = env.parse(envelope, len(envelope)).message_id
        except EnvelopeError as err:
            raise ConnectionError(f"not a sendable envelope: {err}") from None
        links = self._links_for(friend)
        if not links:
            raise ConnectionError("not registered on any relay host this friend uses")
        last: Exception = ConnectionError("no relay host")
        for link in links:
            try:
                ack = await link.relay_envelope(friend.node_id, message_id, envelope, timeout)
            except ConnectionError as err:
                last = err
                continue
            if ack is None:
                self.queued += 1
            else:
                self.sent += 1
            return ack
        raise last

    async def send_batch(self, friend: Friend, envelopes: list[bytes], timeout: float) -> bytes | None:
        """The friend's signed batch ack for ``envelopes``, sent as one frame through the
        first host that takes them as a batch; ``None`` when none does or the host could
        not deliver them at once (the outbox then sends them one by one)."""
        last: Exception | None = None
        for link in self._links_for(friend):
            if not link.takes_batch(envelopes):
                continue
            try:
                ack = await link.relay_batch(friend.node_id, envelopes, timeout)
            except ConnectionError as err:
                last = err
                continue
            if ack is not None:
                self.sent += len(envelopes)
            return ack
        if last is not None:
            raise last
        return None

    def status(self) -> dict[str, Any]:
        if not self.links:
            state = "off"
        elif any(link.connected for link in self.links):
            state = "connected"
        elif any(link.state == "connecting" for link in self.links):
            state = "connecting"
        else:
            state = "down"
        return {
            "state": state,
            "hosts": [link.status() for link in self.links],
            "sent": self.sent,
            "queued": self.queued,
            "received": self.received,
        }

    # -- public API ------------------------------------------------------------------

    async def lookup(self, friend_node_id: bytes, timeout: float = LOOKUP_TIMEOUT_S) -> list[str]:
        """Where a friend can be dialled directly, as a relay host knows it.

        Asks the hosts this node shares with the friend (any registered host if
        the friend lists none). Returns the friend's advertised endpoints plus
        its observed IP with each advertised port; ``[]`` if it is offline, has
        not allowed us, or advertises nothing. Raises ``ConnectionError`` when
        no host could be asked, ``TimeoutError`` when none answered in time.
        """
        friend = self.node.friends.get(friend_node_id)
        links = self._links_for(friend) if friend is not None else [ln for ln in self.links if ln.connected]
        if not links:
            raise ConnectionError("not registered on any relay host")
        last: Exception = ConnectionError("no relay host")
        for link in links:
            try:
                endpoints = await link.lookup(friend_node_id, timeout)
            except (ConnectionError, TimeoutError) as err:
                last = err
                continue
            if endpoints:
                return endpoints
        if isinstance(last, TimeoutError):
            raise last
        return []

    def lookup_allow(self) -> list[bytes]:
        """Node ids allowed to look this node up and to leave messages for it at the
        host: its friends that are not blocked. Hosts take at most
        ``wire.DEFAULT_MAX_LOOKUP_ALLOW`` by default; beyond that the friends seen
        most recently are sent (and a warning is logged once)."""
        friends = [f for f in self.node.friends.values() if not f.blocked]
        limit = wire.DEFAULT_MAX_LOOKUP_ALLOW
        if len(friends) > limit:
            if not self._allow_truncated_warned:
                self._allow_truncated_warned = True
                log.warning(
                    "%d friends: relay hosts are told only the %d seen most recently "
                    "(the others cannot look this node up or leave messages at the host)",
                    len(friends),
                    limit,
                )
            friends.sort(key=lambda f: (f.last_seen_ms or 0, f.added_at_ms), reverse=True)
            friends = friends[:limit]
        return sorted(f.node_id for f in friends)

    def credentials(self, url: wire.RelayUrl) -> grpc.ChannelCredentials | None:
        return self._credentials if url.tls else None

    # -- cluster links ----------------------------------------------------------------

    def cover(self, link: HostLink) -> HostLink | None:
        """A connected link, other than ``link``, to the cluster ``link``'s host is in."""
        return next((o for o in self.links if o is not link and o.connected and o.same_cluster(link)), None)

    def links_changed(self) -> None:
        """A link's state or member list changed: wake the links standing by."""
        self._links_changed.set()
        self._links_changed = asyncio.Event()

    async def wait_links_changed(self) -> None:
        await self._links_changed.wait()

    # -- internals ------------------------------------------------------------------

    def _links_for(self, friend: Friend) -> list[HostLink]:
        """Connected links that reach ``friend``: first those whose own host the
        friend's card names, then those whose host is in one cluster with such a
        host (:meth:`HostLink.same_cluster` with this node's link to it, e.g. one
        standing by), then those whose host only claims, as a cluster member, to
        reach it. A hostile host listed first thus cannot take a friend's traffic
        from the honest host it names as a member, nor from that host's cluster."""
        connected = [link for link in self.links if link.connected]
        hosts = friend.relay_hosts
        if not hosts:
            return connected
        own = [link for link in connected if any(link.is_host(h) for h in hosts)]
        claims = [link for link in connected if link not in own and any(link.reaches(h) for h in hosts)]
        host_links = [link for link in self.links if any(link.is_host(h) for h in hosts)]
        confirmed = [link for link in claims if any(link.same_cluster(other) for other in host_links)]
        return own + confirmed + [link for link in claims if link not in confirmed]

    def _load_tls(self) -> grpc.ChannelCredentials:
        ca_file = self.node.config.get("relay.ca_file")
        if not ca_file:
            return grpc.ssl_channel_credentials()  # the system's trusted roots
        self.ca_file = str(Path(ca_file).expanduser())
        try:
            roots = Path(self.ca_file).read_bytes()
        except OSError as err:
            raise ConfigError(f"relay.ca_file: cannot read {ca_file}: {err.strerror}") from None
        if b"-----BEGIN CERTIFICATE-----" not in roots:
            raise ConfigError(f"relay.ca_file: {ca_file} holds no PEM certificate")
        return grpc.ssl_channel_credentials(root_certificates=roots)

    def _friends_changed(self) -> None:
        self._allow_dirty = True
        if self._allow_task is None or self._allow_task.done():
            self._allow_task = asyncio.ensure_future(self._push_allow())

    async def _push_allow(self) -> None:
        """Send the allow-list to every host until no change is pending (changes coalesce)."""
        while self._allow_dirty:
            self._allow_dirty = False
            allow = self.lookup_allow()
            await asyncio.gather(*(link.update_allow(allow) for link in self.links))
