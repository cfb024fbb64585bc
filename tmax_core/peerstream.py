"""``PeerService/DeliverStream``: direct delivery over one long-lived stream.

A unary ``DeliverBatch`` call costs a new HTTP/2 stream, headers and
trailers every time; on a quiet connection that is about twice the round
trip of one message on an open stream. So the direct transport keeps one
stream per endpoint: each batch goes out tagged with an id, and the answer
(the same signed batch ack ``DeliverBatch`` returns, as raw bytes) comes back
with that id, in whatever order the receiver finishes them.

Both ends are bounded: the receiver holds at most ``SERVER_IN_FLIGHT``
batches of a stream, from reading the batch until its answer is written, and
stops reading beyond that (HTTP/2 flow control then holds the sender; a
sender that does not read its answers stalls itself, not the receiver's
memory), and a sender's batch waits at most its timeout. Any failure ends
the stream and fails every batch still waiting on it, so the outbox falls
back to the next transport at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError

from tmax_core.printable import bounded_printable
from tmax_core.proto import mesh_pb2

if TYPE_CHECKING:
    from tmax_core.model import IngressSource
    from tmax_core.nodeports import EnvelopeHandler

log = logging.getLogger("tmax_mesh.peer")

SERVER_IN_FLIGHT = 8  # batches of one stream read but not yet answered (a sender keeps 8 in flight)


class StreamClosed(ConnectionError):
    """The stream ended; batches still waiting on it were not answered."""


class PeerStream:
    """The sending side of one ``DeliverStream`` call."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._next_id = 1
        self._write_lock = asyncio.Lock()  # grpc.aio allows one write at a time
        self.error: Exception | None = None
        self._reader = asyncio.create_task(self._read(), name="peer-stream-reader")

    async def deliver(self, envelopes: list[bytes], timeout: float) -> bytes:
        """Send one batch; returns the serialized batch SignedAck."""
        if self.error is not None:
            raise self.error
        batch_id = self._next_id
        self._next_id += 1
        answer = asyncio.get_running_loop().create_future()
        self._pending[batch_id] = answer
        request = mesh_pb2.StreamedBatch(id=batch_id, envelopes=envelopes).SerializeToString()
        try:
            async with asyncio.timeout(timeout):
                async with self._write_lock:
                    await self._call.write(request)
                return await answer
        finally:
            self._pending.pop(batch_id, None)
            # The stream can fail this answer while the call ends another way
            # (its write failed, its time ran out): mark the failure seen, or
            # asyncio logs it as "never retrieved" with a traceback.
            if answer.done() and not answer.cancelled():
                answer.exception()
            else:
                answer.cancel()

    def close(self) -> None:
        self._fail(StreamClosed("stream closed"))
        self._call.cancel()
        self._reader.cancel()

    async def _read(self) -> None:
        error: Exception
        try:
            while True:
                raw = await self._call.read()
                if raw is grpc.aio.EOF:
                    error = StreamClosed("the peer ended the stream")
                    break
                answer = mesh_pb2.StreamedAck.FromString(raw)
                waiting = self._pending.get(answer.id)
                if waiting is not None and not waiting.done():
                    waiting.set_result(answer.ack)
        except grpc.aio.AioRpcError as err:
            # The details are the peer's text: escaped and cut (they reach msg status and logs).
            error = StreamClosed(f"{err.code().name} {bounded_printable(err.details() or '')}".strip())
        except DecodeError:
            error = StreamClosed("the peer sent an answer that is not a StreamedAck")
        except asyncio.CancelledError:
            self._fail(StreamClosed("stream closed"))
            raise
        self._fail(error)

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        for waiting in self._pending.values():
            if not waiting.done():
                waiting.set_exception(self.error)


async def serve_stream(
    node: EnvelopeHandler,
    requests: AsyncIterator[bytes],
    context: grpc.aio.ServicerContext,
    source: IngressSource,
) -> None:
    """The receiving side: run each batch through ingress, answer with its id.

    Answers are written with ``context.write`` (not yielded), so that a peer
    that goes away while an answer is being written ends the handler quietly."""
    answers: asyncio.Queue[bytes | None] = asyncio.Queue()
    slots = asyncio.Semaphore(SERVER_IN_FLIGHT)
    working: set[asyncio.Task] = set()
    problem: list[tuple[grpc.StatusCode, str]] = []

    async def answer(batch: mesh_pb2.StreamedBatch) -> None:
        try:
            ack = await node.handle_envelope_batch(list(batch.envelopes), source, batch.nonce)
            answers.put_nowait(mesh_pb2.StreamedAck(id=batch.id, ack=ack).SerializeToString())
        except Exception:
            log.exception("ingress of a streamed batch failed")
            problem.append((grpc.StatusCode.INTERNAL, "ingress failed"))
            answers.put_nowait(None)

    async def read() -> None:
        try:
            async for raw in requests:
                try:
                    batch = mesh_pb2.StreamedBatch.FromString(raw)
                except DecodeError:
                    problem.append((grpc.StatusCode.INVALID_ARGUMENT, "not a StreamedBatch"))
                    return
                await slots.acquire()
                task = asyncio.create_task(answer(batch))
                working.add(task)
                task.add_done_callback(working.discard)
            await asyncio.gather(*working)
        finally:
            answers.put_nowait(None)

    reader = asyncio.create_task(read())
    try:
        while (item := await answers.get()) is not None:
            await context.write(item)
            slots.release()  # this answer is written: another batch may be read
        if problem:
            await context.abort(*problem[0])
    finally:
        reader.cancel()
        for task in list(working):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
