"""A raw, blocking client of ``tmax-host``'s Connect stream that writes *bytes*
(so a test can send anything, including frames that are not protobuf at all)
and reads ``HostFrame`` objects from a background thread with timeouts.

The asyncio ``HostSession`` of the relay plugin speaks the protocol correctly;
this one exists to speak it wrongly, from hypothesis tests that are sync.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from tmax_core.identity import NodeIdentity
from tmax_mesh_relay import wire
from tmax_mesh_relay.proto import host_pb2

CONNECT = "/tmax_mesh.host.v1.HostService/Connect"
# Error frame codes the host documents (docs/relay.md, tmax_mesh_relay.hub).
ERROR_CODES = frozenset(
    {
        "not_registered",
        "bad_registration",
        "id_key_mismatch",
        "bad_signature",
        "wrong_url",
        "wrong_certificate",
        "malformed",
        "too_large",
        "sender_mismatch",
        "unknown_recipient",
        "queue_full",
        "rate_limited",
        "superseded",
        "register_timeout",
        "idle_timeout",
        "shutting_down",
    }
)
# How a stream the host gave up on may end: UNAUTHENTICATED (registration
# refused), INVALID_ARGUMENT (bytes that are not a NodeFrame), RESOURCE_EXHAUSTED
# (beyond gRPC's message limit), UNAVAILABLE (closed by the host).
END_CODES = frozenset(
    {
        "OK",
        "UNAUTHENTICATED",
        "RESOURCE_EXHAUSTED",
        "UNAVAILABLE",
        "INVALID_ARGUMENT",
        "CANCELLED",
    }
)


@dataclass
class End:
    """The stream ended: ``code`` is the gRPC status name (``OK`` for a clean EOF)."""

    code: str
    details: str = ""


def channel(target: str) -> grpc.Channel:
    return grpc.insecure_channel(
        target,
        options=[
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.use_local_subchannel_pool", 1),
        ],
    )


class RawStream:
    """One Connect call; ``send`` takes bytes, ``recv`` returns a HostFrame or :class:`End`."""

    def __init__(self, chan: grpc.Channel, timeout: float = 120.0) -> None:
        self._out: queue.Queue[bytes | None] = queue.Queue()
        self._in: queue.Queue[host_pb2.HostFrame | End] = queue.Queue()
        self.ended: End | None = None
        method = chan.stream_stream(CONNECT, response_deserializer=host_pb2.HostFrame.FromString)
        self.call = method(self._requests(), timeout=timeout)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _requests(self) -> Iterator[bytes]:
        while (item := self._out.get()) is not None:
            yield item

    def _read(self) -> None:
        try:
            for frame in self.call:
                self._in.put(frame)
            self._in.put(End("OK"))
        except grpc.RpcError as err:
            self._in.put(End(err.code().name, err.details() or ""))

    def send(self, data: bytes | host_pb2.NodeFrame) -> None:
        if not isinstance(data, bytes):
            data = data.SerializeToString()
        self._out.put(data)

    def recv(self, timeout: float = 5.0) -> host_pb2.HostFrame | End:
        """The next frame, skipping host pings; raises ``queue.Empty`` on timeout."""
        if self.ended is not None:
            return self.ended
        while True:
            item = self._in.get(timeout=timeout)
            if isinstance(item, End):
                self.ended = item
                return item
            if item.WhichOneof("frame") != "ping":
                return item

    def expect(self, kind: str, timeout: float = 5.0) -> host_pb2.HostFrame:
        item = self.recv(timeout)
        assert not isinstance(item, End), f"stream ended ({item}) while waiting for {kind}"
        assert item.WhichOneof("frame") == kind, item
        return item

    def register(
        self, identity: NodeIdentity, endpoints: list[str] = (), allow: list[bytes] = (), *, url: str
    ) -> None:
        """Register ``identity`` on the host dialed as ``url`` (its grpc:// URL)."""
        challenge = self.expect("challenge").challenge
        reg = wire.make_register(identity, challenge, list(endpoints), list(allow), relay_url=url)
        self.send(host_pb2.NodeFrame(register=reg))
        self.expect("registered")

    def close(self) -> None:
        self._out.put(None)
        self.call.cancel()
        self._reader.join(5)


@contextlib.contextmanager
def stream(chan: grpc.Channel) -> Iterator[RawStream]:
    s = RawStream(chan)
    try:
        yield s
    finally:
        s.close()
