"""End-to-end: ``tmax-host --cluster`` members on one real nats-server form one
relay network (DESIGN §15): nodes registered on different members talk both
ways, exactly once, and a frame for a node on the other member crosses NATS."""

from __future__ import annotations

import pytest

from tests.cluster.natsproc import NatsServer
from tests.e2e.test_relay import BULK, FAST, api, bodies, outbox, relay_status, wait_registered
from tests.harness import Host, ProcGroup, befriend, wait_for
from tests.metrics import host_metrics, metric

pytestmark = pytest.mark.timeout(120)


def member(procs: ProcGroup, name: str, nats: NatsServer, *extra: str) -> Host:
    return procs.host(name, "--cluster", nats.url, "--metrics-listen", "127.0.0.1:0", *extra)


def test_nodes_on_two_members_exchange_messages_both_ways_exactly_once(
    procs: ProcGroup, nats_server: NatsServer
) -> None:
    m1 = member(procs, "m1", nats_server)
    m2 = member(procs, "m2", nats_server)
    a = procs.node("a", "--relay", m1.url, env=BULK)
    b = procs.node("b", "--relay", m2.url, env=BULK)
    wait_registered(a, b)
    # Registered lists every member: A (on m1) reaches B, whose card names only m2.
    assert sorted(relay_status(a)["hosts"][0]["members"]) == sorted([m1.url, m2.url])
    befriend(a, b, alias="b")  # the invite names m1; B's first contact goes through m2

    to_b = [f"a->b {i:02d}" for i in range(20)]
    to_a = [f"b->a {i:02d}" for i in range(20)]
    with api(a) as c:
        c.msg_send_many([{"to": b.node_id, "body": body.encode()} for body in to_b])
    with api(b) as c:
        c.msg_send_many([{"to": a.node_id, "body": body.encode()} for body in to_a])
    wait_for(lambda: len(bodies(b)) >= 20 and len(bodies(a)) >= 20, what="both inboxes to fill")
    wait_for(
        lambda: outbox(a).get("delivered") == 20 and outbox(b).get("delivered") == 21,  # + first contact
        what="every sender status delivered",
    )
    assert bodies(b) == to_b and bodies(a) == to_a  # each exactly once

    # The envelopes crossed NATS both ways as batches (one NATS message each, not one
    # per envelope), and the batch acks came back the same way.
    for host in (m1, m2):
        text = host_metrics(host)
        for direction in ("out", "in"):
            assert metric(text, f'tmax_host_cluster_frames_{direction}_total{{type="deliver_batch"}}') >= 1
        assert metric(text, 'tmax_host_cluster_frames_out_total{type="ack_batch"}') >= 1
        assert metric(text, "tmax_host_cluster_nats_connected") == 1


def test_nats_lost_mid_run_local_routing_goes_on_and_cross_member_frames_are_retried(
    procs: ProcGroup, nats_server: NatsServer
) -> None:
    m1 = member(procs, "m1", nats_server)
    m2 = member(procs, "m2", nats_server)
    a = procs.node("a", "--relay", m1.url, env=FAST)
    c = procs.node("c", "--relay", m1.url, env=FAST)
    b = procs.node("b", "--relay", m2.url, env=FAST)
    wait_registered(a, b, c)
    befriend(a, b)
    befriend(a, c)

    nats_server.kill()
    connected = "tmax_host_cluster_nats_connected"
    wait_for(lambda: metric(host_metrics(m1), connected) == 0, what="m1 to see NATS go")
    # Same member: NATS plays no part.
    sent = a.cli("msg", "send", "--to", c.node_id, "--wait", "--timeout", "20", "local")
    assert sent["status"] == "delivered", sent
    # Across members: refused at once as unavailable, and the outbox keeps it.
    with api(a) as client:
        client.msg_send(b.node_id, b"across")
    wait_for(
        lambda: metric(host_metrics(m1), 'tmax_host_cluster_errors_total{kind="disconnected"}') >= 1,
        what="a cross-member frame refused while NATS is down",
    )
    assert bodies(b) == [] and m1.alive() and m2.alive()

    nats_server.start()
    wait_for(lambda: bodies(b) == ["across"], timeout=30, what="the retried message to arrive")
    wait_for(lambda: outbox(a).get("delivered") == 2, what="a to see it delivered")
    assert bodies(b) == ["across"] and bodies(c) == ["local"]


def test_held_messages_survive_a_member_sigkill_and_arrive_exactly_once_on_another(
    procs: ProcGroup, nats_server: NatsServer
) -> None:
    m1 = member(procs, "m1", nats_server)
    m2 = member(procs, "m2", nats_server)
    a = procs.node("a", "--relay", m1.url, env=BULK)
    b = procs.node("b", "--relay", m1.url, env=BULK)
    wait_registered(a, b)
    befriend(a, b)
    b.stop()
    wanted = [f"held {i:02d}" for i in range(30)]
    with api(a) as client:
        client.msg_send_many([{"to": b.node_id, "body": body.encode()} for body in wanted])
    wait_for(lambda: outbox(a).get("sent") == 30, what="30 messages held by the cluster")
    a.stop()
    m1.kill()  # SIGKILL: the held messages are in JetStream

    b = procs.node("b", "--relay", m2.url, env=BULK)  # same state dir, the other member
    wait_for(lambda: len(bodies(b)) >= 30, what="b to receive the held messages")
    a = procs.node("a", "--relay", m2.url, env=BULK)
    wait_for(lambda: outbox(a).get("delivered") == 30, what="a to learn all were delivered")
    assert bodies(b) == wanted  # every one, once
