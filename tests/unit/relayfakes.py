"""Stand-ins for the relay transport's unit tests: a fake node with the parts
of NodeAPI the transport uses, in-process hosts (real gRPC servers on
127.0.0.1, no subprocess; or a scripted hostile one) and transports stopped
after each test."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

from tests.unit.hostilehost import HostileHost, Script
from tmax_core import envelope as env
from tmax_core.crypto import to_checksum
from tmax_core.identity import NodeIdentity
from tmax_core.model import Friend, IngressSource
from tmax_mesh_relay import wire
from tmax_mesh_relay.host import build_server, default_settings, limits_from
from tmax_mesh_relay.hub import Hub
from tmax_mesh_relay.transport import RelayTransport


class FakeNode:
    """The parts of NodeAPI (tmax_core.plugin) the relay transport uses."""

    def __init__(self, relays: list[str], endpoints: list[str] = (), ca_file: str = "") -> None:
        self.identity = NodeIdentity.generate()
        self.node_id_hex = to_checksum(self.identity.node_id)
        self.friends: dict[bytes, Friend] = {}
        self.friend_listeners: list[Callable[[], None]] = []
        self.transports: list[Any] = []
        self.reconnected: list[str] = []
        self.config = SimpleNamespace(get={"relay.ca_file": ca_file}.get)
        self._relays = relays
        self._endpoints = list(endpoints)
        self.envelopes: list[tuple[bytes, IngressSource]] = []
        self.acks: list[tuple[bytes, bytes]] = []
        self.unanswered: set[bytes] = set()  # message ids ingress does not answer

    def transport(self, name: str) -> Any:
        return next((t for t in self.transports if t.name == name), None)

    def transport_reconnected(self, name: str) -> None:
        self.reconnected.append(name)

    def duration_ms(self, key: str) -> int:
        return 1000

    def relay_hosts(self) -> list[str]:
        return list(self._relays)

    def rendezvous_endpoints(self) -> list[str]:
        return list(self._endpoints)

    def befriend(self, other: FakeNode, relay_hosts: list[str]) -> Friend:
        friend = Friend(
            node_id=other.identity.node_id, public_key=other.identity.public_key, relay_hosts=relay_hosts
        )
        self.friends[friend.node_id] = friend
        for listener in self.friend_listeners:
            listener()
        return friend

    async def handle_envelope(self, data: bytes, source: IngressSource) -> bytes:
        self.envelopes.append((data, source))
        parsed = env.parse(data, len(data))
        if parsed.message_id in self.unanswered:
            return b""
        return env.make_ack(
            self.identity,
            message_id=parsed.message_id,
            to_node_id=parsed.from_node_id,
            envelope_hash=parsed.digest,
            status=1,
        )

    async def handle_ack(self, ack: bytes, from_node_id: bytes) -> None:
        self.acks.append((ack, from_node_id))


StartHost = Callable[..., Awaitable[tuple[str, Hub]]]
StartTransport = Callable[[FakeNode], Awaitable[RelayTransport]]


@contextlib.asynccontextmanager
async def relay_hosts() -> AsyncIterator[StartHost]:
    """``await start(**changes)`` starts a host with those of its default
    :class:`HostLimits` changed and returns its URL and hub;
    every host started is shut down on exit."""
    running: list[tuple[Hub, Any]] = []

    async def start(**changes: Any) -> tuple[str, Hub]:
        settings = default_settings()
        settings.override("listen", "127.0.0.1:0")
        hub = Hub(
            dataclasses.replace(limits_from(settings), **changes), wire.HostIdentity(b"unit-test-host", [])
        )
        server, _health, bound, _cert = build_server(hub, settings)
        hub.host = wire.HostIdentity(b"unit-test-host", [f"grpc://{bound}"])
        await server.start()
        running.append((hub, server))
        return f"grpc://{bound}", hub

    try:
        yield start
    finally:
        for hub, server in running:
            await hub.shutdown()
            await server.stop(0)


@contextlib.asynccontextmanager
async def relay_transports() -> AsyncIterator[StartTransport]:
    """``await start(node)`` starts a relay transport for ``node`` (one of its
    ``transports``); every transport started is stopped on exit."""
    transports: list[RelayTransport] = []

    async def start(node: FakeNode) -> RelayTransport:
        transport = RelayTransport(node)
        node.transports.append(transport)
        await transport.start()
        transports.append(transport)
        return transport

    try:
        yield start
    finally:
        for transport in transports:
            await transport.stop()


@contextlib.asynccontextmanager
async def hostile_relay(script: Script) -> AsyncIterator[RelayTransport]:
    """A started relay transport of a :class:`FakeNode` whose one relay host is a
    :class:`HostileHost` playing ``script``; on exit the transport is stopped, then the host."""
    with HostileHost(script) as host:
        async with relay_transports() as start:
            yield await start(FakeNode([host.url]))


def seal(sender: FakeNode, recipient: FakeNode, body: bytes = b"hi") -> bytes:
    return env.seal(
        sender.identity,
        to_node_id=recipient.identity.node_id,
        to_public_key=recipient.identity.public_key,
        scope="message",
        content_type="text/plain",
        body=body,
    )


def connected(t: RelayTransport) -> bool:
    return t.status()["state"] == "connected"
