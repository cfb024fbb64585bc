"""``tmax-host --cluster``: members of one NATS system form one relay network
(DESIGN §15). Imported only when the flag is given, so a standalone host never
loads the NATS client.

Routing needs no lookup per frame. The member holding a node's stream
subscribes to ``tmax.node.<id>.*``; NATS knows which member that is (its
subject interest is the cluster's presence table, and it vanishes with the
member's connection, so a killed member leaves no stale route). A frame for a
node not held here is sent there:

- ``.d``: a ``HostFrame{deliver}`` or ``HostFrame{deliver_batch}`` (a whole
  ``RelaySendBatch``: one NATS message), published with a reply subject of
  the sender's member. The holder queues it on the node's stream without
  waiting for the write (``Hub.deliver_soon``: frames arriving meanwhile go
  out as one ``Frames`` message), and replies only when the sender must hear
  something (``Queued``, an ``Error``): a delivered frame costs one NATS
  message. A frame whose write fails is held (a batch: ``batch_unavailable``,
  and the node sends its envelopes one by one). NATS answers "no responders"
  at once when no member holds the node: the sender's member then holds the
  envelope itself (a batch: ``batch_unavailable``).
- ``.a``: a ``HostFrame{ack}`` or ``HostFrame{ack_batch}``, published
  (end-to-end acks and the sender's outbox make an ack lost in between harmless).
- ``.l``: a lookup; the holder answers with its allow list, as for a local lookup.
- ``.k``: "envelopes were held for this node" (published after each one is
  stored in JetStream, :mod:`tmax_mesh_relay.held`): the holder drains them.

Held envelopes are drained by the member a node registers on, in order, and
removed when the node acknowledges them; one not yet acknowledged when the
stream ends is delivered again on the next registration (the node drops the
duplicate, and its ack still reaches the sender).

A registration is announced on ``tmax.registered``: another member that still
holds a stream of that node closes it (superseded, :meth:`Hub.moved`).

NATS lost mid-run: local routing goes on; cross-member frames, and envelopes
for offline nodes (held only in JetStream, never in one member's memory), are
answered ``Error{unavailable}`` at once (the sender's outbox retries), so are
lookups of nodes not held here (not "not found": the node may well be online),
and the client reconnects on its own, re-subscribing every node.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import nats
import nats.errors
import nats.js.errors
from google.protobuf.message import DecodeError

from tmax_core.crypto import NODE_ID_LEN, to_checksum
from tmax_mesh_relay import allowlists
from tmax_mesh_relay.clustermetrics import ClusterMetrics
from tmax_mesh_relay.clusterstart import ClusterError, scrub, without_credentials
from tmax_mesh_relay.held import FRAME_OVERHEAD, HeldStream
from tmax_mesh_relay.hub import RouteUnavailable, batch_unavailable
from tmax_mesh_relay.jsready import JetStreamStart
from tmax_mesh_relay.members import Members
from tmax_mesh_relay.pacedpublish import PacedPublisher
from tmax_mesh_relay.proto import host_pb2
from tmax_mesh_relay.sharedallow import SharedAllowLists, fingerprint_key
from tmax_mesh_relay.workers import NATS_TOKEN_ENV

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

    from tmax_mesh_relay.connection import Connection
    from tmax_mesh_relay.hub import Hub

log = logging.getLogger("tmax_mesh.host")

NODE_PREFIX = "tmax.node."
REGISTERED_SUBJECT = "tmax.registered"
CONNECT_TIMEOUT_S = 5.0
RECONNECT_WAIT_S = 1.0
ANSWER_WAIT_S = 2.0
"""How long a forwarded frame waits for a holder's answer; silence means delivered."""
NO_RESPONDERS = "503"
SUB_PENDING_MSGS = 4096
SUB_PENDING_FRAMES = 8
"""A node's subscription holds at most this many messages, and this many frames'
worth of bytes, waiting for its callback (nats-py's defaults are 512k / 128 MB per
subscription); beyond either NATS drops the message as a slow consumer."""
PENDING_MAX_FRAMES = 100_000
PENDING_MAX_BYTES = 128 * 1024 * 1024
"""Forwarded frames, and their envelopes' bytes, kept for ``ANSWER_WAIT_S`` (a
delivered frame is never answered): beyond either, a frame is answered
``unavailable`` (the sender's outbox retries) instead of growing the member's memory."""


async def flush_all(nc: Any, timeout: float = 2.0) -> None:
    """Return once NATS has processed everything ``nc`` sent before (a SUB just
    made, say). nats-py's ``flush`` writes its PING straight to the socket, ahead
    of what still waits in its own buffer for the flusher task, so that PONG
    proves nothing about those; the flusher has written them by then, so the
    second round trip's PONG does. (A frame published to a subscription not yet
    in place meets "no responders" and is held, not lost: this is about timing.)"""
    await nc.flush(timeout=timeout)
    await nc.flush(timeout=timeout)


def node_subject(node_id: bytes, kind: str) -> str:
    """The subject of ``kind`` frames for ``node_id``; ValueError for anything but a
    node id (a longer one could exceed nats-server's control-line limit, and the
    server would then drop this member's whole connection)."""
    if len(node_id) != NODE_ID_LEN:
        raise ValueError(f"not a node id: {len(node_id)} bytes")
    return f"{NODE_PREFIX}{node_id.hex()}.{kind}"


def _envelope_bytes(frame: host_pb2.HostFrame) -> int:
    """The envelopes' bytes of a ``Deliver`` or ``DeliverBatch`` frame."""
    if frame.HasField("deliver_batch"):
        return sum(len(data) for data in frame.deliver_batch.envelopes)
    return len(frame.deliver.envelope)


def _unavailable(detail: str, frame: host_pb2.HostFrame, node_id: bytes) -> host_pb2.HostFrame:
    """The answer to a forwarded frame the cluster cannot take now: ``unavailable`` (the
    outbox retries) for a ``Deliver``, ``batch_unavailable`` (sent one by one) for a batch."""
    if frame.HasField("deliver_batch"):
        return batch_unavailable(frame.deliver_batch.batch_id, node_id)
    error = host_pb2.Error(
        code="unavailable", detail=detail, message_id=frame.deliver.message_id, node_id=node_id
    )
    return host_pb2.HostFrame(error=error)


class Cluster:
    """The hub's :class:`~tmax_mesh_relay.hub.Router` over NATS."""

    def __init__(self, hub: Hub, where: str) -> None:
        self.hub = hub
        self.where = where
        self.nc: Any = None
        self.paced: PacedPublisher  # the hot path's publishes (frames, acks, answers); set on connect
        self._nats_urls: list[str] = []  # with their credentials: for scrub() only
        self.metrics = ClusterMetrics(hub.metrics.registry, connected=self._connected)
        self.member_id = os.urandom(8).hex()
        self._member_tag = bytes.fromhex(self.member_id)
        self.members: Members | None = None
        self.held: HeldStream | None = None
        self.allow_lists: SharedAllowLists | None = None
        self._subs: dict[bytes, Subscription] = {}
        # Nodes subscribed here that registered on another member since: until the
        # unsubscribe is done, that member answers their frames and lookups, not this
        # one, but for the messages already queued here then (the count left of them),
        # which were published before that member subscribed and reach only this one.
        self._superseded: dict[bytes, int] = {}
        # Per node registered here: where its next drain of held envelopes starts,
        # whether a drain runs (True: run again when it ends), and the sequence
        # numbers of envelopes written to it and not yet acknowledged.
        self._cursor: dict[bytes, int] = {}
        self._draining: dict[bytes, bool] = {}
        self._unacked: dict[bytes, dict[tuple[bytes, bytes], int]] = {}
        # Frames forwarded to other members, by the token of their reply subject
        # (oldest first): their sender, recipient and frame, until answered or expired.
        self._answers = f"tmax.answer.{self.member_id}."
        self._pending: dict[str, _Forwarded] = {}
        self._pending_bytes = 0
        self.pending_max_frames = PENDING_MAX_FRAMES
        self.pending_max_bytes = PENDING_MAX_BYTES
        self._token = 0
        self._tasks: set[asyncio.Task] = set()
        self._last_error: BaseException | None = None
        self._closing = False
        # The holder may take up to write_timeout to write into a slow stream.
        self.request_timeout = hub.limits.write_timeout_s + 2.0

    @property
    def member_urls(self) -> list[str]:
        return self.members.urls if self.members is not None else list(self.hub.host.public_urls)

    def _connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    # -- joining and leaving ------------------------------------------------------------

    @classmethod
    async def join(cls, hub: Hub, urls: list[str], replicas: int = 1) -> Cluster:
        """Connect to NATS, enter the member list and start routing for ``hub``;
        ClusterError (one line naming the URL) when NATS cannot be used."""
        cluster = cls(hub, ", ".join(without_credentials(url) for url in urls))
        await cluster._connect(urls)
        try:
            await cluster._start(replicas)
        except BaseException:
            await cluster._close_nats()
            raise
        hub.router = cluster
        log.info("cluster: joined as member %s through %s", cluster.member_id, cluster.where)
        return cluster

    async def _connect(self, urls: list[str]) -> None:
        self._nats_urls = urls
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                self.nc = await nats.connect(
                    urls,
                    name=f"tmax-host {self.member_id}",
                    connect_timeout=2,
                    reconnect_time_wait=RECONNECT_WAIT_S,
                    max_reconnect_attempts=-1,  # reconnect for as long as the member runs
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    skip_subject_validation=True,  # subjects are built here from hex ids
                    # Credentials in the URLs (nats://user:pass@, nats://token@) work too.
                    token=os.environ.get(NATS_TOKEN_ENV) or None,
                )
        except (TimeoutError, OSError, nats.errors.Error) as err:
            raise ClusterError(
                f"cannot reach NATS at {self.where}: {self._describe(self._last_error or err)}"
            ) from None
        self.paced = PacedPublisher(self.nc)

    async def _start(self, replicas: int) -> None:
        needed = self.hub.limits.max_frame_bytes + FRAME_OVERHEAD
        if self.nc.max_payload < needed:
            raise ClusterError(
                f"NATS at {self.where} takes messages of at most {self.nc.max_payload} bytes, and "
                f"--max-frame-bytes needs {needed}: set max_payload (e.g. 2MB) in nats-server's config"
            )
        # Each step waits while JetStream is not ready (a NATS cluster just started).
        start = JetStreamStart(self.nc, self.where)
        try:
            errors = self.metrics.errors
            self.members = await start.run(
                lambda: Members.join(
                    self.nc,
                    self.member_id,
                    list(self.hub.host.public_urls),
                    self.metrics,
                    replicas,
                    on_change=self.hub.members_changed,
                )
            )
            limits = self.hub.limits
            self.held = await start.run(
                lambda: HeldStream.open(
                    self.nc, limits.queue, limits.max_frame_bytes, replicas, errors, self.hub.clock
                )
            )
            self.allow_lists = await start.run(
                lambda: SharedAllowLists.open(
                    self.nc,
                    limits.queue.ttl_s,
                    limits.remembered_allow_bytes,
                    limits.max_lookup_allow,
                    errors,
                    replicas,
                )
            )
            # Packed allow lists mean the same on every member (before any registration).
            key = await start.run(lambda: fingerprint_key(self.nc, replicas))
            self.hub.fingerprints = allowlists.Fingerprints(key)
        except (TimeoutError, nats.errors.Error) as err:
            log.debug("cluster: JetStream: %r", err)
            raise ClusterError(
                f"NATS at {self.where} refused the cluster's JetStream setup: {self._describe(err)}"
            ) from None
        await self.nc.subscribe(REGISTERED_SUBJECT, cb=self._on_registered)
        await self.nc.subscribe(self._answers + "*", cb=self._on_answer)
        self._spawn(self.members.run())
        self._spawn(self._expire_answers())

    async def _on_error(self, err: Exception) -> None:
        if self.nc is None:
            self._last_error = err  # still connecting: reported by join
        elif isinstance(err, nats.errors.SlowConsumerError):
            # A node's subscription over its bound: NATS dropped a message for it (a
            # frame's sender hears nothing and its outbox sends it again). Counted,
            # not logged: a flood of them would flood the log.
            self.metrics.errors["slow_consumer"] += 1
        else:
            log.warning("cluster: NATS: %s", self._describe(err))

    def _describe(self, err: BaseException) -> str:
        """``err`` in one line without the NATS URLs' credentials (a NATS client may name its URL)."""
        if isinstance(err, nats.js.errors.APIError) and err.description:
            return err.description
        return scrub(str(err) or type(err).__name__, self._nats_urls)

    async def _on_disconnected(self) -> None:
        if self._closing:
            return
        self.metrics.disconnects += 1
        log.warning("cluster: lost NATS (%s); cross-member frames fail until it is back", self.where)

    async def _on_reconnected(self) -> None:
        log.info("cluster: NATS connection restored")
        if self.members is not None:
            self._spawn(self._rejoin(self.members))

    async def _rejoin(self, members: Members) -> None:
        """Back on NATS: renew this member's entry (the server may have lost it) and say so."""
        await members.refresh()
        with contextlib.suppress(nats.errors.Error):
            await members.announce()

    async def close(self) -> None:
        """Leave the member list and close the NATS connection."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.members is not None and self.nc.is_connected:
            await self.members.leave()
        await self._close_nats()

    async def _close_nats(self) -> None:
        self._closing = True
        self.paced.close()
        with contextlib.suppress(Exception):
            await self.nc.close()

    # -- Router: this member's nodes -----------------------------------------------------

    async def attach(self, conn: Connection) -> None:
        node_id = conn.node_id
        assert node_id is not None
        if node_id not in self._subs:
            sub = await self.nc.subscribe(
                f"{NODE_PREFIX}{node_id.hex()}.*",
                cb=self._on_node_msg,
                pending_msgs_limit=SUB_PENDING_MSGS,
                pending_bytes_limit=SUB_PENDING_FRAMES * (self.hub.limits.max_frame_bytes + FRAME_OVERHEAD),
            )
            if self._subs.setdefault(node_id, sub) is not sub:
                await sub.unsubscribe()  # a concurrent registration subscribed first
        self._superseded.pop(node_id, None)
        # A new stream gets everything held, including what an older one did not acknowledge.
        self._cursor[node_id] = 1
        self._unacked.pop(node_id, None)
        if not self.nc.is_connected:
            return  # the subscription is made on reconnect; nobody can be told now
        try:
            # The subscription is in place before anyone hears of the registration.
            await flush_all(self.nc)
            await self.nc.publish(REGISTERED_SUBJECT, self._member_tag + node_id)
        except (nats.errors.Error, TimeoutError):
            self.metrics.errors["announce"] += 1
        self._spawn(self._drain(node_id))

    def detach(self, node_id: bytes, lookup_allow: bytes) -> None:
        if self.allow_lists is not None and self.nc.is_connected:
            self._spawn(self.allow_lists.put(node_id, lookup_allow))
        self._cursor.pop(node_id, None)
        self._unacked.pop(node_id, None)
        sub = self._subs.pop(node_id, None)
        if sub is not None:
            self._spawn(self._unsubscribe(node_id, sub))

    async def _unsubscribe(self, node_id: bytes, sub: Subscription) -> None:
        """End this member's subscription to a node whose stream here ended. Frames
        already on their way (queued in the subscription, or sent before NATS has
        the unsubscribe) are still answered, by :meth:`_on_node_msg`: ``drain``, not
        ``unsubscribe``, which would drop them and leave their senders waiting out
        their send timeout."""
        try:
            if self.nc.is_connected:
                await sub.drain()
            else:  # (drain needs a round trip; nats-py sends nothing while reconnecting)
                await sub.unsubscribe()
        except (nats.errors.Error, TimeoutError):
            # Lost NATS before the drain's round trip: what was queued for the node is
            # left to its senders' retries.
            self.metrics.errors["unsubscribe"] += 1
            await self._forget_subscription(sub)
        finally:
            if node_id not in self._subs:  # (not subscribed again meanwhile)
                self._superseded.pop(node_id, None)

    async def _forget_subscription(self, sub: Subscription) -> None:
        """Do what ``unsubscribe`` does to a subscription a failed drain left behind:
        nats-py keeps it in its table, closed, and subscribes it again on reconnect (a
        ghost answering for a node that left). nats-py has no public call for that;
        tests/cluster/test_cluster_drain.py fails if these change."""
        sub._stop_processing()
        self.nc._remove_sub(sub._id)
        if self.nc.is_connected:  # (else the reconnect does not subscribe it again)
            with contextlib.suppress(nats.errors.Error):
                await self.nc._send_unsubscribe(sub._id)

    async def _on_registered(self, msg: Msg) -> None:
        data = msg.data
        member, node_id = data[:8], data[8:]
        if member == self._member_tag or len(node_id) != 20:
            return
        sub = self._subs.get(node_id)
        if sub is not None:
            self._superseded[node_id] = sub.pending_msgs
        self.hub.moved(node_id)

    # -- Router: frames for other members' nodes ------------------------------------------

    async def forward(
        self, conn: Connection, to: bytes, frame: host_pb2.HostFrame
    ) -> host_pb2.HostFrame | None:
        if not self.nc.is_connected:
            self.metrics.errors["disconnected"] += 1
            return _unavailable("the relay cluster is unreachable; retry", frame, to)
        size = _envelope_bytes(frame)
        if (
            len(self._pending) >= self.pending_max_frames
            or self._pending_bytes + size > self.pending_max_bytes
        ):
            self.metrics.errors["pending_full"] += 1
            return _unavailable("the relay cluster is busy; retry", frame, to)
        self._token += 1
        token = str(self._token)
        self._pending[token] = _Forwarded(self.hub.clock() + ANSWER_WAIT_S, conn, to, frame, size)
        self._pending_bytes += size
        try:
            await self.paced.publish(
                node_subject(to, "d"), frame.SerializeToString(), reply=self._answers + token
            )
        except nats.errors.Error as err:
            self._take_pending(token)
            self.metrics.errors["publish"] += 1
            log.info("cluster: relaying to %s failed: %s", to_checksum(to), err)
            return _unavailable("the relay cluster is unreachable; retry", frame, to)
        self.metrics.frames_out[frame.WhichOneof("frame") or "deliver"] += 1
        return None

    async def _on_answer(self, msg: Msg) -> None:
        """A holder's answer to a forwarded frame, or NATS's "no responders" for it."""
        pending = self._take_pending(msg.subject[len(self._answers) :])
        if pending is None:
            return  # too late: the sender's outbox has its own timeout
        conn, to, frame = pending.conn, pending.to, pending.frame
        if msg.headers and msg.headers.get("Status") == NO_RESPONDERS:
            # No member holds the node: hold the envelope for it, as for an offline
            # node (a batch is sent one by one, and those are held).
            if frame.HasField("deliver_batch"):
                self.hub.metrics.drop("batch_unavailable")
                answer: host_pb2.HostFrame | None = _unavailable("", frame, to)
            else:
                answer = await self.hub.deliver(to, frame)
            await self.hub.answer(conn, answer)
            return
        try:
            answer = host_pb2.HostFrame.FromString(msg.data)
        except DecodeError:
            self.metrics.errors["malformed"] += 1
            return
        await self.hub.answer(conn, answer)

    def _take_pending(self, token: str) -> _Forwarded | None:
        pending = self._pending.pop(token, None)
        if pending is not None:
            self._pending_bytes -= pending.size
        return pending

    async def _expire_answers(self) -> None:
        """Forget forwarded frames whose holder said nothing: they were delivered."""
        while True:
            await asyncio.sleep(ANSWER_WAIT_S / 2)
            now = self.hub.clock()
            while self._pending:
                token, pending = next(iter(self._pending.items()))
                if pending.deadline > now:
                    break
                self._take_pending(token)

    async def ack(self, to: bytes, frame: host_pb2.HostFrame) -> bool:
        if not self.nc.is_connected:
            self.metrics.errors["disconnected"] += 1
            return False
        try:
            await self.paced.publish(node_subject(to, "a"), frame.SerializeToString())
        except nats.errors.Error:
            self.metrics.errors["publish"] += 1
            return False
        self.metrics.frames_out[frame.WhichOneof("frame") or "ack"] += 1
        return True

    async def lookup(self, requester: bytes, target: bytes) -> host_pb2.LookupResult:
        if not self.nc.is_connected:
            self.metrics.errors["disconnected"] += 1
            raise RouteUnavailable("the relay cluster is unreachable; retry")
        try:
            reply = await self.nc.request(node_subject(target, "l"), requester, timeout=self.request_timeout)
            self.metrics.frames_out["lookup"] += 1
            return host_pb2.LookupResult.FromString(reply.data)
        except nats.errors.NoRespondersError:
            return host_pb2.LookupResult(target=target)  # no member holds it: offline
        except (nats.errors.Error, TimeoutError, DecodeError) as err:
            self.metrics.errors["request"] += 1
            log.info("cluster: lookup of %s failed: %s", to_checksum(target), err)
            raise RouteUnavailable("the relay cluster did not answer; retry") from None

    # -- Router: envelopes held for offline nodes -------------------------------------------

    async def hold(self, to: bytes, frame: host_pb2.HostFrame) -> str | None:
        if self.held is None or not self.nc.is_connected:
            return "unavailable"
        refused = await self.held.put(to, frame)
        if refused is None:
            # The node may have registered somewhere since the sender's member
            # found no one holding it: its member drains what was just held.
            with contextlib.suppress(nats.errors.Error):
                await self.nc.publish(node_subject(to, "k"), b"")
        return refused

    async def allow_list(self, node_id: bytes) -> bytes | None:
        if self.allow_lists is None or not self.nc.is_connected:
            return None
        return await self.allow_lists.get(node_id)

    def acked(self, recipient: bytes, sender: bytes, message_id: bytes) -> None:
        seq = self._unacked.get(recipient, {}).pop((bytes(sender), bytes(message_id)), None)
        if seq is not None and self.held is not None:
            self._spawn(self.held.remove(recipient, bytes(sender), bytes(message_id), seq))

    async def _drain(self, node_id: bytes) -> None:
        """Write what is held for ``node_id`` to its stream here; one drain per node at a
        time, run again if more was held meanwhile."""
        if node_id in self._draining:
            self._draining[node_id] = True
            return
        self._draining[node_id] = False
        try:
            while True:
                await self._drain_once(node_id)
                if not self._draining[node_id]:
                    return
                self._draining[node_id] = False
        finally:
            del self._draining[node_id]

    async def _drain_once(self, node_id: bytes) -> None:
        """Until nothing more is held, or the node's stream here is gone or broken."""
        assert self.held is not None
        while True:
            conn = self.hub.routes.get(node_id)
            seq = self._cursor.get(node_id)
            if conn is None or seq is None:
                return
            got = await self.held.next(node_id, seq)
            if got is None:
                return
            seq, frame = got
            if self._cursor.get(node_id) is None or self.hub.routes.get(node_id) is not conn:
                return  # the stream ended (or was replaced) while we read
            self._cursor[node_id] = seq + 1
            deliver = frame.deliver
            self._unacked.setdefault(node_id, {})[(getattr(deliver, "from"), deliver.message_id)] = seq
            if not await self.hub.push(conn, frame):
                return

    # -- frames other members send to this member's nodes -----------------------------------

    async def _on_node_msg(self, msg: Msg) -> None:
        _, _, hex_id, kind = msg.subject.split(".")
        try:
            node_id = bytes.fromhex(hex_id)
            conn = self.hub.routes.get(node_id)
            gone = conn is None or conn.closing
            queued_before = self._superseded.get(node_id)
            if queued_before:
                self._superseded[node_id] = queued_before - 1
            elif gone and kind in ("d", "l") and queued_before is not None:
                # The node registered on another member, which got this too and answers
                # it; the unsubscribe here is on its way.
                self.metrics.errors["stale_route"] += 1
                return
            # Otherwise a stream that ended here (and whose unsubscribe is on its way)
            # is answered as an offline node's: a frame is held, a lookup finds nothing.
            if kind == "d":
                frame = host_pb2.HostFrame.FromString(msg.data)
                what = frame.WhichOneof("frame")
                if what not in ("deliver", "deliver_batch"):
                    raise ValueError(f"{what} frame on a deliver subject")
                self.metrics.frames_in[what] += 1
                if conn is not None and not gone and conn.queue_full:
                    # Not waiting for room: this subscription also carries the node's
                    # acks and lookups, and what waits in it costs this member memory.
                    self.metrics.errors["recipient_busy"] += 1
                    busy = _unavailable("the recipient's stream is busy; retry", frame, node_id)
                    await self._respond(msg.reply, busy)
                    return
                # Not waiting for the write: frames arriving meanwhile go out together.
                await self.hub.deliver_soon(node_id, frame, functools.partial(self._respond, msg.reply))
            elif kind == "a":
                frame = host_pb2.HostFrame.FromString(msg.data)
                what = frame.WhichOneof("frame")
                if what not in ("ack", "ack_batch"):
                    raise ValueError(f"{what} frame on an ack subject")
                self.metrics.frames_in[what] += 1
                await self.hub.deliver_ack(node_id, frame, route=False)
            elif kind == "k":
                if node_id in self.hub.routes:
                    self._spawn(self._drain(node_id))
            elif kind == "l":
                self.metrics.frames_in["lookup"] += 1
                if gone:
                    result = host_pb2.LookupResult(target=node_id)
                else:
                    result = await self.hub.lookup(bytes(msg.data), node_id, route=False)
                await msg.respond(result.SerializeToString())
        except (ValueError, DecodeError):
            self.metrics.errors["malformed"] += 1
        except nats.errors.Error:
            self.metrics.errors["respond"] += 1

    async def _respond(self, reply: str, answer: host_pb2.HostFrame | None) -> None:
        """Answer a forwarded frame's sender (through its member); delivered: silence."""
        if answer is None or not reply:
            return
        try:
            await self.paced.publish(reply, answer.SerializeToString())
        except nats.errors.Error:
            self.metrics.errors["respond"] += 1

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


@dataclass(frozen=True, slots=True)
class _Forwarded:
    """A frame forwarded to another member, kept until answered or ``deadline`` (delivered)."""

    deadline: float
    conn: Connection
    to: bytes
    frame: host_pb2.HostFrame
    size: int
