"""The relay hub: routes, per-connection state and the frame handlers of
``tmax-host`` (DESIGN §10). The gRPC servicer only hands each Connect call to
:meth:`Hub.serve`; how frames are written into a stream is
:mod:`tmax_mesh_relay.connection`'s.

Store-and-forward is only for a recipient's friends: the host stores an
envelope for an offline node only if the sender is in that node's lookup
allow list (remembered for a while after it disconnects, see
``allowlists``). Anyone else gets no answer from the host at all, whether the
recipient is online (the envelope is forwarded: a first contact must arrive)
or not (it is dropped): the host's answer tells a stranger nothing about
presence, and strangers cannot fill a node's queue.

With ``--cluster`` (DESIGN §15) a :class:`Router` takes what this process
cannot serve itself: a frame or lookup for a node registered on another member
of the cluster. The hub calls it only when the node is not held here, so a
standalone host never touches it (``router`` is ``None``). Frames that other
members send here are posted as well (the NATS subscription that hands them
over runs one callback at a time: awaiting each write gave one gRPC write per
frame).

Closing a stream from outside its own task (supersede, timeouts, shutdown)
sends an ``Error`` frame and cancels the task that serves the call; the
stream's cleanup only removes the route if the route is still *that*
connection, so a superseded stream can never remove its successor.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import grpc
from google.protobuf.message import DecodeError

from tmax_core import envelope as env
from tmax_core import netaddr
from tmax_core.clock import now_ms
from tmax_core.crypto import NODE_ID_LEN, to_checksum
from tmax_core.errors import EnvelopeError, Reason
from tmax_core.tokenbucket import TokenBucket
from tmax_mesh_relay import allowlists, wire
from tmax_mesh_relay.connection import Connection
from tmax_mesh_relay.limits import HostLimits
from tmax_mesh_relay.metrics import HostMetrics
from tmax_mesh_relay.proto import host_pb2
from tmax_mesh_relay.punch import PunchCoordinator
from tmax_mesh_relay.storeforward import Held, StoreAndForward

log = logging.getLogger("tmax_mesh.host")

GC_FREEZE_EVERY = 1000
"""Registrations between ``gc.freeze()`` calls: long-lived connection objects
move out of the collector's reach, which removes the 0.4-0.5 s full-collection
stalls measured at 10,000 connections (DESIGN §10)."""
QUEUE_EXPIRE_EVERY_S = 10.0
Answer = Callable[[host_pb2.HostFrame | None], Awaitable[None]]
"""Where the answer for a frame's sender goes (None: nothing to say)."""


def batch_unavailable(batch_id: bytes, to: bytes) -> host_pb2.HostFrame:
    """The answer to a batch that is not delivered at once: the node sends its envelopes one by one."""
    error = host_pb2.Error(
        code="batch_unavailable",
        detail="recipient not reachable for a batch now: send one by one",
        message_id=batch_id,
        node_id=to,
    )
    return host_pb2.HostFrame(error=error)


class RouteUnavailable(Exception):
    """The router cannot ask the other members now (NATS lost): answered ``unavailable``."""


class Router(Protocol):
    """Frames for nodes this process does not hold (tmax_mesh_relay.cluster)."""

    @property
    def member_urls(self) -> list[str]:
        """Every cluster member's public URLs (for ``Registered``)."""

    async def attach(self, conn: Connection) -> None:
        """``conn`` registered here: route its node's frames to this process."""

    def detach(self, node_id: bytes, lookup_allow: bytes) -> None:
        """The node's last stream here ended (its packed allow list was ``lookup_allow``):
        stop routing its frames here."""

    async def forward(
        self, conn: Connection, to: bytes, frame: host_pb2.HostFrame
    ) -> host_pb2.HostFrame | None:
        """Hand ``conn``'s ``Deliver`` or ``DeliverBatch`` frame to the member holding
        ``to``. Returns an answer for ``conn`` that is known at once (``unavailable``,
        ``batch_unavailable``); a later one (the holder's ``Queued``/``Error``, or, if no
        member holds ``to``, what :meth:`Hub.deliver` answers once it is stored, and
        ``batch_unavailable`` for a batch) is written with :meth:`Hub.answer`."""

    async def ack(self, to: bytes, frame: host_pb2.HostFrame) -> bool:
        """Hand an ``Ack`` frame to the member holding ``to``; False if it could not be sent."""

    async def lookup(self, requester: bytes, target: bytes) -> host_pb2.LookupResult:
        """Ask the member holding ``target`` (not found when none does); RouteUnavailable
        when the other members cannot be asked."""

    async def hold(self, to: bytes, frame: host_pb2.HostFrame) -> str | None:
        """Store a ``Deliver`` frame for the offline ``to`` in the cluster (instead of
        this process): None, or why not (``queue_full``; ``unavailable``: retry later)."""

    def acked(self, recipient: bytes, sender: bytes, message_id: bytes) -> None:
        """``recipient`` acknowledged an envelope: the cluster no longer holds it."""

    async def allow_list(self, node_id: bytes) -> bytes | None:
        """The packed allow list of an offline node another member held last."""


class Hub:
    def __init__(
        self, limits: HostLimits, host: wire.HostIdentity, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        self.host = host
        self.host_id = host.host_id
        self.clock = clock
        self.connections: dict[str, Connection] = {}
        self.routes: dict[bytes, Connection] = {}
        # Per source (IPv4 address or IPv6 /64): open streams, and a bucket of new ones.
        self.per_source: dict[str, int] = {}
        self.new_stream_buckets: dict[str, TokenBucket] = {}
        self._last_prune = 0.0
        self.store = StoreAndForward(limits.queue, clock)
        self.fingerprints = allowlists.Fingerprints()
        self.remembered = allowlists.RememberedAllowLists(limits.queue.ttl_s, limits.remembered_allow_bytes)
        self.metrics = HostMetrics(
            connections=lambda: len(self.connections),
            registered=lambda: len(self.routes),
            queue_messages=lambda: self.store.total_messages,
            queue_bytes=lambda: self.store.total_bytes,
            remembered=lambda: len(self.remembered),
        )
        self.accepting = True
        self._limits_pb = limits.to_pb()
        self._background: set[asyncio.Task] = set()
        self.router: Router | None = None
        self._new_registrations = 0
        self._last_full_log = 0.0
        # Hole punching (DESIGN §16); its observer port is started by the host process.
        self.punch = PunchCoordinator(
            self.routes, self.fingerprints, self._write, clock, self.metrics.punches, limits.max_connections
        )
        self._handlers: dict[str, Callable[[Connection, Any], Awaitable[None]]] = {
            "relay_send": self._on_relay_send,
            "ack_send": self._on_ack_send,
            "relay_send_batch": self._on_relay_send_batch,
            "ack_batch_send": self._on_ack_batch_send,
            "ping": self._on_ping,
            "pong": self._on_pong,
            "lookup": self._on_lookup,
            "set_lookup_allow": self._on_set_lookup_allow,
            "punch_listen": self.punch.on_listen,
            "punch_request": self.punch.on_request,
        }

    # -- one Connect call ---------------------------------------------------------

    async def serve(self, context: Any) -> None:
        """Serve one Connect stream until it ends (called by the servicer)."""
        if not self.accepting:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "host is shutting down")
        lim = self.limits
        if len(self.connections) >= lim.max_connections:
            self.metrics.drop("max_connections")
            now = self.clock()
            if now - self._last_full_log > 10.0:
                self._last_full_log = now
                log.warning("refusing connections: at --max-connections %d", lim.max_connections)
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"host is at its limit of {lim.max_connections} connections; retry later",
            )
        source = netaddr.source_key(context.peer() or "")
        if self.per_source.get(source, 0) >= lim.max_connections_per_ip:
            self.metrics.drop("max_connections_per_ip")
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"your address holds {lim.max_connections_per_ip} connections, the limit per address",
            )
        bucket = self.new_stream_buckets.get(source)
        if bucket is None:
            now = self.clock()
            # Many sources between two sweeps: prune early, but at most once a
            # second (a scan per new source would be the cost of many sources).
            if len(self.new_stream_buckets) >= 2 * lim.max_connections and now - self._last_prune >= 1.0:
                self._forget_idle_buckets(now)
            bucket = TokenBucket(lim.register_rate_per_s, lim.register_burst, now)
            self.new_stream_buckets[source] = bucket
        if not bucket.take(self.clock()):
            self.metrics.drop("register_rate")
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, "too many new connections from your address; retry later"
            )
        task = asyncio.current_task()
        assert task is not None
        conn = Connection(context, task, self.clock(), self.limits)
        self.connections[conn.id] = conn
        self.per_source[conn.source] = self.per_source.get(conn.source, 0) + 1
        try:
            await self._session(conn)
        finally:
            self._cleanup(conn)

    async def _session(self, conn: Connection) -> None:
        if not await self._handshake(conn):
            return
        # Stored envelopes go out from their own task so this one keeps reading
        # the node's acks meanwhile (otherwise both directions could fill up).
        self._spawn(self._flush(conn))
        await self._read_loop(conn)

    async def _handshake(self, conn: Connection) -> bool:
        """Challenge, Register, Registered; False if the stream ended meanwhile.

        A method of its own so that the parsed Register (up to
        ``max_lookup_allow`` ids as protobuf objects) is freed once it returns,
        not kept alive by the frame of a coroutine that lasts as long as the
        stream: with full allow lists that alone was ~100 KB per connection."""
        nonce = os.urandom(wire.NONCE_LEN)
        challenge = host_pb2.Challenge(nonce=nonce, host_id=self.host_id, time_ms=now_ms())
        if not await self._write(conn, host_pb2.HostFrame(challenge=challenge), "challenge"):
            return False
        frame = await self._read_frame(conn)
        if frame is grpc.aio.EOF:
            return False
        if frame.WhichOneof("frame") != "register":
            self.metrics.registrations["not_registered"] += 1
            await self._refuse(conn, "not_registered", "the first frame must be Register")
        self.metrics.frames_in["register"] += 1
        try:
            wire.verify_register(frame.register, self.host, nonce, self.limits.max_lookup_allow)
        except wire.RegisterError as err:
            self.metrics.registrations[err.code] += 1
            await self._refuse(conn, err.code, err.detail)
        self._register(conn, frame.register)
        if self.router is not None:
            await self.router.attach(conn)
        registered = host_pb2.Registered(
            observed_addr=conn.observed_addr,
            limits=self._limits_pb,
            connection_id=conn.id,
            queued=self.store.depth(conn.node_id or b""),
            member_urls=self.router.member_urls if self.router is not None else (),
            max_batch=self.limits.max_batch,
        )
        if not await self._write(conn, host_pb2.HostFrame(registered=registered), "registered"):
            return False
        # Only now: Registered must reach the node on its own, whatever waits behind it.
        conn.takes_frames = frame.register.takes_frames
        return True

    async def _read_frame(self, conn: Connection) -> Any:
        """The next NodeFrame (or EOF). Bytes that do not decode as a NodeFrame
        end the stream with ``Error{malformed}`` (INVALID_ARGUMENT) rather than
        an unhandled DecodeError and a traceback in the log per bad frame."""
        try:
            return await conn.context.read()
        except DecodeError:
            self.metrics.drop("malformed")
            log.info("closing %s: a frame is not a NodeFrame", conn.id, extra=conn.log_extra)
            await self._error(conn, "malformed", "frame is not a valid NodeFrame")
            await conn.context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed: frame is not a NodeFrame")

    async def _read_loop(self, conn: Connection) -> None:
        while True:
            frame = await self._read_frame(conn)
            if frame is grpc.aio.EOF:
                return
            now = self.clock()
            conn.last_frame = now
            wait = conn.bucket.reserve(now)
            if wait > 0:
                self.metrics.throttled += 1
                await asyncio.sleep(wait)
            kind = frame.WhichOneof("frame")
            handler = self._handlers.get(kind or "")
            if handler is None:
                await self._error(conn, "malformed", f"unexpected frame {kind or 'empty'} after registration")
                continue
            self.metrics.frames_in[kind] += 1
            await handler(conn, getattr(frame, kind))

    def _register(self, conn: Connection, reg: host_pb2.Register) -> None:
        node_id = bytes(reg.node_id)
        conn.node_id = node_id
        conn.node_hex = to_checksum(node_id)
        conn.endpoints = list(reg.endpoints)
        conn.lookup_allow = self.fingerprints.pack(reg.lookup_allow)
        self.remembered.forget(node_id)  # the live connection's list is the one that counts
        old = self.routes.get(node_id)
        self.routes[node_id] = conn
        self.metrics.registrations["ok"] += 1
        self._new_registrations += 1
        log.info("registered %s from %s", conn.node_hex, conn.observed_addr, extra=conn.log_extra)
        if old is not None and old is not conn:
            log.info("superseding connection %s of %s", old.id, conn.node_hex, extra=old.log_extra)
            self.metrics.drop("superseded")
            self.close(old, "superseded", "a newer registration of this node id took over")

    def _cleanup(self, conn: Connection) -> None:
        conn.abandon()
        if self.connections.pop(conn.id, None) is not None:
            left = self.per_source[conn.source] - 1
            if left:
                self.per_source[conn.source] = left
            else:
                del self.per_source[conn.source]
        if conn.node_id is None:
            return
        self.punch.forget(conn)
        if self.routes.get(conn.node_id) is conn:
            del self.routes[conn.node_id]
            if self.router is not None:
                self.router.detach(conn.node_id, conn.lookup_allow)
            evicted = self.remembered.remember(conn.node_id, conn.lookup_allow, self.clock())
            if evicted:
                self.metrics.drop("allow_list_evicted", evicted)
            log.info("disconnected %s", conn.node_hex, extra=conn.log_extra)
        if conn.inflight:
            self._store_many(conn.node_id, list(conn.inflight.values()))
            conn.inflight.clear()

    # -- frames -----------------------------------------------------------------------

    async def _on_relay_send(self, conn: Connection, rs: host_pb2.RelaySend) -> None:
        data = rs.envelope
        self.metrics.bytes_in += len(data)
        try:
            parsed = env.parse(data, self.limits.max_frame_bytes)
        except EnvelopeError as err:
            code = "too_large" if err.code == Reason.TOO_LARGE else "malformed"
            self.metrics.drop(code)
            await self._error(conn, code, str(err), node_id=rs.to)
            return
        message_id = parsed.message_id
        if parsed.from_node_id != conn.node_id:
            self.metrics.drop("sender_mismatch")
            log.warning(
                "dropping envelope %s: sender %s is not the registered node",
                message_id.hex(),
                to_checksum(parsed.from_node_id),
                extra=conn.log_extra,
            )
            await self._error(
                conn, "sender_mismatch", "envelope sender is not the registered node", message_id, rs.to
            )
            return
        to = parsed.to_node_id
        if to != rs.to:
            self.metrics.drop("malformed")
            await self._error(conn, "malformed", "RelaySend.to differs from the envelope", message_id, rs.to)
            return
        # Built in place: Deliver(...) then HostFrame(deliver=...) would copy the envelope twice.
        out = host_pb2.HostFrame()
        deliver = out.deliver
        deliver.message_id = message_id
        deliver.envelope = data
        setattr(deliver, "from", conn.node_id)
        dest = self.routes.get(to)
        if dest is not None and not dest.closing:
            # Posted, not awaited: this sender's next frames are read while the write
            # runs, and those for the same node go out with it as one Frames message.
            await self.deliver_soon(to, out, functools.partial(self.answer, conn))
            return
        if self.router is not None:
            # Another member's node (or a stream here being closed: perhaps superseded
            # there), or no one's: the router answers now or later.
            await self.answer(conn, await self.router.forward(conn, to, out))
            return
        await self.answer(conn, await self.deliver(to, out))

    async def answer(self, conn: Connection, answer: host_pb2.HostFrame | None) -> None:
        """Write the answer to a ``RelaySend`` (``Queued`` or ``Error``; None: nothing to say)."""
        if answer is not None:
            await self._write(conn, answer, answer.WhichOneof("frame") or "error")

    async def deliver(self, to: bytes, out: host_pb2.HostFrame) -> host_pb2.HostFrame | None:
        """Forward a ``Deliver`` frame to ``to`` on this process, or store it for ``to``
        (in the cluster's store, with a router); the frame to answer its sender with, if any."""
        deliver = out.deliver
        data = deliver.envelope
        dest = self.routes.get(to)
        if dest is not None and await self._write(dest, out, "deliver"):
            self._count_relayed(out)
            return None
        sender = getattr(deliver, "from")
        message_id = deliver.message_id
        allow = dest.lookup_allow if dest is not None else self.remembered.get(to, self.clock())
        if allow is None and self.router is not None:
            allow = await self.router.allow_list(to)
        if not self.fingerprints.contains(allow or b"", sender):
            # Not a friend of the recipient: nothing is stored and nothing is
            # answered, exactly as when the recipient is online (no presence oracle).
            self.metrics.drop("not_allowed")
            return None
        if self.router is not None:
            refused = await self.router.hold(to, out)
        else:
            refused = self._store(to, self.store.new_item(sender, message_id, data))
        if refused is not None:
            self.metrics.drop(refused)
            code = refused if refused in ("unknown_recipient", "unavailable") else "queue_full"
            error = host_pb2.Error(
                code=code,
                detail=f"cannot store for the offline recipient ({refused})",
                message_id=message_id,
                node_id=to,
            )
            return host_pb2.HostFrame(error=error)
        self.metrics.queued += 1
        return host_pb2.HostFrame(queued=host_pb2.Queued(message_id=message_id, to=to))

    async def deliver_soon(self, to: bytes, out: host_pb2.HostFrame, answer: Answer) -> None:
        """Hand a ``Deliver`` or ``DeliverBatch`` frame another cluster member sent to
        ``to``'s stream here without waiting for the write (:meth:`Connection.post`), so
        that frames arriving meanwhile are written together. A frame that cannot be
        written (no stream here, or its write fails) gets what :meth:`deliver` does for
        a ``Deliver`` (another stream, or held), ``batch_unavailable`` for a batch; the
        answer for its sender, if any, goes to ``answer`` (once)."""
        dest = self.routes.get(to)
        if dest is None or dest.closing:
            await self._undelivered(to, out, answer)
            return
        await dest.post(out, self.clock, functools.partial(self._posted, dest, to, out, answer))

    def _posted(self, dest: Connection, to: bytes, out: host_pb2.HostFrame, answer: Answer, ok: bool) -> None:
        if ok:
            self.metrics.frames_out[out.WhichOneof("frame") or "deliver"] += 1
            self._count_relayed(out)
            return
        self._broken(dest)
        self._spawn(self._undelivered(to, out, answer))

    def _count_relayed(self, out: host_pb2.HostFrame) -> None:
        """A ``Deliver`` or ``DeliverBatch`` frame was written: count its envelopes."""
        m = self.metrics
        if out.HasField("deliver_batch"):
            envelopes = out.deliver_batch.envelopes
            m.relayed += len(envelopes)
            m.bytes_out += sum(len(data) for data in envelopes)
        else:
            m.relayed += 1
            m.bytes_out += len(out.deliver.envelope)

    async def _undelivered(self, to: bytes, out: host_pb2.HostFrame, answer: Answer) -> None:
        if out.HasField("deliver_batch"):
            self.metrics.drop("batch_unavailable")
            await answer(batch_unavailable(out.deliver_batch.batch_id, to))
        else:
            await answer(await self.deliver(to, out))

    async def _on_relay_send_batch(self, conn: Connection, batch: host_pb2.RelaySendBatch) -> None:
        """Forward a batch as one DeliverBatch to the recipient: on this process, or with
        a router through the member holding it (as one cluster message). For any other
        recipient (offline, its stream failing) answer ``batch_unavailable`` and keep
        nothing: the node sends the envelopes one by one, and store-and-forward and the
        cluster take those as always."""
        to, batch_id, envelopes = bytes(batch.to), bytes(batch.batch_id), batch.envelopes
        await self._pace(conn, len(envelopes) - 1)  # the read loop paid for the first
        size = sum(len(data) for data in envelopes)
        self.metrics.bytes_in += size
        problem = self._batch_problem(conn, to, batch_id, envelopes, size)
        if problem is not None:
            code, detail = problem
            self.metrics.drop(code)
            await self._error(conn, code, detail, batch_id, to)
            return
        out = host_pb2.HostFrame()
        deliver = out.deliver_batch
        setattr(deliver, "from", conn.node_id)
        deliver.batch_id = batch_id
        deliver.envelopes.extend(envelopes)
        dest = self.routes.get(to)
        if dest is not None and not dest.closing:
            await self.deliver_soon(to, out, functools.partial(self.answer, conn))  # posted, as a RelaySend
        elif self.router is not None:
            await self.answer(conn, await self.router.forward(conn, to, out))
        else:
            self.metrics.drop("batch_unavailable")
            await self.answer(conn, batch_unavailable(batch_id, to))

    async def _pace(self, conn: Connection, envelopes: int) -> None:
        """Charge ``envelopes`` more to the connection's rate (per envelope, not per frame,
        so that batching does not get around --rate)."""
        wait = 0.0
        now = self.clock()
        for _ in range(envelopes):
            wait = conn.bucket.reserve(now)
        if wait > 0:
            self.metrics.throttled += 1
            await asyncio.sleep(wait)

    def _batch_problem(
        self, conn: Connection, to: bytes, batch_id: bytes, envelopes: Any, size: int
    ) -> tuple[str, str] | None:
        """Why the batch is refused as a whole (an Error code and detail), or None."""
        lim = self.limits
        if not envelopes or len(envelopes) > lim.max_batch:
            return "malformed", f"{len(envelopes)} envelopes in a batch; 1 to {lim.max_batch} are taken"
        if not 0 < len(batch_id) <= wire.MAX_BATCH_ID_LEN:
            return "malformed", f"batch_id must be 1 to {wire.MAX_BATCH_ID_LEN} bytes"
        if size > lim.max_frame_bytes:
            return "too_large", f"batch of {size} bytes; the limit is {lim.max_frame_bytes}"
        for data in envelopes:
            try:
                parsed = env.parse(data, lim.max_frame_bytes)
            except EnvelopeError as err:
                return ("too_large" if err.code == Reason.TOO_LARGE else "malformed"), str(err)
            if parsed.from_node_id != conn.node_id:
                log.warning(
                    "dropping batch %s: sender %s is not the registered node",
                    batch_id.hex(),
                    to_checksum(parsed.from_node_id),
                    extra=conn.log_extra,
                )
                return "sender_mismatch", "envelope sender is not the registered node"
            if parsed.to_node_id != to:
                return "malformed", "an envelope in the batch is for another recipient than RelaySendBatch.to"
        return None

    async def _on_ack_batch_send(self, conn: Connection, ack: host_pb2.AckBatchSend) -> None:
        """Hand a batch ack to the batch's sender, here or on another cluster member, as
        an ``Ack`` is (one lost on the way: the sender re-sends, and the node dedups)."""
        size = len(ack.ack)
        self.metrics.bytes_in += size
        if size > self.limits.max_frame_bytes or len(ack.batch_id) > wire.MAX_BATCH_ID_LEN:
            self.metrics.drop("too_large")
            await self._error(conn, "too_large", "batch ack is too large", ack.batch_id, ack.to)
            return
        frame = host_pb2.HostFrame()
        out = frame.ack_batch
        setattr(out, "from", conn.node_id)
        out.batch_id = ack.batch_id
        out.ack = ack.ack
        await self.deliver_ack(bytes(ack.to), frame)

    async def _on_ack_send(self, conn: Connection, ack: host_pb2.AckSend) -> None:
        self.metrics.bytes_in += len(ack.ack)
        if len(ack.ack) > env.MAX_ACK_BYTES:
            self.metrics.drop("too_large")
            await self._error(conn, "too_large", "ack is too large", ack.message_id, ack.to)
            return
        if len(ack.to) != NODE_ID_LEN:
            self.metrics.drop("malformed")
            await self._error(conn, "malformed", "AckSend.to is not a node id", ack.message_id)
            return
        conn.inflight.pop((bytes(ack.to), bytes(ack.message_id)), None)
        if self.router is not None:
            self.router.acked(conn.node_id or b"", ack.to, ack.message_id)
        frame = host_pb2.HostFrame()
        out = frame.ack
        out.message_id = ack.message_id
        out.ack = ack.ack
        setattr(out, "from", conn.node_id)
        await self.deliver_ack(ack.to, frame)

    async def deliver_ack(self, to: bytes, frame: host_pb2.HostFrame, *, route: bool = True) -> None:
        """Forward an ``Ack`` or ``AckBatch`` frame to ``to``; ``route`` False (an ack
        another cluster member sent here) does not hand it on to the cluster again."""
        dest = self.routes.get(to)
        if dest is None:
            if not (route and self.router is not None and await self.router.ack(to, frame)):
                self.metrics.drop("ack_sender_gone")
            return
        kind = frame.WhichOneof("frame") or "ack"
        if await self._write(dest, frame, kind):
            self.metrics.bytes_out += len(getattr(frame, kind).ack)
        else:
            self.metrics.drop("ack_sender_gone")

    async def _on_ping(self, conn: Connection, ping: host_pb2.Ping) -> None:
        await self._write(conn, host_pb2.HostFrame(pong=host_pb2.Pong(time_ms=ping.time_ms)), "pong")

    async def _on_pong(self, conn: Connection, pong: host_pb2.Pong) -> None:
        self.punch.on_pong(conn, pong)

    async def _on_lookup(self, conn: Connection, lookup: host_pb2.Lookup) -> None:
        target = bytes(lookup.target)
        if len(target) != NODE_ID_LEN:
            self.metrics.lookups["malformed"] += 1
            await self._error(conn, "malformed", "Lookup.target is not a node id")
            return
        if not conn.lookup_bucket.take(self.clock()):
            self.metrics.lookups["rate_limited"] += 1
            await self._error(conn, "rate_limited", "too many lookups; slow down", node_id=target)
            return
        try:
            result = await self.lookup(conn.node_id or b"", target)
        except RouteUnavailable as err:
            self.metrics.lookups["unavailable"] += 1
            await self._error(conn, "unavailable", str(err), node_id=target)
            return
        self.metrics.lookups["found" if result.found else "not_found"] += 1
        await self._write(conn, host_pb2.HostFrame(lookup_result=result), "lookup_result")

    async def lookup(self, requester: bytes, target: bytes, *, route: bool = True) -> host_pb2.LookupResult:
        """Where ``target`` can be dialled, if it allowed ``requester``; ``route`` False (a
        lookup another cluster member sent here) answers from this process only."""
        dest = self.routes.get(target)
        if dest is None and route and self.router is not None:
            return await self.router.lookup(requester, target)
        result = host_pb2.LookupResult(target=target)
        # Offline, unknown and not-allowed answer the same, so a lookup reveals
        # nothing to nodes the target did not allow.
        if dest is not None and self.fingerprints.contains(dest.lookup_allow, requester):
            result.found = True
            result.endpoints.extend(wire.dialable_endpoints(dest.endpoints, dest.peer_ip))
            result.observed_ip = dest.peer_ip
        return result

    async def _on_set_lookup_allow(self, conn: Connection, msg: host_pb2.SetLookupAllow) -> None:
        try:
            wire.check_node_ids(msg.node_ids, self.limits.max_lookup_allow, "lookup allow-list")
        except wire.RegisterError as err:
            await self._error(conn, "malformed", err.detail)
            return
        conn.lookup_allow = self.fingerprints.pack(msg.node_ids)

    # -- store and forward --------------------------------------------------------------

    def _store(self, recipient: bytes, item: Held) -> str | None:
        evicted = self.store.evicted
        refused = self.store.put(recipient, item)
        self._count_evictions(evicted)
        if refused is None:
            self._flush_if_online(recipient)
        return refused

    def _store_many(self, recipient: bytes, items: list[Held]) -> None:
        evicted = self.store.evicted
        lost = self.store.requeue(recipient, items)
        self._count_evictions(evicted)
        if lost:
            self.metrics.drop("requeue_full", lost)
        self._flush_if_online(recipient)

    def _count_evictions(self, before: int) -> None:
        if self.store.evicted > before:
            self.metrics.drop("evicted", self.store.evicted - before)

    def _flush_if_online(self, recipient: bytes) -> None:
        """A recipient that (re)registered while we were storing must not wait for its next registration."""
        conn = self.routes.get(recipient)
        if conn is not None and not conn.closing:
            self._spawn(self._flush(conn))

    async def _flush(self, conn: Connection) -> None:
        node_id = conn.node_id
        assert node_id is not None
        items, expired = self.store.take_all(node_id)
        if expired:
            self.metrics.drop("expired", expired)
        for i, item in enumerate(items):
            deliver = host_pb2.Deliver(message_id=item.message_id, envelope=item.envelope)
            setattr(deliver, "from", item.sender)
            conn.inflight[item.key] = item
            if self.routes.get(node_id) is not conn or not await self._write(
                conn, host_pb2.HostFrame(deliver=deliver), "deliver"
            ):
                conn.inflight.pop(item.key, None)
                self._store_many(node_id, items[i:])
                return
            self.metrics.flushed += 1
            self.metrics.bytes_out += len(item.envelope)

    def members_changed(self, urls: list[str]) -> None:
        """The cluster's member URLs changed: tell every node registered here, so that
        it reaches friends on a member that joined later (and stands by its URL)."""
        frame = host_pb2.HostFrame(members=host_pb2.Members(member_urls=urls))
        for conn in list(self.routes.values()):
            if not conn.closing:
                self._spawn(self._write(conn, frame, "members"))

    def moved(self, node_id: bytes) -> None:
        """``node_id`` registered on another cluster member: close its stale stream here,
        and forget the allow list remembered here (that member shares a newer one)."""
        self.remembered.forget(node_id)
        conn = self.routes.get(node_id)
        if conn is not None:
            log.info("node %s registered on another member", conn.node_hex, extra=conn.log_extra)
            self.metrics.drop("superseded")
            self.close(conn, "superseded", "a newer registration of this node id took over")

    # -- writing and closing ---------------------------------------------------------------

    async def push(self, conn: Connection, frame: host_pb2.HostFrame) -> bool:
        """Write a held ``Deliver`` frame (from the cluster's store) to ``conn``."""
        if not await self._write(conn, frame, "deliver"):
            return False
        self.metrics.flushed += 1
        self.metrics.bytes_out += len(frame.deliver.envelope)
        return True

    async def _write(
        self, conn: Connection, frame: host_pb2.HostFrame, kind: str, *, last: bool = False
    ) -> bool:
        if await conn.send(frame, self.clock, last=last):
            self.metrics.frames_out[kind] += 1
            return True
        self._broken(conn)
        return False

    def _broken(self, conn: Connection) -> None:
        """A write to ``conn`` failed: drop the stream (its node reconnects)."""
        if not conn.closing:
            log.info("dropping %s: its stream is broken or not reading", conn.id, extra=conn.log_extra)
            self.metrics.drop("write_failed")
            conn.closing = True
            conn.task.cancel()

    async def _error(
        self, conn: Connection, code: str, detail: str, message_id: bytes = b"", node_id: bytes = b""
    ) -> None:
        error = host_pb2.Error(code=code, detail=detail, message_id=message_id, node_id=node_id)
        await self._write(conn, host_pb2.HostFrame(error=error), "error")

    async def _refuse(self, conn: Connection, code: str, detail: str) -> None:
        """Answer a failed registration with an Error frame, then end the call."""
        log.warning(
            "refused registration from %s: %s: %s", conn.observed_addr, code, detail, extra=conn.log_extra
        )
        await self._error(conn, code, detail)
        await conn.context.abort(grpc.StatusCode.UNAUTHENTICATED, f"{code}: {detail}")

    def close(self, conn: Connection, code: str, detail: str) -> None:
        """Close a stream from outside its task: Error frame, then cancel it."""
        if conn.closing:
            return
        conn.closing = True
        self._spawn(self._close(conn, code, detail))

    async def _close(self, conn: Connection, code: str, detail: str) -> None:
        error = host_pb2.Error(code=code, detail=detail)
        await self._write(conn, host_pb2.HostFrame(error=error), "error", last=True)
        # abort() from this task sends the final status at once (cancelling the
        # call's task alone would leave the client waiting); the cancel then
        # stops the handler, which is blocked reading.
        with contextlib.suppress(Exception):
            await conn.context.abort(grpc.StatusCode.UNAVAILABLE, f"{code}: {detail}")
        conn.task.cancel()

    def _spawn(self, coro: Awaitable[object]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- housekeeping ------------------------------------------------------------------------

    async def run_sweeper(self) -> None:
        """Close streams that did not register in time, went idle or stopped
        taking frames (a write pending past write_timeout); expire stored envelopes."""
        lim = self.limits
        tick = min(1.0, lim.register_timeout_s / 4)
        if lim.idle_timeout_s:
            tick = min(tick, lim.idle_timeout_s / 4)
        if lim.write_timeout_s:
            tick = min(tick, lim.write_timeout_s / 4)
        tick = max(tick, 0.05)
        next_expire = self.clock() + QUEUE_EXPIRE_EVERY_S
        while True:
            await asyncio.sleep(tick)
            now = self.clock()
            for conn in list(self.connections.values()):
                started = conn.write_started
                if started and now - started > conn.write_timeout:
                    # Fails the pending write (a closing stream's too) and drops the
                    # stream here, not only when someone hears that write fail (its
                    # senders may be gone): the stream's end stores what waits for
                    # it and frees the senders waiting behind it.
                    conn.expire_write()
                    self._broken(conn)
                    continue
                if conn.closing:
                    continue
                if conn.node_id is None:
                    if now - conn.opened > lim.register_timeout_s:
                        self.metrics.drop("register_timeout")
                        self.close(conn, "register_timeout", "no registration in time")
                elif lim.idle_timeout_s and now - conn.last_frame > lim.idle_timeout_s:
                    self.metrics.drop("idle_timeout")
                    self.close(conn, "idle_timeout", "no frame in time")
            if now >= next_expire:
                next_expire = now + QUEUE_EXPIRE_EVERY_S
                expired = self.store.expire()
                if expired:
                    self.metrics.drop("expired", expired)
                self.remembered.expire(now)
                self._forget_idle_buckets(now)
            if self._new_registrations >= GC_FREEZE_EVERY:
                self._new_registrations = 0
                gc.freeze()

    def _forget_idle_buckets(self, now: float) -> None:
        """Drop new-stream buckets that have refilled: they hold nothing a fresh one would not."""
        self._last_prune = now
        for source, bucket in list(self.new_stream_buckets.items()):
            if bucket.full(now):
                del self.new_stream_buckets[source]

    async def shutdown(self, timeout: float = 1.0) -> None:
        """Refuse new streams and tell every node we are going (they reconnect elsewhere or later)."""
        self.accepting = False
        await self.punch.stop()
        for conn in list(self.connections.values()):
            self.close(conn, "shutting_down", "the host is shutting down")
        if self._background:
            await asyncio.wait(list(self._background), timeout=timeout)
