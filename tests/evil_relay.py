"""A scripted malicious relay host, for attack tests (DESIGN §7: the relay is
an adversary by design).

``EvilRelay`` speaks ``HostService.Connect`` like ``tmax-host`` closely enough
for real ``tmax-node`` processes to register and relay through it, but it
checks nothing and lets the test decide the fate of every frame: each
``RelaySend`` and ``AckSend`` is recorded with its exact bytes, then passed to
``on_send`` / ``on_ack``, which forward it (the default), drop it, or hold it
for later. The test can also inject ``Deliver`` and ``Ack`` frames in any
node's name. It runs a grpc.aio server on its own event loop in a thread, so
synchronous tests drive it with plain calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import grpc

from tmax_core.proto import mesh_pb2
from tmax_mesh_relay.proto import host_pb2

CONNECT = "/tmax_mesh.host.v1.HostService/Connect"
FORWARD, DROP = "forward", "drop"


@dataclass
class Sent:
    """One frame a node sent through the relay, as the relay saw it."""

    sender: bytes  # the node id the stream registered as
    to: bytes
    message_id: bytes
    data: bytes  # the envelope (RelaySend) or the signed ack (AckSend), exact bytes


@dataclass
class _Stream:
    node_id: bytes
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)


class EvilRelay:
    """A relay that forwards by default and lets the test drop, hold and inject."""

    def __init__(self) -> None:
        self.sends: list[Sent] = []  # every RelaySend, in arrival order
        self.acks: list[Sent] = []  # every AckSend, in arrival order
        self.frames: list[bytes] = []  # every NodeFrame's bytes, as received
        self.on_send: Callable[[Sent], str] = lambda _s: FORWARD
        self.on_ack: Callable[[Sent], str] = lambda _s: FORWARD
        self._streams: dict[bytes, _Stream] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="evil-relay", daemon=True)
        self._server: grpc.aio.Server | None = None
        self.port = 0

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> EvilRelay:
        self._thread.start()
        self._call(self._start()).result(10)
        return self

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._call(self._server.stop(0)).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> EvilRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"grpc://127.0.0.1:{self.port}"

    def registered(self) -> set[bytes]:
        return set(self._streams)

    # -- what the test does -----------------------------------------------------

    def deliver(self, to: bytes, sender: bytes, message_id: bytes, envelope: bytes) -> None:
        """Hand ``to`` an envelope as if ``sender`` had relayed it."""
        frame = host_pb2.HostFrame(deliver={"from": sender, "message_id": message_id, "envelope": envelope})
        self._call(self._push(to, frame)).result(10)

    def ack(self, to: bytes, sender: bytes, message_id: bytes, ack: bytes) -> None:
        """Hand ``to`` an ack as if ``sender`` had sent it."""
        frame = host_pb2.HostFrame(ack={"from": sender, "message_id": message_id, "ack": ack})
        self._call(self._push(to, frame)).result(10)

    def forward(self, sent: Sent) -> None:
        """Forward a frame that ``on_send``/``on_ack`` held back."""
        if sent in self.sends:
            self.deliver(sent.to, sent.sender, sent.message_id, sent.data)
        else:
            self.ack(sent.to, sent.sender, sent.message_id, sent.data)

    # -- internals ----------------------------------------------------------------

    def _call(self, coro: Any) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _start(self) -> None:
        handler = grpc.stream_stream_rpc_method_handler(
            self._connect,
            request_deserializer=lambda b: b,  # raw bytes: recorded exactly as sent
            response_serializer=host_pb2.HostFrame.SerializeToString,
        )
        self._server = grpc.aio.server(
            handlers=[
                grpc.method_handlers_generic_handler("tmax_mesh.host.v1.HostService", {"Connect": handler})
            ]
        )
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()

    async def _push(self, to: bytes, frame: host_pb2.HostFrame) -> None:
        stream = self._streams.get(to)
        if stream is not None:
            await stream.queue.put(frame)

    async def _connect(self, requests: Any, context: grpc.aio.ServicerContext) -> Any:
        yield host_pb2.HostFrame(challenge=host_pb2.Challenge(nonce=os.urandom(32), host_id=b"evil"))
        reader = requests.__aiter__()
        first = host_pb2.NodeFrame.FromString(await reader.__anext__())
        if first.WhichOneof("frame") != "register":
            return
        stream = _Stream(first.register.node_id)
        self._streams[stream.node_id] = stream
        yield host_pb2.HostFrame(
            registered=host_pb2.Registered(
                observed_addr=context.peer(),
                limits=host_pb2.Limits(max_frame_bytes=2 << 20, rate_per_s=10_000, burst=10_000),
                connection_id="evil",
            )
        )
        pump = asyncio.create_task(self._read(reader, stream))
        try:
            while True:
                frame = await stream.queue.get()
                if frame is None:
                    return
                yield frame
        finally:
            pump.cancel()
            if self._streams.get(stream.node_id) is stream:
                del self._streams[stream.node_id]

    async def _read(self, reader: Any, stream: _Stream) -> None:
        try:
            async for data in reader:
                self.frames.append(data)
                await self._on_frame(stream, host_pb2.NodeFrame.FromString(data))
        finally:
            await stream.queue.put(None)

    async def _on_frame(self, stream: _Stream, frame: host_pb2.NodeFrame) -> None:
        kind = frame.WhichOneof("frame")
        if kind == "relay_send":
            rs = frame.relay_send
            sent = Sent(stream.node_id, rs.to, _message_id(rs.envelope), rs.envelope)
            self.sends.append(sent)
            if self.on_send(sent) == FORWARD:
                await self._push(
                    rs.to,
                    host_pb2.HostFrame(
                        deliver={
                            "from": stream.node_id,
                            "message_id": sent.message_id,
                            "envelope": rs.envelope,
                        }
                    ),
                )
        elif kind == "ack_send":
            a = frame.ack_send
            sent = Sent(stream.node_id, a.to, a.message_id, a.ack)
            self.acks.append(sent)
            if self.on_ack(sent) == FORWARD:
                await self._push(
                    a.to,
                    host_pb2.HostFrame(
                        ack={"from": stream.node_id, "message_id": a.message_id, "ack": a.ack}
                    ),
                )
        elif kind == "ping":
            await stream.queue.put(host_pb2.HostFrame(pong=host_pb2.Pong(time_ms=frame.ping.time_ms)))
        elif kind == "lookup":
            await stream.queue.put(
                host_pb2.HostFrame(
                    lookup_result=host_pb2.LookupResult(target=frame.lookup.target, found=False)
                )
            )


def _message_id(envelope: bytes) -> bytes:
    try:
        return mesh_pb2.EnvelopeHeader.FromString(mesh_pb2.Envelope.FromString(envelope).header).message_id
    except Exception:
        return b""
