"""One ``Connect`` stream of ``tmax-host`` (:class:`Connection`) and how frames are
written into it.

Frames go into the recipient's stream under that connection's lock. Frames
that wait for the lock meanwhile (the stream is busy) go out together, as one
``Frames`` message, to a node that reads them (``Register.takes_frames``): one
gRPC write instead of one each. Answers, acks and lookups
(``Connection.send``) are written by the task of the connection that produced
them when nothing else waits for that stream, else queued behind what does
and awaited. Relayed envelopes (``Deliver``, ``DeliverBatch``) are *posted*
(``Connection.post``, from ``Hub.deliver_soon``): queued on the recipient's stream
without waiting for the write, so the sender's next frames are read while it
runs. Queued frames are written by one task per stream that lives only while
frames wait, so cancelling a sender's task never fails another's frame, and
each frame's result is its own. The queue is bounded per stream
(``POST_MAX_FRAMES``, ``max_frame_bytes``); past that the poster waits, which
back-pressures the sender: a sender whose recipient reads slowly is itself
read more slowly. A posted frame whose write fails takes the fallback an
awaited one would (stored for the node, or answered), once. A write that does
not complete within ``write_timeout_s`` marks the recipient broken: it is
disconnected and the frame is stored for it instead, so one stuck reader can
stall its senders for at most that long (plus one sweeper tick). The deadline
is not an ``asyncio.timeout`` per write (that costs several microseconds per
frame): the connection records when its current write started and the
sweeper cancels a write pending for longer (``Connection.expire_write``).
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from typing import Any

from tmax_core import netaddr
from tmax_core.tokenbucket import TokenBucket
from tmax_mesh_relay import wire
from tmax_mesh_relay.limits import HostLimits
from tmax_mesh_relay.proto import host_pb2
from tmax_mesh_relay.storeforward import Held

POST_MAX_FRAMES = 1024
"""Frames queued on one stream by :meth:`Connection.post` before the poster waits
(with ``max_frame_bytes``, the bound of that queue)."""

Settled = Callable[[bool], None]
"""Told whether a posted frame was written."""


class Connection:
    """One Connect stream (registered or not)."""

    __slots__ = (
        "bucket",
        "closing",
        "context",
        "endpoints",
        "flusher",
        "id",
        "inflight",
        "last_frame",
        "lock",
        "lookup_allow",
        "lookup_bucket",
        "max_frames_bytes",
        "node_hex",
        "node_id",
        "opened",
        "peer",
        "peer_ip",
        "pending",
        "pending_bytes",
        "room",
        "source",
        "takes_frames",
        "task",
        "write_expired",
        "write_started",
        "write_timeout",
        "writer",
    )

    def __init__(self, context: Any, task: asyncio.Task, now: float, limits: HostLimits) -> None:
        self.id = os.urandom(6).hex()
        self.context = context
        self.task = task
        self.peer = context.peer() or ""
        self.peer_ip = wire.peer_ip(self.peer)
        self.source = netaddr.source_key(self.peer)
        self.node_id: bytes | None = None
        self.node_hex = "-"
        self.endpoints: list[str] = []
        self.lookup_allow = b""  # Fingerprints.pack()ed node ids
        self.lock = asyncio.Lock()
        self.bucket = TokenBucket(limits.rate_per_s, limits.burst, now)
        self.lookup_bucket = TokenBucket(limits.lookup_rate_per_s, limits.lookup_burst, now)
        self.opened = now
        self.last_frame = now
        # Stored envelopes handed to this stream and not yet acknowledged by the
        # node: put back in the store if the stream ends first.
        self.inflight: dict[tuple[bytes, bytes], Held] = {}
        self.closing = False
        # Frames waiting for the lock, written together by the first to get it (if the
        # node reads Frames); at most max_frame_bytes of them in one message.
        self.takes_frames = False
        self.pending: list[_Pending] = []
        self.pending_bytes = 0
        self.max_frames_bytes = limits.max_frame_bytes
        # Frames posted (:meth:`post`) are written by this task, which lives while
        # any wait; posters wait for ``room`` while the queue is over its bound.
        self.flusher: asyncio.Task | None = None
        self.room: asyncio.Event | None = None
        self.write_timeout = limits.write_timeout_s
        # The write in progress: its start (hub clock; 0.0 when none) and the
        # task blocked in it, which the sweeper cancels past write_timeout.
        self.write_started = 0.0
        self.writer: asyncio.Task | None = None
        self.write_expired = False

    @property
    def log_extra(self) -> dict[str, str]:
        return {"connection_id": self.id, "node_id": self.node_hex}

    @property
    def observed_addr(self) -> str:
        return self.peer.partition(":")[2] if self.peer.startswith(("ipv4:", "ipv6:")) else self.peer

    async def send(
        self, frame: host_pb2.HostFrame, clock: Callable[[], float], *, last: bool = False
    ) -> bool:
        """Write one frame; False if the stream is closing, broken or too slow.
        ``last`` writes the final frame of a stream that is already closing
        (rare, so it keeps its own ``asyncio.timeout``).

        Otherwise the deadline is enforced by the hub's sweeper: it sees
        ``write_started`` too old and calls :meth:`expire_write`, which
        cancels the task blocked here; that cancellation is turned into a
        failed write (as ``asyncio.timeout`` would have done)."""
        if last:
            try:
                async with asyncio.timeout(self.write_timeout), self.lock:
                    await self.context.write(frame)
            except Exception:
                return False
            return True
        if self.closing:
            return False
        if self.flusher is None and not self.pending and not self.lock.locked():
            # Nothing else waits: written from this task (no task or future per frame).
            async with self.lock:
                return await self._write_locked(frame, clock)
        # Otherwise behind what waits, by the flusher: cancelling this task (its own
        # stream closed) then fails nobody else's frames, and this frame is still
        # written; its result is its own, not that of the oldest frames written.
        written = asyncio.get_running_loop().create_future()
        self._queue(frame, functools.partial(_set_once, written))
        self._start_flusher(clock)
        return await written

    async def post(self, frame: host_pb2.HostFrame, clock: Callable[[], float], done: Settled) -> None:
        """Queue ``frame`` without waiting for its write; ``done(ok)`` is called once it
        was written (True) or failed (False: the stream is closing, broken or too slow).

        Frames posted or sent while a write is in progress go out together as one
        ``Frames`` message (one by one to a node that does not read them), so a
        producer that posts frame after frame (a sender's read loop, the cluster's
        subscription for this node) does not cost one gRPC write per frame. Waits
        only while more than ``POST_MAX_FRAMES`` frames or ``max_frames_bytes`` are
        queued: that back-pressures the poster, never other streams; a stream that
        ends meanwhile (:meth:`abandon`) wakes it, and its frame fails at once."""
        while self.queue_full and not self.closing:
            if self.room is None:
                self.room = asyncio.Event()
            await self.room.wait()
        if self.closing:
            done(False)
            return
        self._queue(frame, done)
        self._start_flusher(clock)

    def abandon(self) -> None:
        """The stream ended: stop its writer, fail every frame still queued (each
        posted one takes its fallback) and wake the posters waiting for room."""
        self.closing = True
        if self.flusher is not None:
            self.flusher.cancel()  # its frames in the write fail with it
        waiting, self.pending, self.pending_bytes = self.pending, [], 0
        for item in waiting:
            item.settle(False)
        if self.room is not None:
            self.room.set()
            self.room = None

    def _start_flusher(self, clock: Callable[[], float]) -> None:
        if self.flusher is None:
            self.flusher = asyncio.ensure_future(self._write_posted(clock))

    def _queue(self, frame: host_pb2.HostFrame, done: Settled) -> None:
        item = _Pending(frame, done)
        self.pending.append(item)
        self.pending_bytes += item.size

    async def _write_posted(self, clock: Callable[[], float]) -> None:
        """Write what is queued until nothing is (a lone ``send`` may write between)."""
        try:
            while self.pending:
                async with self.lock:
                    if self.pending:
                        await self._write_pending(clock)
        finally:
            self.flusher = None

    async def _write_pending(self, clock: Callable[[], float]) -> None:
        """Write the oldest queued frames as one message (the lock is held) and settle them."""
        taken = self._take_pending()
        ok = False
        try:
            ok = await self._write_locked(_coalesced(taken), clock)
        finally:
            for item in taken:
                item.settle(ok)

    def _take_pending(self) -> list[_Pending]:
        """The frames waiting, oldest first: up to ``max_frames_bytes`` (at least one),
        or just one for a node that does not read ``Frames``."""
        size, n = 0, 0
        for item in self.pending:
            if n and (size + item.size > self.max_frames_bytes or not self.takes_frames):
                break
            size += item.size
            n += 1
        taken, self.pending = self.pending[:n], self.pending[n:]
        self.pending_bytes -= size
        room = self.room
        if room is not None and not self.queue_full:
            self.room = None
            room.set()
        return taken

    @property
    def queue_full(self) -> bool:
        """Whether a poster would wait (``POST_MAX_FRAMES`` or ``max_frames_bytes`` queued)."""
        return len(self.pending) >= POST_MAX_FRAMES or self.pending_bytes >= self.max_frames_bytes

    async def _write_locked(self, frame: host_pb2.HostFrame, clock: Callable[[], float]) -> bool:
        if self.closing:  # closed (e.g. its write expired) while we waited for the lock
            return False
        task = asyncio.current_task()
        self.writer = task
        self.write_started = clock()
        try:
            await self.context.write(frame)
        except asyncio.CancelledError:
            if not self.write_expired or task is None or task.uncancel() > 0:
                raise
            return False
        except Exception:
            return False
        finally:
            self.write_started = 0.0
            self.writer = None
            self.write_expired = False  # an expiry is of one write
        return True

    def expire_write(self) -> None:
        """Fail the write in progress (called by the sweeper past write_timeout, which
        then drops the stream: whether anyone hears this write's failure or not)."""
        writer = self.writer
        if writer is not None and not self.write_expired:
            self.write_expired = True
            writer.cancel()


class _Pending:
    """A frame waiting to be written; ``done`` hears whether it was."""

    __slots__ = ("done", "frame", "size")

    def __init__(self, frame: host_pb2.HostFrame, done: Settled) -> None:
        self.frame = frame
        self.size = frame.ByteSize()
        self.done = done

    def settle(self, ok: bool) -> None:
        self.done(ok)


def _set_once(written: asyncio.Future, ok: bool) -> None:
    """Settle a waiting ``send``; it may have been cancelled meanwhile."""
    if not written.done():
        written.set_result(ok)


def _coalesced(items: list[_Pending]) -> host_pb2.HostFrame:
    """One frame as is; several as one ``Frames`` message, in order."""
    if len(items) == 1:
        return items[0].frame
    out = host_pb2.HostFrame()
    out.frames.frames.extend(item.frame for item in items)
    return out
