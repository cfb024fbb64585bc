"""The low-level client side of the host protocol: open a Connect stream, read
the challenge, register, then read and write frames.

The node's relay transport builds on it; so can load generators and tests
that need to speak the protocol directly (including speaking it wrongly).
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from tmax_core.identity import NodeIdentity
from tmax_core.printable import bounded_printable
from tmax_mesh_relay import wire
from tmax_mesh_relay.proto import host_pb2, host_pb2_grpc

HANDSHAKE_TIMEOUT_S = 10.0


def channel_options(max_frame_bytes: int, *, keepalive_ms: int = 20_000) -> list[tuple[str, Any]]:
    size = 2 * max_frame_bytes + 64 * 1024
    return [
        ("grpc.max_receive_message_length", size),
        ("grpc.max_send_message_length", size),
        # HTTP/2 pings detect a dead host without application traffic.
        ("grpc.keepalive_time_ms", keepalive_ms),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        # One channel per session: never share a TCP connection with another
        # channel of this process (matters for tests and load generators).
        ("grpc.use_local_subchannel_pool", 1),
    ]


def describe_rpc_error(err: BaseException) -> str:
    """One line for an RPC failure (status code and details). The details are
    the host's text: escaped and cut (:func:`~tmax_core.printable.bounded_printable`)."""
    if isinstance(err, grpc.aio.AioRpcError):
        return f"{err.code().name}: {bounded_printable(err.details() or '')}".strip()
    return str(err) or type(err).__name__


class HostSession:
    """One Connect stream. ``open`` dials and reads the Challenge; ``register``
    answers it. Frames are then exchanged with ``write``/``read``."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        call: Any,
        challenge: host_pb2.Challenge,
        url: str,
        cert_sha256: bytes = b"",
    ) -> None:
        self.channel = channel
        self.call = call
        self.challenge = challenge
        self.url = url
        self.cert_sha256 = cert_sha256
        self.registered: host_pb2.Registered | None = None
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(
        cls,
        target: str,
        credentials: grpc.ChannelCredentials | None = None,
        *,
        max_frame_bytes: int = 2 * 1024 * 1024,
        timeout: float = HANDSHAKE_TIMEOUT_S,
        url: str | None = None,
        cert_sha256: bytes = b"",
    ) -> HostSession:
        """Dial ``target`` (HOST:PORT) and read the host's Challenge.

        ``url`` is the relay URL the registration is signed for (default
        ``grpc://TARGET``, or ``grpcs://`` with credentials) and ``cert_sha256``
        the host's certificate hash with TLS (see ``wire.certificate_sha256``).
        Raises ``ConnectionError`` (with the gRPC status text) if the host
        cannot be reached or does not speak first with a Challenge.
        """
        options = channel_options(max_frame_bytes)
        if credentials is None:
            channel = grpc.aio.insecure_channel(target, options=options)
        else:
            channel = grpc.aio.secure_channel(target, credentials, options=options)
        call = host_pb2_grpc.HostServiceStub(channel).Connect()
        try:
            frame = await asyncio.wait_for(call.read(), timeout)
        except TimeoutError:
            await channel.close()
            raise ConnectionError("no challenge from the host in time") from None
        except grpc.aio.AioRpcError as err:
            await channel.close()
            raise ConnectionError(describe_rpc_error(err)) from None
        if frame is grpc.aio.EOF or frame.WhichOneof("frame") != "challenge":
            await channel.close()
            raise ConnectionError("the host did not send a challenge")
        if url is None:
            url = f"{'grpc' if credentials is None else 'grpcs'}://{target}"
        return cls(channel, call, frame.challenge, url, cert_sha256)

    async def register(
        self,
        identity: NodeIdentity,
        endpoints: list[str],
        allow: list[bytes],
        timeout: float = HANDSHAKE_TIMEOUT_S,
    ) -> host_pb2.Registered:
        """Sign and send Register; returns Registered or raises RegisterError / ConnectionError."""
        await self.write(
            host_pb2.NodeFrame(
                register=wire.make_register(
                    identity,
                    self.challenge,
                    endpoints,
                    allow,
                    relay_url=self.url,
                    cert_sha256=self.cert_sha256,
                )
            )
        )
        try:
            frame = await asyncio.wait_for(self.read(), timeout)
        except TimeoutError:
            raise ConnectionError("no answer to the registration in time") from None
        if frame is None:
            raise ConnectionError("the host closed the stream during registration")
        kind = frame.WhichOneof("frame")
        if kind == "error":
            error = frame.error  # the host's text: escaped and cut
            raise wire.RegisterError(bounded_printable(error.code), bounded_printable(error.detail))
        if kind != "registered":
            raise ConnectionError(f"unexpected {kind} frame instead of Registered")
        self.registered = frame.registered
        return frame.registered

    async def write(self, frame: host_pb2.NodeFrame) -> None:
        """Send one frame; ``ConnectionError`` if the stream is gone."""
        try:
            async with self._write_lock:
                await self.call.write(frame)
        except grpc.aio.AioRpcError as err:
            raise ConnectionError(describe_rpc_error(err)) from None
        except (asyncio.InvalidStateError, grpc.aio.UsageError) as err:
            raise ConnectionError(f"stream closed ({err})") from None

    async def read(self) -> host_pb2.HostFrame | None:
        """The next frame, ``None`` at the end of the stream; ``ConnectionError`` if it failed."""
        try:
            frame = await self.call.read()
        except grpc.aio.AioRpcError as err:
            raise ConnectionError(describe_rpc_error(err)) from None
        return None if frame is grpc.aio.EOF else frame

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close()
