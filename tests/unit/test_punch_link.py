"""The node side of hole punching, in-process on loopback: simultaneous open
from bound ports, and the framed link (probe, batches both ways, liveness,
bounds) over a real TCP connection."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tmax_core import envelope as env
from tmax_core.errors import EnvelopeError
from tmax_core.identity import NodeIdentity
from tmax_core.model import Friend
from tmax_core.peer import DirectTransport
from tmax_mesh_direct.link import HEADER, FramedLink, LinkClosed
from tmax_mesh_direct.punch import Puncher, PunchRecord, simultaneous_open
from tmax_mesh_direct.punchaddr import parse_addr
from tmax_mesh_direct.sockets import bind_punch_socket

MAX_FRAME = 64 * 1024


class Peer:
    """A node's ingress, as the link's server side calls it."""

    def __init__(self) -> None:
        self.identity = NodeIdentity.generate()
        self.received: list[bytes] = []
        self.hold = False

    async def handle_envelope(self, data: bytes, source: Any) -> bytes:  # unused by links
        raise AssertionError("links carry batches only")

    async def handle_envelope_batch(self, envelopes: list[bytes], source: Any, nonce: bytes = b"") -> bytes:
        if self.hold:
            await asyncio.Event().wait()
        self.received += envelopes
        return env.make_ack_batch(self.identity, to_node_id=b"", entries=[], nonce=nonce)

    def as_friend(self) -> Friend:
        return Friend(node_id=self.identity.node_id, public_key=self.identity.public_key, endpoints=[])


async def connected_pair() -> tuple[socket.socket, socket.socket]:
    """Two ends of one loopback TCP connection: one dialled from a punch port
    with ``simultaneous_open`` (loopback answers a SYN at once, so the other
    end listens here instead of dialling back, as a ``public`` peer's host
    accepts what its router forwards)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    try:
        loop = asyncio.get_running_loop()
        dialled, (accepted, _) = await asyncio.gather(
            simultaneous_open(_free_port(), listener.getsockname(), 2.0, 2), loop.sock_accept(listener)
        )
    finally:
        listener.close()
    return dialled, accepted


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def links() -> AsyncIterator[tuple[FramedLink, Peer, FramedLink, Peer]]:
    sock_a, sock_b = await connected_pair()
    peer_a, peer_b = Peer(), Peer()
    made = []
    for sock, peer in ((sock_a, peer_a), (sock_b, peer_b)):
        reader, writer = await asyncio.open_connection(sock=sock)
        made.append(
            FramedLink(
                reader, writer, endpoint="127.0.0.1:1", handler=peer, liveness_s=0.6, max_frame=MAX_FRAME
            )
        )
    yield made[0], peer_a, made[1], peer_b
    for link in made:
        link.close()


async def test_simultaneous_open_dials_from_the_punch_port() -> None:
    port = _free_port()
    holder = bind_punch_socket(port)  # as the node holds its punch port
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    loop = asyncio.get_running_loop()
    sock_a, (sock_b, _) = await asyncio.gather(
        simultaneous_open(port, listener.getsockname(), 2.0, 2), loop.sock_accept(listener)
    )
    try:
        assert sock_a.getsockname()[1] == port == sock_b.getpeername()[1]
        # The punch port stays usable by another socket (SO_REUSEPORT) while connected.
        bind_punch_socket(port).close()
    finally:
        for sock in (sock_a, sock_b, holder, listener):
            sock.close()


async def test_simultaneous_open_gives_up_after_its_window() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ConnectionError, match=r"after 3 tries in 0\.6s"):
        await simultaneous_open(_free_port(), ("127.0.0.1", _free_port()), 0.6, 3)  # nobody there
    assert 0.55 <= loop.time() - started < 2.0


def test_parse_addr_refuses_what_is_not_ipv4() -> None:
    assert parse_addr("100.64.0.2:4000") == ("100.64.0.2", 4000)
    for bad in ("[::1]:4000", "host", "1.2.3.4:x"):
        with pytest.raises(ValueError):
            parse_addr(bad)


async def test_probe_and_batches_both_ways(links: Any) -> None:
    link_a, peer_a, link_b, peer_b = links
    # Each side proves the other is the friend it expects, on the same connection at once.
    await asyncio.gather(link_a.probe(peer_b.as_friend(), 2), link_b.probe(peer_a.as_friend(), 2))
    ack = await link_a.deliver([b"e1", b"e2"], 2)
    env.verify_ack_batch(
        ack,
        expected_signer_public_key=peer_b.identity.public_key,
        expected_signer_node_id=peer_b.identity.node_id,
        sender_node_id=b"",
        max_bytes=4096,
    )
    await link_b.deliver([b"e3"], 2)
    assert peer_b.received == [b"e1", b"e2"] and peer_a.received == [b"e3"]


async def test_probe_refuses_another_node(links: Any) -> None:
    link_a, _peer_a, _link_b, _peer_b = links
    with pytest.raises(EnvelopeError):
        await link_a.probe(Peer().as_friend(), 2)


async def test_silent_friend_ends_the_link_within_liveness(links: Any) -> None:
    link_a, _peer_a, link_b, _peer_b = links
    for task in link_b._tasks:  # B stops reading and answering (a dropped flow)
        task.cancel()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(LinkClosed, match="no answer within"):
        await link_a.deliver([b"lost"], 5)
    assert loop.time() - started < 0.6 + 0.5
    assert link_a.closed.is_set()


async def test_oversized_frame_ends_the_link(links: Any) -> None:
    link_a, _peer_a, link_b, _peer_b = links
    link_b._writer.write(HEADER.pack(MAX_FRAME + 1, b"B"[0]))
    await asyncio.wait_for(link_a.closed.wait(), 2)
    assert "frame of" in str(link_a.error)


async def test_friend_that_closes_fails_waiting_batches(links: Any) -> None:
    link_a, _peer_a, link_b, peer_b = links
    peer_b.hold = True
    waiting = asyncio.create_task(link_a.deliver([b"x"], 5))
    await asyncio.sleep(0)  # let it be written
    link_b.close()
    with pytest.raises(LinkClosed):
        await waiting


class _Config:
    def get(self, key: str) -> Any:
        return {"messages.max_bytes": 1 << 20}[key]


class _Node:
    config = _Config()
    friends: dict[bytes, Friend] = {}
    friend_listeners: list[Any] = []

    def duration_ms(self, key: str) -> int:
        return {"direct.punch_timeout": 2000, "direct.dial_timeout": 500, "direct.probe_interval": 1000}[key]


class _PeerHost:
    """What DirectTransport uses of a node."""

    config = _Config()
    friends: dict[bytes, Friend] = {}


@pytest.fixture
async def puncher() -> AsyncIterator[Puncher]:
    direct = DirectTransport(_PeerHost())  # type: ignore[arg-type]
    made = Puncher(_Node(), relay=object(), direct=direct, upgrader=object())  # type: ignore[arg-type]
    accepting = asyncio.create_task(made._accept())
    yield made
    accepting.cancel()
    made._listener.close()


async def test_friend_arriving_first_is_accepted(puncher: Puncher) -> None:
    loop = asyncio.get_running_loop()
    # Our own dial is due only in 5 s; the friend's connection arrives now at the punch port.
    connecting = asyncio.create_task(puncher._connect(("127.0.0.1", _free_port()), dial_in_s=5))
    await asyncio.sleep(0)  # the attempt now expects 127.0.0.1
    friend = socket.socket()
    friend.setblocking(False)
    started = loop.time()
    await loop.sock_connect(friend, ("127.0.0.1", puncher.port))
    sock = await asyncio.wait_for(connecting, 2)
    assert loop.time() - started < 1 and sock.getpeername() == friend.getsockname()
    assert puncher._expecting == {}
    sock.close()
    friend.close()


async def test_connection_nobody_expects_is_reset_leaving_the_address_free_to_punch(puncher: Puncher) -> None:
    """A connection no attempt expects (a friend's SYN retransmitted after our
    attempt ended, on a lossy path) is reset: a FIN would leave the punch
    port's 4-tuple to that address in FIN_WAIT/TIME_WAIT here, and every punch
    to the friend's mapping would fail with ``EADDRNOTAVAIL`` ("Cannot assign
    requested address") for a minute (seen in the NAT lab at 30 % WAN loss)."""
    loop = asyncio.get_running_loop()
    friend_port = _free_port()
    friend_listener = bind_punch_socket(friend_port)  # the friend's punch port, shared as ours
    friend_listener.listen(1)
    late = bind_punch_socket(friend_port)
    ours = bind_punch_socket(puncher.port)
    try:
        await loop.sock_connect(late, ("127.0.0.1", puncher.port))
        with pytest.raises(ConnectionResetError):  # reset by the node, not closed with a FIN
            await asyncio.wait_for(loop.sock_recv(late, 1), 2)
        # The next punch to that address, from our punch port, connects.
        await asyncio.wait_for(loop.sock_connect(ours, ("127.0.0.1", friend_port)), 2)
    finally:
        for sock in (friend_listener, late, ours):
            sock.close()


async def test_failed_punches_back_off_doubling_and_capped(puncher: Puncher) -> None:
    """No punch storms: 1 s (direct.probe_interval), doubling per failure in a row, at most 16 intervals."""
    record = PunchRecord()
    friend = Peer().as_friend()
    waits = []
    for _ in range(7):
        before = time.monotonic()
        puncher._failed(friend, record, "no connection")
        waits.append(round(record.not_before - before))
    assert waits == [1, 2, 4, 8, 16, 16, 16]
    assert record.last_failure == "no connection" and record.failures == 7


async def test_direct_transport_sends_on_a_punched_link_first(links: Any) -> None:
    link_a, _peer_a, _link_b, peer_b = links
    host, friend = _PeerHost(), peer_b.as_friend()
    host.friends = {friend.node_id: friend}
    direct = DirectTransport(host)  # type: ignore[arg-type]
    assert not direct.can_reach(friend)  # nothing yet: the relay carries the friend's messages
    direct.links[friend.node_id] = link_a
    assert direct.can_reach(friend)
    await direct.send_batch(friend, [b"over the punched link"], 5)
    assert peer_b.received == [b"over the punched link"]
    view = next(iter(direct.status()["friends"].values()))
    assert (view["path"], view["via"], view["endpoints"]) == ("direct", "punched", [link_a.endpoint])

    link_a.close()  # the link ended: no longer offered, and a send fails at once (to the relay)
    assert not direct.can_reach(friend) and friend.node_id not in direct.links
    with pytest.raises(ConnectionError):
        await direct.send_batch(friend, [b"x"], 5)
