"""Publishing relayed frames to NATS with fewer socket writes under load
(DESIGN §15's hot path; the rule is :mod:`tmax_mesh_relay.pacing`'s).

nats-py's ``publish`` wakes its flusher task for every message, and a member
reads its nodes' frames one per event-loop iteration, so every cross-member
frame cost one write on this member, one read and one write in nats-server, and
one read on the receiving member. With writes held under load, nats-server's
CPU per relayed message fell from 62-76 µs to 28-47 µs, and cross-member relay
CPU from ~315-435 µs to ~200-300 µs, because every process on the way then
handles frames in bursts (``bench/relay_cluster.py``; bench/README.md, "What
changed on 2026-12-07").

It appends to nats-py's own pending buffer, so its messages keep their order
with everything else the connection publishes, and nats-py's flusher writes
them; that needs four of ``nats.aio.client.Client``'s private members. Where a
nats-py lacks them, :meth:`PacedPublisher.publish` is plain ``publish``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
from nats.protocol import command

from tmax_mesh_relay.pacing import INTERVAL_S, Pacer


class PacedPublisher:
    """``nc.publish`` for hot-path frames, flushed at most once per ``interval_s`` under load."""

    def __init__(self, nc: Any, interval_s: float = INTERVAL_S) -> None:
        self.nc = nc
        self.pacer = Pacer(interval_s)
        self.paced = callable(getattr(nc, "_send_command", None)) and all(
            hasattr(nc, name) for name in ("_flush_queue", "_flusher_task", "_flush_pending")
        )
        self.flushes = 0
        """Writes this publisher asked nats-py for (read by tests)."""
        self._loop = asyncio.get_running_loop()
        self._flush_due: asyncio.Handle | None = None
        self._inline: set[asyncio.Future] = set()

    async def publish(self, subject: str, payload: bytes, reply: str = "") -> None:
        """Queue one message; nats.errors.Error as ``publish`` raises them."""
        nc = self.nc
        if not self.paced:
            await nc.publish(subject, payload, reply=reply)
            return
        if nc.is_closed:
            raise nats.errors.ConnectionClosedError
        if not nc.is_connected:
            # nats-py would buffer it for after the reconnect; the callers answer
            # `unavailable` instead, and the sender's outbox retries.
            raise nats.errors.OutboundBufferLimitError
        if len(payload) > nc.max_payload:
            raise nats.errors.MaxPayloadError
        # nats-py's own buffer: it flushes at once past its pending size.
        await nc._send_command(command.pub_cmd(subject, reply, payload))
        now = self._loop.time()
        self.pacer.arrived(now)
        if self._flush_due is None:
            wait = self.pacer.hold(now)
            if wait > 0:
                self._flush_due = self._loop.call_later(wait, self._flush)
            else:
                self._flush_due = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Wake nats-py's flusher, which writes everything pending in one go."""
        self._flush_due = None
        self.pacer.wrote(self._loop.time())
        self.flushes += 1
        nc = self.nc
        flusher = nc._flusher_task
        if flusher is None or flusher.done():
            # Its flusher has ended while the connection is up: nats-py then writes
            # inline (a future queued for no reader would also stop its own
            # publishes from flushing, as they flush only into an empty queue).
            inline = asyncio.ensure_future(nc._flush_pending())
            self._inline.add(inline)
            inline.add_done_callback(self._inline_done)
            return
        queue = nc._flush_queue
        if queue is not None and queue.empty():
            queue.put_nowait(self._loop.create_future())

    def _inline_done(self, task: asyncio.Future) -> None:
        self._inline.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a failed write shows as the connection's loss

    def close(self) -> None:
        """Forget a scheduled flush (nats-py's ``close`` writes what is pending)."""
        if self._flush_due is not None:
            self._flush_due.cancel()
            self._flush_due = None
