"""DeliverStream, both ends over a real gRPC connection on loopback; the node
behind the server is a stand-in that answers batches the way told."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import grpc
import pytest

from tests.polling import wait_for_async
from tmax_core.model import IngressSource
from tmax_core.peer import DELIVER_STREAM, SERVICE
from tmax_core.peerstream import SERVER_IN_FLIGHT, PeerStream, StreamClosed, serve_stream
from tmax_core.proto.mesh_pb2 import StreamedBatch


class StandInNode:
    """Answers a batch with b"ack:" + its envelopes joined, after the delay the
    first envelope names (``b"slow"``: 0.2 s); ``b"boom"`` raises; ``b"big"``
    is answered with 1 MiB (more than gRPC's flow-control window)."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most_in_flight = 0
        self.handled = 0

    async def handle_envelope_batch(
        self, envelopes: list[bytes], source: IngressSource, nonce: bytes = b""
    ) -> bytes:
        self.in_flight += 1
        self.handled += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if envelopes and envelopes[0] == b"boom":
                raise RuntimeError("ingress bug")
            if envelopes and envelopes[0] == b"big":
                return bytes(1 << 20)
            await asyncio.sleep(0.2 if envelopes and envelopes[0] == b"slow" else 0)
            return b"ack:" + b",".join(envelopes)
        finally:
            self.in_flight -= 1


@pytest.fixture
async def served() -> Any:
    node = StandInNode()

    async def deliver_stream(requests: Any, context: grpc.aio.ServicerContext) -> None:
        await serve_stream(node, requests, context, IngressSource("direct", "test"))  # type: ignore[arg-type]

    server = grpc.aio.server(options=[("grpc.max_send_message_length", 4 << 20)])
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE, {"DeliverStream": grpc.stream_stream_rpc_method_handler(deliver_stream)}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield node, channel, server
    finally:
        await channel.close()
        await server.stop(None)


async def until_in_flight(node: StandInNode) -> None:
    """Until the receiver is working on a batch."""
    await wait_for_async(lambda: node.in_flight, interval=0.005, what="the receiver to work on a batch")


def open_stream(channel: grpc.aio.Channel) -> PeerStream:
    return PeerStream(channel.stream_stream(DELIVER_STREAM)())


async def test_answers_reach_their_own_batch_even_out_of_order(served: Any) -> None:
    _, channel, _ = served
    stream = open_stream(channel)
    slow = asyncio.create_task(stream.deliver([b"slow", b"1"], timeout=5))
    fast = await stream.deliver([b"2"], timeout=5)
    assert fast == b"ack:2"
    assert not slow.done()  # the later batch was answered first
    assert await slow == b"ack:slow,1"
    stream.close()


async def test_receiver_bounds_batches_in_flight(served: Any) -> None:
    node, channel, _ = served
    stream = open_stream(channel)
    answers = await asyncio.gather(*(stream.deliver([b"slow", b"%d" % i], timeout=10) for i in range(10)))
    assert answers == [b"ack:slow,%d" % i for i in range(10)]
    assert node.most_in_flight == SERVER_IN_FLIGHT
    stream.close()


async def test_ingress_failure_ends_the_stream_and_fails_what_waits(served: Any) -> None:
    node, channel, _ = served
    stream = open_stream(channel)
    waiting = asyncio.create_task(stream.deliver([b"slow"], timeout=5))
    await until_in_flight(node)
    with pytest.raises(StreamClosed, match="INTERNAL"):
        await stream.deliver([b"boom"], timeout=5)
    with pytest.raises(StreamClosed):
        await waiting
    with pytest.raises(StreamClosed):  # a closed stream takes no more batches
        await stream.deliver([b"3"], timeout=5)


async def test_server_going_away_fails_waiting_batches(served: Any) -> None:
    node, channel, server = served
    stream = open_stream(channel)
    waiting = asyncio.create_task(stream.deliver([b"slow"], timeout=5))
    await until_in_flight(node)
    await server.stop(None)
    with pytest.raises(StreamClosed):
        await waiting


async def test_no_answer_in_time_is_a_timeout(served: Any) -> None:
    _, channel, _ = served
    stream = open_stream(channel)
    with pytest.raises(TimeoutError):
        await stream.deliver([b"slow"], timeout=0.05)
    assert await stream.deliver([b"4"], timeout=5) == b"ack:4"  # the stream itself is fine
    stream.close()


async def test_a_request_that_is_not_a_batch_is_refused(served: Any) -> None:
    _, channel, _ = served
    call = channel.stream_stream(DELIVER_STREAM)()
    await call.write(b"\xff\xff\xff")
    await call.done_writing()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_sender_that_reads_no_answers_stalls_itself(served: Any) -> None:
    """Answers not read by the sender hold the receiver's slots: it stops
    reading batches instead of piling up answers."""
    node, channel, _ = served
    call = channel.stream_stream(DELIVER_STREAM)()
    sent = 0

    async def write_forever() -> None:
        nonlocal sent
        while True:
            await call.write(StreamedBatch(id=sent, envelopes=[b"big"]).SerializeToString())
            sent += 1

    writer = asyncio.create_task(write_forever())
    await asyncio.sleep(2.0)  # time enough to process a thousand batches (unbounded, it did)
    writer.cancel()
    handled = node.handled
    call.cancel()
    # the slots, plus the few answers gRPC's transport takes into its buffers
    assert handled <= SERVER_IN_FLIGHT + 16, handled


class EndsWhileWriting:
    """A stream call whose peer goes away while a batch is being written: the
    reader sees the end first (failing the batch's answer), then the write fails."""

    def __init__(self) -> None:
        self.ended = asyncio.Event()

    async def write(self, request: bytes) -> None:
        await self.ended.wait()
        raise grpc.aio.UsageError("the stream is closed")

    async def read(self) -> Any:
        self.ended.set()
        return grpc.aio.EOF

    def cancel(self) -> None: ...


async def test_an_answer_failed_while_its_write_fails_is_not_left_unretrieved() -> None:
    """Otherwise asyncio logs "Future exception was never retrieved" with a
    traceback in the node's log (seen once in the exactly-once test)."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        stream = PeerStream(EndsWhileWriting())
        with pytest.raises(grpc.aio.UsageError):
            await stream.deliver([b"envelope"], timeout=5)
        del stream
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert [c["message"] for c in reported] == []
