"""What a hostile relay host can do to the node's relay links: route a friend's
traffic ahead of the honest cluster, cost the node's event loop with member
lists, wake every standby link, make the node re-register in a tight loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.polling import wait_for_async
from tests.unit.hostilehost import HostileHost, registered
from tests.unit.relayfakes import FakeNode
from tmax_core.model import Friend
from tmax_mesh_relay import transport as relay_transport
from tmax_mesh_relay import wire
from tmax_mesh_relay.proto import host_pb2
from tmax_mesh_relay.transport import MAX_MEMBER_ENTRIES, HostLink, RelayTransport

pytestmark = pytest.mark.timeout(60)

G1, G2 = "grpc://g1.example:7447", "grpc://g2.example:7447"  # one honest cluster
EVIL = "grpc://evil.example:7447"


def _link(transport: RelayTransport, url: str, members: list[str], state: str) -> HostLink:
    link = HostLink(transport, wire.parse_relay_url(url))
    link.set_members(members)
    link._state = state
    transport.links.append(link)
    return link


def _flood_urls() -> list[str]:
    """~4 MiB of one valid URL repeated: fits the node's receive limit (2 x max_frame + 64 KiB)."""
    return ["grpc://honest.example:7000"] * 150_000


def _count_url_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every member URL set_members looks at, in order."""
    seen: list[str] = []
    check = relay_transport.relay_url_problem

    def counting(url: str) -> str | None:
        seen.append(url)
        return check(url)

    monkeypatch.setattr(relay_transport, "relay_url_problem", counting)
    return seen


async def test_a_hostile_claim_does_not_come_before_the_honest_member_covering_a_standby_host() -> None:
    """The node's link to g2 stands by (g1 covers it: each names the other). A
    friend on g2 is reached through g1 first, not through a host listed first
    that merely claims g2 (which could drop or hold the friend's traffic)."""
    transport = RelayTransport(FakeNode([]))
    evil = _link(transport, EVIL, [G2], "connected")  # listed first, claims g2
    g1 = _link(transport, G1, [G1, G2], "connected")
    g2 = _link(transport, G2, [G1, G2], "standby")
    assert transport.cover(g2) is g1
    friend = Friend(node_id=b"f" * 20, public_key=b"k" * 33, relay_hosts=[G2])
    assert transport._links_for(friend) == [g1, evil]  # the claim is a fallback at most


async def test_a_max_size_member_list_is_looked_at_only_so_far(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 4 MiB Members frame of one URL repeated: set_members looks at its first
    MAX_MEMBER_ENTRIES entries, not at all 150,000 (~0.8 s of the event loop)."""
    seen = _count_url_checks(monkeypatch)
    link = HostLink(RelayTransport(FakeNode([])), wire.parse_relay_url(EVIL))
    frame = host_pb2.HostFrame(members=host_pb2.Members(member_urls=_flood_urls()))
    frame = host_pb2.HostFrame.FromString(frame.SerializeToString())
    link.set_members(frame.members.member_urls)
    assert len(seen) == MAX_MEMBER_ENTRIES
    assert link.member_urls == ["grpc://honest.example:7000"]


async def test_an_unchanged_member_list_does_not_wake_the_standby_links() -> None:
    """Only a Members frame that changes the members wakes the standby links
    (each re-runs cover() over all links)."""
    transport = RelayTransport(FakeNode([]))
    link = _link(transport, EVIL, [G1], "connected")
    wakes = 0
    original = transport.links_changed

    def counting() -> None:
        nonlocal wakes
        wakes += 1
        original()

    transport.links_changed = counting  # type: ignore[method-assign]
    for _ in range(100):
        await link._on_frame(host_pb2.HostFrame(members=host_pb2.Members(member_urls=[G1])))
    assert wakes == 0
    await link._on_frame(host_pb2.HostFrame(members=host_pb2.Members(member_urls=[G1, G2])))
    assert wakes == 1 and link.reaches(G2)


async def test_a_host_flooding_members_frames_costs_the_node_little(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over the network: a registered host sends 4 MiB Members frames back to
    back, then a last small one. Each costs the node at most MAX_MEMBER_ENTRIES
    URL checks, and the link stays up."""
    seen = _count_url_checks(monkeypatch)
    flood = host_pb2.HostFrame(members=host_pb2.Members(member_urls=_flood_urls()))
    last = host_pb2.HostFrame(members=host_pb2.Members(member_urls=[G1]))

    async def script(_register: host_pb2.NodeFrame) -> AsyncIterator[host_pb2.HostFrame]:
        yield registered()
        for _ in range(20):
            yield flood
        yield last
        await asyncio.sleep(60)

    with HostileHost(script) as host:
        node = FakeNode([host.url])
        transport = RelayTransport(node)
        node.transports.append(transport)
        await transport.start()
        try:
            link = transport.links[0]
            await wait_for_async(lambda: link.member_urls == [G1], what="the last Members frame", timeout=30)
            assert link.connected
        finally:
            await transport.stop()
    assert len(seen) <= 21 * MAX_MEMBER_ENTRIES, f"{len(seen)} member URLs checked for 21 frames"


async def test_a_host_that_drops_every_stream_after_registering_is_not_redialed_in_a_tight_loop() -> None:
    """A host accepts each registration and closes the stream at once: a session
    that short does not reset the backoff, so the node does not re-dial (sign a
    registration, kick the outbox, ask for a punch mapping, wake the standby
    links) ~5 times a second, but with a growing delay."""

    async def script(_register: host_pb2.NodeFrame) -> AsyncIterator[host_pb2.HostFrame]:
        yield registered()

    with HostileHost(script) as host:
        node = FakeNode([host.url])
        transport = RelayTransport(node)
        transport.reconnect_max_s = 30.0  # relay.reconnect_max's default (FakeNode says 1 s)
        node.transports.append(transport)
        await transport.start()
        try:
            await asyncio.sleep(5)
        finally:
            await transport.stop()
    assert 2 <= host.registrations <= 8, f"{host.registrations} registrations in 5 s"
    assert len(node.reconnected) <= 8, f"{len(node.reconnected)} outbox kicks in 5 s"
