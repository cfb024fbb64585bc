"""A node whose relay list names two members of one cluster keeps ONE link to
the cluster (the other URL stands by): no registration ping-pong, and when its
member is SIGKILLed the node registers on the other and nothing is lost."""

from __future__ import annotations

import pytest

from tests.cluster.natsproc import NatsServer
from tests.cluster.test_cluster_relay import member, metrics_of
from tests.e2e.test_relay import BULK, api, bodies, metric, outbox, relay_status, wait_registered
from tests.harness import Host, ProcGroup, befriend, wait_for

pytestmark = pytest.mark.timeout(120)

REGISTERED = 'tmax_host_registrations_total{result="ok"}'
SUPERSEDED = 'tmax_host_drops_total{reason="superseded"}'


def link_states(node_status: dict) -> dict[str, str]:
    return {host["url"]: host["state"] for host in node_status["hosts"]}


def superseded(*hosts: Host) -> list[float]:
    return [metric(metrics_of(h), SUPERSEDED) for h in hosts if h.alive()]


def test_a_node_listing_two_members_keeps_one_link_and_moves_when_its_member_dies(
    procs: ProcGroup, nats_server: NatsServer
) -> None:
    m1, m2 = member(procs, "m1", nats_server), member(procs, "m2", nats_server)
    a = procs.node("a", "--relay", m1.url, "--relay", m2.url, env=BULK)
    b = procs.node("b", "--relay", m2.url, env=BULK)
    wait_registered(a, b)
    wait_for(
        lambda: link_states(relay_status(a)) == {m1.url: "connected", m2.url: "standby"},
        what="a on m1, its m2 link standing by",
    )
    befriend(a, b)

    to_b = [f"a->b {i:03d}" for i in range(50)]
    to_a = [f"b->a {i:03d}" for i in range(50)]
    with api(a) as c:
        c.msg_send_many([{"to": b.node_id, "body": body.encode()} for body in to_b[:25]])
    with api(b) as c:
        c.msg_send_many([{"to": a.node_id, "body": body.encode()} for body in to_a[:25]])
    wait_for(lambda: len(bodies(a)) == 25 and len(bodies(b)) == 25, what="the first 25 each way")
    # One registration of a, ever (on m1; m2 saw only b's): nothing closed as superseded.
    assert [metric(metrics_of(h), REGISTERED) for h in (m1, m2)] == [1, 1]
    assert superseded(m1, m2) == [0, 0]
    assert "registered on another member" not in m1.log() + m2.log()
    assert link_states(relay_status(a)) == {m1.url: "connected", m2.url: "standby"}

    m1.kill()  # SIGKILL: a's link to the cluster goes; its standby URL takes over
    with api(b) as c:
        c.msg_send_many([{"to": a.node_id, "body": body.encode()} for body in to_a[25:]])
    wait_for(lambda: link_states(relay_status(a))[m2.url] == "connected", what="a registered on m2")
    with api(a) as c:
        c.msg_send_many([{"to": b.node_id, "body": body.encode()} for body in to_b[25:]])
    wait_for(lambda: len(bodies(a)) >= 50 and len(bodies(b)) >= 50, what="all 50 each way")
    wait_for(
        lambda: outbox(a).get("delivered") == 50 and outbox(b).get("delivered") == 51,  # + first contact
        what="every sender status delivered",
    )
    assert bodies(a) == to_a and bodies(b) == to_b  # each exactly once
    assert superseded(m2) == [0]


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
    assert metric(metrics_of(m1), 'tmax_host_frames_out_total{type="members"}') >= 1

    m2.stop()  # SIGTERM: m2 leaves the member list
    wait_for(lambda: relay_status(a)["hosts"][0]["members"] == [m1.url], what="a to hear m2 left")
