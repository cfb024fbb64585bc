"""Direct node-to-node delivery: the PeerService server and the core
``direct`` transport that dials a friend's known endpoints.

Both sides move raw envelope/ack bytes (no protobuf round trip) so what is
verified is exactly what was sent. The transport sends batches over one
``DeliverStream`` per endpoint (:mod:`tmax_core.peerstream`); the unary
methods serve single envelopes and probes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from tmax_core.crypto import to_checksum
from tmax_core.errors import MeshError
from tmax_core.model import Friend, IngressSource
from tmax_core.peerstream import PeerStream, serve_stream
from tmax_core.printable import bounded_printable
from tmax_core.proto import mesh_pb2

if TYPE_CHECKING:
    from tmax_core.nodeports import PeerHost

log = logging.getLogger("tmax_mesh.peer")

SERVICE = "tmax_mesh.v1.PeerService"
DELIVER = f"/{SERVICE}/Deliver"
DELIVER_BATCH = f"/{SERVICE}/DeliverBatch"
DELIVER_STREAM = f"/{SERVICE}/DeliverStream"
ENVELOPE_OVERHEAD = 64 * 1024  # headers, keys, signature and invite around the body
# The most often a sender pings an established connection to a peer (see
# channel_options); peer servers accept pings that often.
MIN_PING_INTERVAL_MS = 100
PEER_MAX_STREAMS = 8  # calls at once on one connection to the peer listener
PEER_HANDSHAKE_TIMEOUT_MS = 10_000  # a connection must start HTTP/2 within this
PEER_IDLE_MS = 300_000  # a connection with no call open is closed after this


def grpc_options(max_bytes: int) -> list[tuple[str, Any]]:
    size = max_bytes + ENVELOPE_OVERHEAD
    return [
        ("grpc.max_receive_message_length", size),
        ("grpc.max_send_message_length", size),
        ("grpc.so_reuseport", 0),
    ]


def server_options(max_bytes: int, max_connections: int) -> list[tuple[str, Any]]:
    """PeerService: senders' liveness pings are welcome (gRPC's default answers
    a ping more often than every 5 minutes on a quiet connection with GOAWAY
    "too_many_pings"). A ping costs the server an 8-byte answer in gRPC's core,
    no Python, so it is not worth striking anyone out for.

    Anyone who can reach the listener can connect, so what one can hold is
    bounded in gRPC's core, before any Python runs: at most
    ``max_connections`` connections (gRPC closes further ones as they are
    accepted), ``PEER_MAX_STREAMS`` calls at once per connection (a sender
    needs one delivery stream plus a probe or two), a connection that never
    completes its HTTP/2 preface is closed after ``PEER_HANDSHAKE_TIMEOUT_MS``
    and one with no call open after ``PEER_IDLE_MS``. The calls in flight in
    all are bounded by the server's ``maximum_concurrent_rpcs`` (see
    :func:`start_peer_server`). None of this is per source: one stranger
    holding every slot (each with a call open) keeps friends from dialling
    direct, and they then deliver through the relay."""
    return [
        *grpc_options(max_bytes),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", MIN_PING_INTERVAL_MS),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.max_allowed_incoming_connections", max_connections),
        ("grpc.max_concurrent_streams", PEER_MAX_STREAMS),
        ("grpc.server_handshake_timeout_ms", PEER_HANDSHAKE_TIMEOUT_MS),
        ("grpc.max_connection_idle_ms", PEER_IDLE_MS),
    ]


def channel_options(max_bytes: int, liveness_s: float) -> list[tuple[str, Any]]:
    """A sender's channel to a peer: while a call is open (the delivery stream
    always is), HTTP/2 pings every ``liveness_s / 2`` that must be answered
    within ``liveness_s / 2``. A path that starts dropping packets silently (a
    firewall, a dead NAT mapping) is found within about ``liveness_s``, so the
    batches waiting on it fail and go by relay, instead of waiting out their
    call deadline."""
    half_ms = max(MIN_PING_INTERVAL_MS, int(liveness_s * 500))
    return [
        *grpc_options(max_bytes),
        ("grpc.keepalive_time_ms", half_ms),
        ("grpc.keepalive_timeout_ms", half_ms),
        ("grpc.http2.max_pings_without_data", 0),
    ]


def source_from_peer(transport: str, peer: str) -> IngressSource:
    """Key direct traffic by the remote IP (the port changes per connection)."""
    host = peer.rsplit(":", 1)[0] if peer.startswith(("ipv4:", "ipv6:")) else peer
    return IngressSource(transport=transport, peer=host)


async def start_peer_server(node: PeerHost, listen: str) -> tuple[grpc.aio.Server, str]:
    """Serve PeerService on ``listen`` (HOST:PORT, port 0 allowed); returns the bound address."""

    async def deliver(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return await node.handle_envelope(request, source_from_peer("direct", context.peer()))

    async def deliver_batch(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            batch = mesh_pb2.EnvelopeBatch.FromString(request)
        except DecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not an EnvelopeBatch")
        source = source_from_peer("direct", context.peer())
        return await node.handle_envelope_batch(list(batch.envelopes), source, batch.nonce)

    async def deliver_stream(requests: Any, context: grpc.aio.ServicerContext) -> None:
        await serve_stream(node, requests, context, source_from_peer("direct", context.peer()))

    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Deliver": grpc.unary_unary_rpc_method_handler(deliver),
            "DeliverBatch": grpc.unary_unary_rpc_method_handler(deliver_batch),
            "DeliverStream": grpc.stream_stream_rpc_method_handler(deliver_stream),
        },
    )
    max_connections = node.config.get("node.peer_max_connections")
    server = grpc.aio.server(
        options=server_options(node.config.get("messages.max_bytes"), max_connections),
        # Beyond this, calls are refused with RESOURCE_EXHAUSTED (each sender keeps one stream open).
        maximum_concurrent_rpcs=2 * max_connections,
    )
    server.add_generic_rpc_handlers((handler,))
    health = health_aio.HealthServicer()
    await health.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    host = listen.rpartition(":")[0]
    try:
        bound = server.add_insecure_port(listen)
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise MeshError(f"cannot listen on {listen} (address in use or not available)", code="listen")
    await server.start()
    return server, f"{host}:{bound}"


class PeerLink(Protocol):
    """A connection to one friend made outside gRPC (the direct plugin's
    punched connections) that carries batches the way ``DeliverStream`` does."""

    endpoint: str  # the friend's address on it, HOST:PORT
    error: Exception | None  # set once the link has ended

    async def deliver(self, envelopes: list[bytes], timeout: float) -> bytes:
        """Send one batch; returns the friend's serialized batch SignedAck."""

    def close(self) -> None: ...


class DirectTransport:
    """Dial a friend's endpoints: those it advertised (invite or contact card)
    plus any a plugin discovered (``discovered``, e.g. through a relay's
    rendezvous lookup). A friend with a ``links`` entry (a connection a plugin
    made, e.g. by hole punching) is sent to on it first. An endpoint that fails is skipped for a while (longer
    after each failure in a row), so the next transport (the relay) carries
    the message without waiting again. One send dials at most
    ``MAX_DIALS_PER_SEND`` endpoints: a friend listing many dead ones costs a
    few connection attempts per send, not one per entry."""

    name = "direct"
    cost = 10
    CALL_TIMEOUT_S = 3.0  # a silently dropped path must fall back to the relay quickly
    PER_ENVELOPE_S = 0.005  # extra call time a batch may take per envelope
    RETRY_AFTER_FAILURE_S = 5.0  # after one failure; doubles per failure in a row...
    MAX_RETRY_AFTER_FAILURE_S = 300.0  # ...up to this
    MAX_DIALS_PER_SEND = 4

    def __init__(self, node: PeerHost) -> None:
        self.node = node
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._streams: dict[str, PeerStream] = {}
        self._failed_until: dict[str, float] = {}
        self._failures: dict[str, int] = {}  # endpoint -> failures in a row
        self._answered_from: dict[bytes, str] = {}  # friend node id -> endpoint of its last answer
        self._max_bytes = node.config.get("messages.max_bytes")
        self.discovered: dict[bytes, list[str]] = {}
        self.links: dict[bytes, PeerLink] = {}  # friend node id -> its punched connection
        # What plugins know about the path to a friend, shown per friend by status()
        # (e.g. the last punch attempt), and about this transport (shown at the top).
        self.notes: dict[bytes, dict[str, Any]] = {}
        self.status_extra: dict[str, Any] = {}
        self.sent = 0
        self.set_dial_timeout(1.0)

    def set_dial_timeout(self, seconds: float) -> None:
        """How long a connection attempt may take, and how long an established
        connection may go unanswered (its liveness pings), before the endpoint
        counts as failed and the next transport carries the message. Applies to
        channels made from now on."""
        self.dial_timeout_s = seconds
        self._options = channel_options(self._max_bytes, seconds)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        for link in self.links.values():
            link.close()
        self.links.clear()
        for stream in self._streams.values():
            stream.close()
        self._streams.clear()
        await asyncio.gather(*(ch.close() for ch in self._channels.values()), return_exceptions=True)
        self._channels.clear()

    def endpoints(self, friend: Friend) -> list[str]:
        extra = self.discovered.get(friend.node_id, [])
        return list(dict.fromkeys([*friend.endpoints, *extra]))

    def healthy(self, endpoint: str) -> bool:
        return self._failed_until.get(endpoint, 0) <= time.monotonic()

    def mark_failed(self, endpoint: str, for_s: float | None = None) -> None:
        """Skip ``endpoint`` for ``for_s`` seconds (default: ``RETRY_AFTER_FAILURE_S``,
        doubled per earlier failure in a row, capped). A failure while the
        endpoint is already skipped (the other sends in flight when it went
        down) does not count again."""
        failures = self._failures.get(endpoint, 0)
        if self.healthy(endpoint):  # sends failing together on one outage count once
            failures += 1
            self._failures[endpoint] = failures
        failures = max(failures, 1)
        if for_s is None:
            cap = max(self.MAX_RETRY_AFTER_FAILURE_S, self.RETRY_AFTER_FAILURE_S)
            for_s = min(self.RETRY_AFTER_FAILURE_S * 2 ** min(failures - 1, 16), cap)
        until = time.monotonic() + for_s
        self._failed_until[endpoint] = max(until, self._failed_until.get(endpoint, 0))
        self._drop(endpoint)

    def mark_healthy(self, endpoint: str) -> None:
        self._failed_until.pop(endpoint, None)
        self._failures.pop(endpoint, None)

    def answer_unverifiable(self, friend: Friend) -> None:
        """The last answer from ``friend``'s endpoint did not carry its signed ack:
        whoever listens there is not (only) the friend, so skip that endpoint
        until it is due again (the direct plugin's probe checks the signature)."""
        endpoint = self._answered_from.pop(friend.node_id, None)
        link = self.links.get(friend.node_id)
        if link is not None and endpoint == link.endpoint:
            log.warning(
                "punched connection %s answered for %s without its signed ack",
                endpoint,
                to_checksum(friend.node_id),
            )
            link.close()
        elif endpoint is not None:
            log.warning("%s answered for %s without its signed ack", endpoint, to_checksum(friend.node_id))
            self.mark_failed(endpoint)

    def link(self, friend: Friend) -> PeerLink | None:
        """The friend's punched connection, if it is still up."""
        link = self.links.get(friend.node_id)
        if link is not None and link.error is not None:
            del self.links[friend.node_id]
            return None
        return link

    def can_reach(self, friend: Friend) -> bool:
        return self.link(friend) is not None or any(self.healthy(ep) for ep in self.endpoints(friend))

    async def send(self, friend: Friend, envelope: bytes, timeout: float) -> bytes:
        call_timeout = min(timeout, self.CALL_TIMEOUT_S)

        def deliver(endpoint: str) -> Awaitable[bytes]:
            return self.channel(endpoint).unary_unary(DELIVER)(envelope, timeout=call_timeout)

        return await self._call(friend, deliver)

    async def send_batch(self, friend: Friend, envelopes: list[bytes], timeout: float) -> bytes:
        """Several envelopes in one batch on the endpoint's stream; returns the
        serialized batch SignedAck."""
        call_timeout = min(timeout, self.CALL_TIMEOUT_S + len(envelopes) * self.PER_ENVELOPE_S)
        link = self.link(friend)
        if link is not None:
            try:
                answer = await link.deliver(envelopes, call_timeout)
            except (ConnectionError, TimeoutError) as err:
                link.close()  # the punched connection is gone: the plugin punches again later
                if not any(self.healthy(ep) for ep in self.endpoints(friend)):
                    raise ConnectionError(f"{link.endpoint}: {_describe(err)}") from None
            else:
                self._answered_from[friend.node_id] = link.endpoint
                self.sent += 1
                return answer
        return await self._call(friend, lambda ep: self._stream(ep).deliver(envelopes, call_timeout))

    def _stream(self, endpoint: str) -> PeerStream:
        stream = self._streams.get(endpoint)
        if stream is None or stream.error is not None:
            stream = PeerStream(self.channel(endpoint).stream_stream(DELIVER_STREAM)())
            self._streams[endpoint] = stream
        return stream

    async def _call(self, friend: Friend, send: Callable[[str], Awaitable[bytes]]) -> bytes:
        last: Exception = ConnectionError("no endpoint")
        dials = 0
        for endpoint in self.endpoints(friend):
            if not self.healthy(endpoint):
                continue
            channel = self.channel(endpoint)
            if channel.get_state() != grpc.ChannelConnectivity.READY:
                if dials == self.MAX_DIALS_PER_SEND:
                    break  # the rest wait for a later send; the next transport carries this one
                dials += 1
            try:
                if channel.get_state(try_to_connect=True) != grpc.ChannelConnectivity.READY:
                    try:
                        await asyncio.wait_for(channel.channel_ready(), self.dial_timeout_s)
                    except TimeoutError:
                        raise ConnectionError("dial timed out") from None
                answer = await send(endpoint)
            except (grpc.aio.AioRpcError, grpc.aio.UsageError, TimeoutError, ConnectionError) as err:
                # UsageError: a concurrent send's failure closed this shared channel.
                self.mark_failed(endpoint)
                last = ConnectionError(f"{endpoint}: {_describe(err)}")
                continue
            except asyncio.CancelledError as err:
                # A call in flight when a concurrent failure (another send, a
                # health probe) closes the shared channel is cancelled by
                # grpc.aio. Unless this task itself is being cancelled, that is
                # a failed attempt like any other: fall back to the next transport.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                self.mark_failed(endpoint)
                last = ConnectionError(f"{endpoint}: {_describe(err)}")
                continue
            self.mark_healthy(endpoint)
            self._answered_from[friend.node_id] = endpoint
            self.sent += 1
            return answer
        raise last

    def status(self) -> dict[str, Any]:
        friends = {}
        for friend in self.node.friends.values():
            endpoints = self.endpoints(friend)
            link = self.link(friend)
            notes = self.notes.get(friend.node_id, {})
            if endpoints or link is not None or notes:
                healthy = [ep for ep in endpoints if self.healthy(ep)]
                via = "punched" if link is not None else "dialed" if healthy else None
                friends[friend.alias or to_checksum(friend.node_id)] = {
                    "path": "direct" if via else "unreachable",
                    "via": via,
                    "endpoints": endpoints if link is None else [link.endpoint, *endpoints],
                    "healthy": healthy if link is None else [link.endpoint, *healthy],
                    **notes,
                }
        return {
            "state": "ready",
            "channels": len(self._channels),
            "sent": self.sent,
            **self.status_extra,
            "friends": friends,
        }

    def channel(self, endpoint: str) -> grpc.aio.Channel:
        """The cached channel to ``endpoint`` (created on first use)."""
        channel = self._channels.get(endpoint)
        if channel is None:
            channel = grpc.aio.insecure_channel(endpoint, options=self._options)
            self._channels[endpoint] = channel
        return channel

    def _drop(self, endpoint: str) -> None:
        stream = self._streams.pop(endpoint, None)
        if stream is not None:
            stream.close()
        channel = self._channels.pop(endpoint, None)
        if channel is not None:
            task = asyncio.ensure_future(channel.close())
            task.add_done_callback(lambda _t: None)


def _describe(err: BaseException) -> str:
    """``err`` as the one line recorded for the message (``msg status``) and
    logged; the status details are the answering peer's text, so escaped and cut."""
    if isinstance(err, grpc.aio.AioRpcError):
        return f"{err.code().name} {bounded_printable(err.details() or '')}".strip()
    if isinstance(err, ConnectionError):
        return str(err)
    if isinstance(err, (grpc.aio.UsageError, asyncio.CancelledError)):
        return "connection closed after another send to it failed"
    return "no answer in time"
