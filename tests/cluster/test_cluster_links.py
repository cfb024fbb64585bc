"""A node whose relay list names two members of one cluster keeps ONE link to
the cluster (the other URL stands by): after one supersede at start, no
registration ping-pong, and when its member is SIGKILLed the node registers on
the other and nothing is lost. Two URLs are one cluster only when each host
names the other: a host claiming an honest host as its member cannot put the
node's link to that host on standby."""

from __future__ import annotations

import pytest

from tests.cluster.natsproc import NatsServer
from tests.cluster.test_cluster_relay import member
from tests.e2e.test_relay import BULK, api, bodies, outbox, relay_status, wait_registered
from tests.harness import Host, Node, ProcGroup, befriend, wait_for
from tests.metrics import host_metrics, metric

pytestmark = pytest.mark.timeout(120)

REGISTERED = 'tmax_host_registrations_total{result="ok"}'
SUPERSEDED = 'tmax_host_drops_total{reason="superseded"}'


def link_states(node_status: dict) -> dict[str, str]:
    return {host["url"]: host["state"] for host in node_status["hosts"]}


def counts(name: str, *hosts: Host) -> list[float]:
    return [metric(host_metrics(h), name) for h in hosts]


def settled_on(node: Node, m1: Host, m2: Host) -> tuple[Host, Host]:
    """(the member ``node`` is registered on, the one its other URL stands by for)."""

    def one_link() -> bool:
        return sorted(link_states(relay_status(node)).values()) == ["connected", "standby"]

    wait_for(one_link, what="the node to keep one link to the cluster")
    states = link_states(relay_status(node))
    return (m1, m2) if states[m1.url] == "connected" else (m2, m1)


def test_a_node_listing_two_members_keeps_one_link_and_moves_when_its_member_dies(
    procs: ProcGroup, nats_server: NatsServer
) -> None:
    m1, m2 = member(procs, "m1", nats_server), member(procs, "m2", nats_server)
    a = procs.node("a", "--relay", m1.url, "--relay", m2.url, env=BULK)
    b = procs.node("b", "--relay", m1.url, "--relay", m2.url, env=BULK)
    wait_registered(a, b)
    # Each URL registers once (neither host has yet been heard to name the other);
    # the later registration supersedes the earlier, whose link then stands by.
    active, standby = settled_on(a, m1, m2)
    settled_on(b, m1, m2)  # on either member (the one a is on, if its links started in order)
    befriend(a, b)
    registered = counts(REGISTERED, m1, m2)
    superseded = counts(SUPERSEDED, m1, m2)
    assert registered == [2, 2]  # a and b once on each member
    assert sum(superseded) == 2  # one supersede per node, at start

    to_b = [f"a->b {i:03d}" for i in range(50)]
    to_a = [f"b->a {i:03d}" for i in range(50)]
    with api(a) as c:
        c.msg_send_many([{"to": b.node_id, "body": body.encode()} for body in to_b[:25]])
    with api(b) as c:
        c.msg_send_many([{"to": a.node_id, "body": body.encode()} for body in to_a[:25]])
    wait_for(lambda: len(bodies(a)) == 25 and len(bodies(b)) == 25, what="the first 25 each way")
    # Settled: no registration ping-pong since.
    assert counts(REGISTERED, m1, m2) == registered
    assert counts(SUPERSEDED, m1, m2) == superseded
    assert link_states(relay_status(a)) == {active.url: "connected", standby.url: "standby"}

    before = counts(SUPERSEDED, standby)
    active.kill()  # SIGKILL: the nodes' link to the cluster goes; their standby URL takes over
    with api(b) as c:
        c.msg_send_many([{"to": a.node_id, "body": body.encode()} for body in to_a[25:]])
    wait_for(
        lambda: link_states(relay_status(a))[standby.url] == "connected", what="a registered on the other"
    )
    with api(a) as c:
        c.msg_send_many([{"to": b.node_id, "body": body.encode()} for body in to_b[25:]])
    wait_for(lambda: len(bodies(a)) >= 50 and len(bodies(b)) >= 50, what="all 50 each way")
    wait_for(
        lambda: outbox(a).get("delivered") == 50 and outbox(b).get("delivered") == 51,  # + first contact
        what="every sender status delivered",
    )
    assert bodies(a) == to_a and bodies(b) == to_b  # each exactly once
    assert counts(SUPERSEDED, standby) == before


def test_a_host_naming_an_honest_host_as_its_member_does_not_put_that_link_on_standby(
    procs: ProcGroup, nats_server: NatsServer
) -> None:
    """A hostile cluster has a member that claims the URL of an honest standalone
    host. A node listing both keeps its honest link registered, so a friend on
    the honest host reaches it there (before the fix the honest link stood by:
    the friend's messages waited at the honest host for a node never on it)."""
    honest = procs.host("honest")
    hostile = member(procs, "hostile", nats_server)
    member(procs, "claims-honest", nats_server, "--public-url", honest.url)
    a = procs.node("a", "--relay", hostile.url, "--relay", honest.url, env=BULK)
    b = procs.node("b", "--relay", honest.url, env=BULK)
    wait_registered(a, b)
    wait_for(
        lambda: honest.url in relay_status(a)["hosts"][0]["members"],
        what="the hostile host to claim the honest one",
    )
    wait_for(
        lambda: link_states(relay_status(a)) == {hostile.url: "connected", honest.url: "connected"},
        what="both of a's links registered",
    )
    befriend(b, a)  # b's card names only the honest host; a's names both
    with api(b) as c:
        c.msg_send(a.node_id, b"via the honest host")
    wait_for(lambda: bodies(a) == ["via the honest host"], what="a to get b's message")
    assert link_states(relay_status(a))[honest.url] == "connected"


def test_registered_nodes_hear_of_a_member_that_joins_or_leaves_later(
    procs: ProcGroup, nats_server: NatsServer
) -> None:
    m1 = member(procs, "m1", nats_server)
    a = procs.node("a", "--relay", m1.url, env=BULK)
    wait_registered(a)
    assert relay_status(a)["hosts"][0]["members"] == [m1.url]

    m2 = member(procs, "m2", nats_server)  # joins after a registered
    wait_for(lambda: relay_status(a)["hosts"][0]["members"] == [m1.url, m2.url], what="a to hear of m2")
    b = procs.node("b", "--relay", m2.url, env=BULK)
    wait_registered(b)
    befriend(b, a)  # the invite names m2 only: a reaches it through its m1 link
    with api(a) as c:
        c.msg_send(b.node_id, b"through m1")
    wait_for(lambda: bodies(b) == ["through m1"], what="b to get a's message")
    assert metric(host_metrics(m1), 'tmax_host_frames_out_total{type="members"}') >= 1

    m2.stop()  # SIGTERM: m2 leaves the member list
    wait_for(lambda: relay_status(a)["hosts"][0]["members"] == [m1.url], what="a to hear m2 left")
