"""What a hostile relay host can do to the node's relay links: route a friend's
traffic ahead of the honest cluster, cost the node's event loop with member
lists, wake every standby link, make the node re-register in a tight loop."""

from __future__ import annotations

import pytest

from tests.unit.relayfakes import FakeNode
from tmax_core.model import Friend
from tmax_mesh_relay import wire
from tmax_mesh_relay.transport import HostLink, RelayTransport

pytestmark = pytest.mark.timeout(60)

G1, G2 = "grpc://g1.example:7447", "grpc://g2.example:7447"  # one honest cluster
EVIL = "grpc://evil.example:7447"


def _link(transport: RelayTransport, url: str, members: list[str], state: str) -> HostLink:
    link = HostLink(transport, wire.parse_relay_url(url))
    link.set_members(members)
    link._state = state
    transport.links.append(link)
    return link


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
