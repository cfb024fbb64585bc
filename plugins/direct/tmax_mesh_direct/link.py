"""A punched TCP connection to a friend, carrying the direct path's protocol.

gRPC in Python cannot adopt a connected socket, and HTTP/2 calls go one way
only while a punched connection is one connection for both friends. So the
link speaks the ``DeliverStream`` protocol itself, both ways at once, as
length-prefixed protobuf (measured against a loopback pump into gRPC in
``bench/punch_carrier.py``; see docs/direct.md)::

    frame = length (4 bytes, big endian, of what follows) | kind (1 byte) | body
    kind  B: StreamedBatch (a batch, or a probe: no envelopes and a nonce)
          A: StreamedAck   (its signed batch ack, the id echoed)
          P / Q: ping / pong (no body)

Batches a friend sends are served exactly as a ``DeliverStream`` call is
(:func:`tmax_core.peerstream.serve_stream`: the same ingress, the same
signed batch acks, at most ``SERVER_IN_FLIGHT`` at once). A frame larger than
one gRPC message may be, or more than ``MAX_QUEUED`` batches waiting, ends the
link. Liveness: a ping every third of ``liveness_s``; no frame for
``liveness_s`` ends the link (a NAT mapping that died, a router that drops the
flow), and every batch waiting on it fails at once, so the relay carries it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError

from tmax_core.model import IngressSource
from tmax_core.peerstream import serve_stream
from tmax_core.proto import mesh_pb2
from tmax_mesh_direct.probe import new_nonce, verify_probe_answer

if TYPE_CHECKING:
    from tmax_core.model import Friend
    from tmax_core.nodeports import EnvelopeHandler

log = logging.getLogger("tmax_mesh.direct")

HEADER = struct.Struct(">IB")
BATCH, ACK, PING, PONG = b"B"[0], b"A"[0], b"P"[0], b"Q"[0]
MAX_QUEUED = 32  # batches received and not yet taken by the server side


class LinkClosed(ConnectionError):
    """The link ended; what was waiting on it was not answered."""


class _Context:
    """What :func:`serve_stream` needs of a gRPC servicer context."""

    def __init__(self, link: FramedLink) -> None:
        self.link = link

    async def write(self, answer: bytes) -> None:
        await self.link._send(ACK, answer)

    async def abort(self, code: Any, details: str) -> None:
        """End the link; like gRPC's ``abort``, never returns (the serving task ends quietly)."""
        self.link._fail(LinkClosed(f"serving failed: {details}"))
        raise asyncio.CancelledError


class FramedLink:
    """One punched connection to ``friend``: send batches on it (``deliver``),
    serve the friend's batches through ``handler``."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        endpoint: str,
        handler: EnvelopeHandler,
        liveness_s: float,
        max_frame: int,
    ) -> None:
        self.endpoint = endpoint
        self.error: Exception | None = None
        self._reader = reader
        self._writer = writer
        self._liveness_s = liveness_s
        self._max_frame = max_frame
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._next_id = 1
        self._requests: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._write_lock = asyncio.Lock()
        self._last_rx = time.monotonic()
        self.closed = asyncio.Event()
        source = IngressSource("direct", endpoint.rpartition(":")[0])
        self._tasks = [
            asyncio.create_task(self._read(), name="punch-link-reader"),
            asyncio.create_task(self._keepalive(), name="punch-link-keepalive"),
            asyncio.create_task(
                serve_stream(handler, self._batches(), _Context(self), source), name="punch-link-server"
            ),
        ]

    # -- sending -----------------------------------------------------------------------

    async def deliver(self, envelopes: list[bytes], timeout: float, nonce: bytes = b"") -> bytes:
        """Send one batch; returns the friend's serialized batch SignedAck."""
        if self.error is not None:
            raise self.error
        batch_id = self._next_id
        self._next_id += 1
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[batch_id] = answer
        body = mesh_pb2.StreamedBatch(id=batch_id, envelopes=envelopes, nonce=nonce).SerializeToString()
        try:
            async with asyncio.timeout(timeout):
                await self._send(BATCH, body)
                return await answer
        finally:
            self._pending.pop(batch_id, None)
            if answer.done() and not answer.cancelled():
                answer.exception()  # seen: a failure here is the call's, not "never retrieved"
            else:
                answer.cancel()

    async def probe(self, friend: Friend, timeout: float) -> None:
        """Check that ``friend`` answers on this link (its signed ack of a fresh nonce);
        raises ``EnvelopeError``, ``ConnectionError`` or ``TimeoutError`` if not."""
        nonce = new_nonce()
        verify_probe_answer(await self.deliver([], timeout, nonce), friend, nonce)

    async def _send(self, kind: int, body: bytes = b"") -> None:
        if self.error is not None:
            raise self.error
        try:
            async with self._write_lock:
                self._writer.write(HEADER.pack(len(body) + 1, kind) + body)
                await self._writer.drain()
        except OSError as err:
            self._fail(LinkClosed(f"write failed: {err}"))
            raise LinkClosed(f"write failed: {err}") from None

    # -- receiving ---------------------------------------------------------------------

    async def _batches(self) -> AsyncIterator[bytes]:
        while (raw := await self._requests.get()) is not None:
            yield raw

    async def _read(self) -> None:
        try:
            while True:
                size, kind = HEADER.unpack(await self._reader.readexactly(HEADER.size))
                if not 1 <= size <= self._max_frame:
                    raise LinkClosed(f"the friend sent a frame of {size} bytes")
                body = await self._reader.readexactly(size - 1)
                self._last_rx = time.monotonic()
                if kind == BATCH:
                    if self._requests.qsize() >= MAX_QUEUED:
                        raise LinkClosed("the friend sent more batches than it may have in flight")
                    self._requests.put_nowait(body)
                elif kind == ACK:
                    answer = mesh_pb2.StreamedAck.FromString(body)
                    waiting = self._pending.get(answer.id)
                    if waiting is not None and not waiting.done():
                        waiting.set_result(answer.ack)
                elif kind == PING:
                    await self._send(PONG)
                elif kind != PONG:
                    raise LinkClosed(f"the friend sent an unknown frame kind {kind}")
        except asyncio.IncompleteReadError:
            self._fail(LinkClosed("the friend closed the connection"))
        except DecodeError:
            self._fail(LinkClosed("the friend sent an answer that is not a StreamedAck"))
        except (LinkClosed, OSError) as err:
            self._fail(err if isinstance(err, LinkClosed) else LinkClosed(str(err)))

    async def _keepalive(self) -> None:
        with contextlib.suppress(ConnectionError):
            while self.error is None:
                await asyncio.sleep(self._liveness_s / 3)
                if time.monotonic() - self._last_rx > self._liveness_s:
                    self._fail(LinkClosed(f"no answer within {self._liveness_s:g}s"))
                    return
                await self._send(PING)

    # -- ending ------------------------------------------------------------------------

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
            log.info("punched connection to %s ended: %s", self.endpoint, error)
        for waiting in self._pending.values():
            if not waiting.done():
                waiting.set_exception(self.error)
        self._requests.put_nowait(None)
        self._writer.close()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self.closed.set()

    def close(self) -> None:
        self._fail(LinkClosed("closed"))
