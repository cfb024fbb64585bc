"""The ``direct`` plugin's upgrader and transport ordering, in-process: a real
PeerService on 127.0.0.1 answering with real signed acks, a fake relay for
lookups.

The process-level behaviour (rendezvous through a real host, NAT, firewall)
is in tests/e2e/test_direct.py and tests/natlab/test_nat_upgrade.py.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio

from tests.polling import wait_for_async
from tmax_core import envelope as env
from tmax_core.crypto import to_checksum
from tmax_core.identity import NodeIdentity
from tmax_core.model import Friend
from tmax_core.peer import DELIVER_BATCH, DirectTransport, start_peer_server
from tmax_core.plugin.helpers import PluginStates, TokenBucket
from tmax_mesh_direct import plugin
from tmax_mesh_direct.upgrade import DIRECT, PROBES_AT_ONCE, PROBES_PER_FRIEND, RELAY, Upgrader

MAX_BYTES = 1 << 20


class FakeConfig:
    def get(self, key: str) -> Any:
        return {"messages.max_bytes": MAX_BYTES, "node.peer_max_connections": 256, "direct.punch": False}[key]


class FakeNode:
    """What DirectTransport, the peer server and the Upgrader (NodeAPI) use of a node.

    ``hold=True``: envelopes that arrive are never answered (``arrived`` is set)."""

    def __init__(self, *, probe_interval_ms: int = 60_000, hold: bool = False) -> None:
        self.identity = NodeIdentity.generate()
        self.config = FakeConfig()
        self.friends: dict[bytes, Friend] = {}
        self.friend_listeners: list[Any] = []
        self.plugin_state = PluginStates().get
        self.transports: list[Any] = []
        self.probe_interval_ms = probe_interval_ms
        self.hold = hold
        self.arrived = asyncio.Event()
        self.delivered: list[bytes] = []

    def duration_ms(self, key: str) -> int:
        return {
            "direct.dial_timeout": 500,
            "direct.probe_interval": self.probe_interval_ms,
            "relay.reconnect_max": 30_000,
        }[key]

    def transport(self, name: str) -> Any:
        return next((t for t in self.transports if t.name == name), None)

    async def _arrive(self, envelopes: list[bytes]) -> None:
        self.arrived.set()
        if self.hold:
            await asyncio.Event().wait()  # never answers
        self.delivered += envelopes

    async def handle_envelope(self, data: bytes, source: Any) -> bytes:
        await self._arrive([data])
        return b"ack:" + data

    async def handle_envelope_batch(self, envelopes: list[bytes], source: Any, nonce: bytes = b"") -> bytes:
        if envelopes:
            await self._arrive(envelopes)
        return env.make_ack_batch(self.identity, to_node_id=b"", entries=[], nonce=nonce)

    def as_friend(self, endpoints: list[str] | None = None) -> Friend:
        """This node as someone's friend."""
        return Friend(
            node_id=self.identity.node_id, public_key=self.identity.public_key, endpoints=endpoints or []
        )


class FakeRelay:
    """``RelayTransport.lookup`` stand-in: answers from ``answers`` or raises ``error``."""

    def __init__(self) -> None:
        self.answers: dict[bytes, list[str]] = {}
        self.error: Exception | None = None
        self.lookups: list[bytes] = []

    async def lookup(self, node_id: bytes) -> list[str]:
        self.lookups.append(node_id)
        if self.error is not None:
            raise self.error
        return list(self.answers.get(node_id, []))


def stranger() -> Friend:
    return FakeNode().as_friend()


def dead_endpoint() -> str:
    """A loopback port nothing listens on (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest_asyncio.fixture
async def peer() -> AsyncIterator[tuple[FakeNode, str]]:
    """A real PeerService (with its health service) answering for a fake node."""
    node = FakeNode()
    server, bound = await start_peer_server(node, "127.0.0.1:0")  # type: ignore[arg-type]
    try:
        yield node, bound
    finally:
        await server.stop(0)


@pytest_asyncio.fixture
async def local() -> AsyncIterator[tuple[FakeNode, FakeRelay, DirectTransport, Upgrader]]:
    """The sending side: a fake node with the core direct transport and an upgrader (not started)."""
    node = FakeNode()
    relay = FakeRelay()
    direct = DirectTransport(node)  # type: ignore[arg-type]
    upgrader = Upgrader(node, relay, direct)  # type: ignore[arg-type]
    try:
        yield node, relay, direct, upgrader
    finally:
        upgrader.stop()
        await direct.stop()


async def test_probe_and_lookup_decide_the_path(peer, local) -> None:
    remote, good = peer
    node, relay, direct, upgrader = local
    dead = dead_endpoint()
    f = remote.as_friend()
    node.friends[f.node_id] = f
    assert upgrader.prefers_direct(f) is None  # nothing known yet: leave the default order

    relay.answers[f.node_id] = [dead, good]
    await upgrader.refresh(f)
    assert upgrader.path[f.node_id] == DIRECT and upgrader.prefers_direct(f) is True
    # Every endpoint the host gave is kept, with its health; sends skip the dead one.
    assert direct.endpoints(f) == [dead, good]
    assert not direct.healthy(dead) and direct.healthy(good)
    assert await direct.send(f, b"hello", 5) == b"ack:hello"
    assert f.node_id not in upgrader.errors
    view = direct.status()["friends"][to_checksum(f.node_id)]
    assert view == {"path": "direct", "via": "dialed", "endpoints": [dead, good], "healthy": [good]}

    # The relay cannot answer: the last answer is kept (losing the relay is no reason to drop direct).
    relay.error = ConnectionError("relay down")
    await upgrader.refresh(f)
    assert upgrader.path[f.node_id] == DIRECT and direct.endpoints(f) == [dead, good]

    # Only dead endpoints: relay first, and the failure is explained.
    relay.error = None
    relay.answers[f.node_id] = [dead]
    await upgrader.refresh(f)
    assert upgrader.path[f.node_id] == RELAY and upgrader.prefers_direct(f) is False
    assert dead in upgrader.errors[f.node_id]
    assert not direct.can_reach(f)


async def test_failures_stay_until_a_probe_says_otherwise(peer, local) -> None:
    remote, good = peer
    node, relay, direct, upgrader = local
    f = remote.as_friend()
    node.friends[f.node_id] = f
    relay.answers[f.node_id] = [good]
    await upgrader.refresh(f)
    assert upgrader.prefers_direct(f) is True
    # A failed send marks the endpoint for longer than a probe interval...
    assert upgrader.interval_s < direct.RETRY_AFTER_FAILURE_S
    direct.mark_failed(good)
    assert upgrader.prefers_direct(f) is False and not direct.can_reach(f)
    # ...until the next probe finds it working.
    await upgrader.refresh(f)
    assert upgrader.prefers_direct(f) is True


async def test_send_interrupted_by_a_concurrent_failure_falls_back(local) -> None:
    """A call in flight when its shared channel is closed (another send or a
    probe failed) is a failed attempt (ConnectionError), not a cancellation
    that would end the outbox's send task."""
    silent = FakeNode(hold=True)
    server, bound = await start_peer_server(silent, "127.0.0.1:0")  # type: ignore[arg-type]
    try:
        node, _relay, direct, _upgrader = local
        f = silent.as_friend([bound])
        node.friends[f.node_id] = f
        sending = asyncio.create_task(direct.send(f, b"x", 5))
        await asyncio.wait_for(silent.arrived.wait(), 3)  # the call is in flight
        assert not sending.done()
        direct.mark_failed(bound)  # e.g. a probe failed: closes the shared channel under it
        with pytest.raises(ConnectionError, match="closed"):
            await asyncio.wait_for(sending, 3)
    finally:
        await server.stop(0)


async def test_probe_interrupted_by_a_concurrent_failure_is_a_failure(local) -> None:
    called = asyncio.Event()

    async def hang(request: bytes, context: Any) -> bytes:
        called.set()
        await asyncio.Event().wait()  # never answers
        return b""

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "tmax_mesh.v1.PeerService", {"DeliverBatch": grpc.unary_unary_rpc_method_handler(hang)}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        _node, _relay, direct, upgrader = local
        upgrader.dial_timeout_s = 3.0
        endpoint = f"127.0.0.1:{port}"
        probing = asyncio.create_task(upgrader.probe(endpoint, stranger()))
        await asyncio.wait_for(called.wait(), 3)  # connected, the probe call is in flight
        assert not probing.done()
        direct.mark_failed(endpoint)  # e.g. a send failed: closes the shared channel under it
        error = await asyncio.wait_for(probing, 3)
        assert error is not None and "closed" in error
    finally:
        await server.stop(0)


async def test_probe_reports_why(peer, local) -> None:
    remote, good = peer
    _node, _relay, direct, upgrader = local
    assert await upgrader.probe(good, remote.as_friend()) is None
    # Another node answers at that address (shared NAT, port reused): not healthy for this friend.
    error = await upgrader.probe(good, stranger())
    assert error is not None and "not this friend's node" in error and not direct.healthy(good)
    error = await upgrader.probe(dead_endpoint(), remote.as_friend())
    assert (error and "UNAVAILABLE" in error) or error == "dial timed out"
    # Something that is not a PeerService: no health service there.
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        error = await upgrader.probe(f"127.0.0.1:{port}", remote.as_friend())
        assert error is not None and "UNIMPLEMENTED" in error
    finally:
        await server.stop(0)


async def test_a_replayed_probe_answer_is_refused(peer, local) -> None:
    """Someone on the friend's old port (or on the path) replays an answer the
    friend signed for an earlier probe: it must not pass for the friend now."""
    remote, good = peer
    _node, _relay, direct, upgrader = local
    async with grpc.aio.insecure_channel(good) as channel:
        recorded = await channel.unary_unary(DELIVER_BATCH)(b"", timeout=5)  # an empty batch, answered

    async def replay(_request: bytes, _context: grpc.aio.ServicerContext) -> bytes:
        return recorded

    handler = grpc.unary_unary_rpc_method_handler(replay)
    server = grpc.aio.server(
        handlers=[grpc.method_handlers_generic_handler("tmax_mesh.v1.PeerService", {"DeliverBatch": handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        replayer = f"127.0.0.1:{port}"
        error = await upgrader.probe(replayer, remote.as_friend())
        assert error is not None and "not this friend's node" in error and not direct.healthy(replayer)
    finally:
        await server.stop(0)


async def test_scheduling_new_friends_and_retries(peer) -> None:
    remote, good = peer
    node = FakeNode(probe_interval_ms=60_000)
    relay = FakeRelay()
    direct = DirectTransport(node)  # type: ignore[arg-type]
    upgrader = Upgrader(node, relay, direct)  # type: ignore[arg-type]
    f = remote.as_friend()
    node.friends[f.node_id] = f
    upgrader.start()
    try:
        # A new friend is looked up at once; the host knows nothing yet...
        await wait_for_async(lambda: f.node_id in upgrader.path, 5, what="the first lookup")
        assert upgrader.path[f.node_id] == RELAY
        # ...so it is asked again after about a second, not after the 60 s interval.
        relay.answers[f.node_id] = [good]
        await wait_for_async(
            lambda: upgrader.path.get(f.node_id) == DIRECT, 5, what="the retry finding direct"
        )
        assert len(relay.lookups) == 2
        # A friend that goes away is forgotten.
        del node.friends[f.node_id]
        for listener in node.friend_listeners:
            listener()
        await wait_for_async(lambda: f.node_id not in upgrader.path, 5, what="the removed friend forgotten")
        assert f.node_id not in direct.discovered
    finally:
        upgrader.stop()
        await direct.stop()


async def test_every_lookup_is_paced_by_the_bucket(local) -> None:
    """Lookups take a token each from the pacing bucket (kept below the host's
    lookup limit): three due friends drain a bucket of three that does not refill."""
    node, relay, _direct, upgrader = local
    upgrader.probe = CountingProbes()  # type: ignore[method-assign]
    upgrader._lookups = TokenBucket(rate=1e-9, burst=3)
    for f in (stranger() for _ in range(3)):
        node.friends[f.node_id] = f
    await upgrader._round()
    assert len(relay.lookups) == 3
    assert not upgrader._lookups.can_take()


async def test_select_transport_uses_the_sending_nodes_upgrader(peer) -> None:
    """Several nodes in one process: each keeps its upgrader in its own plugin
    state, and the ordering comes from the node that is sending."""
    _remote, good = peer

    class Other:
        name = "relay"
        cost = 50

    f = stranger()
    relay = Other()
    made = []
    try:
        for path in (DIRECT, RELAY):
            node = FakeNode()
            node.friends[f.node_id] = f
            direct = DirectTransport(node)  # type: ignore[arg-type]
            direct.discovered[f.node_id] = [good]
            upgrader = Upgrader(node, FakeRelay(), direct)  # type: ignore[arg-type]
            upgrader.path[f.node_id] = path
            plugin.state_of(node).upgrader = upgrader
            made.append((node, direct))
        (up, direct_up), (down, direct_down) = made
        select = plugin.tmax_select_transport
        assert select(friend=f, candidates=[direct_up, relay], node=up) == [direct_up, relay]
        assert select(friend=f, candidates=[direct_down, relay], node=down) == [relay, direct_down]
        assert select(friend=f, candidates=[relay], node=up) is None
        assert select(friend=f, candidates=[direct_up, relay], node=FakeNode()) is None
    finally:
        for _node, direct in made:
            await direct.stop()


async def test_node_started_keeps_the_upgrader_per_node() -> None:
    """tmax_node_started finds the transports by name and keeps the upgrader in
    the node's plugin state; tmax_node_stopping stops and forgets it."""
    from tmax_mesh_relay.transport import RelayTransport

    node = FakeNode()
    relay = RelayTransport(node)  # type: ignore[arg-type]
    relay.links = [object()]  # type: ignore[list-item]  # as if a host were configured
    direct = DirectTransport(node)  # type: ignore[arg-type]
    node.transports = [direct, relay]
    other = FakeNode()
    other.transports = [DirectTransport(other)]  # type: ignore[arg-type]  # no relay: nothing to upgrade
    try:
        plugin.tmax_node_started(node=node)
        plugin.tmax_node_started(node=other)
        upgrader = plugin.state_of(node).upgrader
        assert upgrader is not None and upgrader.direct is direct and upgrader.relay is relay
        assert plugin.state_of(other).upgrader is None
        plugin.tmax_node_stopping(node=node)
        assert plugin.state_of(node).upgrader is None
    finally:
        await direct.stop()
        await other.transports[0].stop()


class CountingProbes:
    """Stands in for ``Upgrader.probe``: records each call and how many run at once."""

    def __init__(self, error: str | None = "refused", hold_s: float = 0.02) -> None:
        self.error = error
        self.hold_s = hold_s
        self.calls: list[str] = []
        self.active = 0
        self.peak = 0

    async def __call__(self, endpoint: str, friend: Friend) -> str | None:
        self.calls.append(endpoint)
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(self.hold_s)
        finally:
            self.active -= 1
        return self.error


async def test_lookup_answer_is_screened_like_a_card(local) -> None:
    node, relay, direct, upgrader = local
    f = stranger()
    node.friends[f.node_id] = f
    upgrader.probe = probes = CountingProbes()  # type: ignore[method-assign]
    bad = ["unix:/run/victim.sock", "0.0.0.0:80", "224.0.0.1:80", "[ff02::1]:80"]
    relay.answers[f.node_id] = [*bad, *(f"127.0.0.1:{p}" for p in range(1000, 2000))]
    await upgrader.refresh(f)
    assert upgrader.found[f.node_id] == [f"127.0.0.1:{p}" for p in range(1000, 1032)]
    assert set(probes.calls) <= set(upgrader.found[f.node_id]) and not set(probes.calls) & set(bad)
    assert direct.discovered[f.node_id] == upgrader.found[f.node_id]


async def test_probes_are_bounded_per_friend_and_in_all(local) -> None:
    node, relay, _direct, upgrader = local
    upgrader.probe = probes = CountingProbes()  # type: ignore[method-assign]
    friends = [stranger() for _ in range(8)]
    for f in friends:
        node.friends[f.node_id] = f
        relay.answers[f.node_id] = [f"127.0.0.1:{p}" for p in range(1000, 1010)]
    await upgrader.refresh(friends[0])
    assert len(probes.calls) == 10 and probes.peak == PROBES_PER_FRIEND
    probes.peak = 0
    await asyncio.gather(*(upgrader.refresh(f) for f in friends[1:]))
    assert probes.peak == PROBES_AT_ONCE


async def test_a_probe_round_ends_at_its_deadline(local) -> None:
    node, relay, direct, upgrader = local
    f = stranger()
    node.friends[f.node_id] = f
    endpoints = [f"127.0.0.1:{p}" for p in range(1000, 1032)]
    relay.answers[f.node_id] = endpoints
    upgrader.probe = probes = CountingProbes(hold_s=30)  # type: ignore[method-assign]
    upgrader.round_deadline_s = 0.2
    t0 = time.monotonic()
    await upgrader.refresh(f)
    assert time.monotonic() - t0 < 2
    assert len(probes.calls) == PROBES_PER_FRIEND and probes.active == 0  # the rest never started
    assert upgrader.path[f.node_id] == RELAY
    assert "not probed within the round's deadline" in upgrader.errors[f.node_id]
    assert not any(direct.healthy(ep) for ep in probes.calls)  # cut off: not used for sends either


async def test_failing_endpoints_back_off(local) -> None:
    node, relay, direct, upgrader = local
    f = stranger()
    node.friends[f.node_id] = f
    dead = "127.0.0.1:1000"
    relay.answers[f.node_id] = [dead]
    upgrader.probe = probes = CountingProbes()  # type: ignore[method-assign]
    interval = upgrader.interval_s
    backoffs = []
    for _ in range(7):
        state = upgrader._failing.get(f.node_id, {}).get(dead)
        if state is not None:
            state.not_before = 0  # due now: as if its backoff had passed
        await upgrader.refresh(f)
        state = upgrader._failing[f.node_id][dead]
        backoffs.append(round((state.not_before - time.monotonic()) / interval))
    # The first failure is retried the next round; then the wait doubles, capped.
    assert backoffs == [0, 1, 3, 7, 15, 16, 16]
    assert len(probes.calls) == 7
    # While it backs off it is not probed, sends skip it, and the reason is kept.
    await upgrader.refresh(f)
    assert len(probes.calls) == 7
    assert not direct.healthy(dead)
    assert "refused; next probe in" in upgrader.errors[f.node_id]
    # A success clears it.
    upgrader._failing[f.node_id][dead].not_before = 0
    probes.error = None
    await upgrader.refresh(f)
    assert dead not in upgrader._failing[f.node_id] and upgrader.path[f.node_id] == DIRECT


async def test_one_send_dials_a_few_endpoints_and_failures_back_off() -> None:
    """A friend listing many dead endpoints (no direct plugin to probe them
    first): each send dials at most MAX_DIALS_PER_SEND of them, and a dead
    one is skipped for longer after each failure in a row."""
    node = FakeNode()
    direct = DirectTransport(node)  # type: ignore[arg-type]
    direct.set_dial_timeout(0.1)  # both sends well within the 5 s a failure is skipped for
    dead = [dead_endpoint() for _ in range(10)]
    f = stranger()
    f.endpoints = dead
    node.friends[f.node_id] = f
    with pytest.raises(ConnectionError):
        await direct.send(f, b"x", 5)
    tried = [ep for ep in dead if not direct.healthy(ep)]
    assert tried == dead[: DirectTransport.MAX_DIALS_PER_SEND]
    with pytest.raises(ConnectionError):
        await direct.send(f, b"x", 5)
    assert [ep for ep in dead if not direct.healthy(ep)] == dead[: 2 * DirectTransport.MAX_DIALS_PER_SEND]
    # Sends failing together while it is skipped (one outage) count once...
    direct.mark_failed(dead[0])
    assert round(direct._failed_until[dead[0]] - time.monotonic()) == 5
    # ... failures in a row, each after the wait ran out: 5 s, 10 s, 20 s ... up to the cap.
    waits = []
    for _ in range(8):
        direct._failed_until[dead[0]] = 0  # the wait ran out; the endpoint is tried again, and fails
        direct.mark_failed(dead[0])
        waits.append(round(direct._failed_until[dead[0]] - time.monotonic()))
    assert waits == [10, 20, 40, 80, 160, 300, 300, 300]  # the first failure was the send's
    direct.mark_healthy(dead[0])
    direct.mark_failed(dead[0])
    assert round(direct._failed_until[dead[0]] - time.monotonic()) == 5
    await direct.stop()
