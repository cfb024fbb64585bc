"""End-to-end: a node's batched sends through a real ``tmax-host`` travel as
RelaySendBatch frames with one batch ack each; to an offline recipient they are
held one by one as before and delivered exactly once (issue 17)."""

from __future__ import annotations

from tests.e2e.test_relay import BULK, api, bodies, outbox, wait_registered
from tests.harness import ProcGroup, befriend, wait_for
from tests.metrics import host_metrics, metric


def test_batched_sends_go_as_batches_and_arrive_once(procs: ProcGroup) -> None:
    host = procs.host("host", "--metrics-listen", "127.0.0.1:0")
    a = procs.node("a", "--relay", host.url, env=BULK)
    b = procs.node("b", "--relay", host.url, env=BULK)
    wait_registered(a, b)
    befriend(a, b)
    wanted = [f"m{i:03d}" for i in range(200)]
    with api(a) as c:
        c.msg_send_many([{"to": b.node_id, "body": body.encode()} for body in wanted])
    wait_for(lambda: outbox(a).get("delivered") == 200, timeout=30, what="all 200 delivered")
    assert bodies(b) == wanted
    text = host_metrics(host)
    batches = metric(text, 'tmax_host_frames_in_total{type="relay_send_batch"}')
    assert batches >= 1
    assert metric(text, 'tmax_host_frames_in_total{type="ack_batch_send"}') == batches
    assert metric(text, 'tmax_host_frames_in_total{type="relay_send"}') < 200  # not one frame each


def test_a_batch_for_an_offline_recipient_is_held_one_by_one(procs: ProcGroup) -> None:
    host = procs.host("host", "--metrics-listen", "127.0.0.1:0")
    a = procs.node("a", "--relay", host.url, env=BULK)
    b = procs.node("b", "--relay", host.url, env=BULK)
    wait_registered(a, b)
    befriend(a, b)
    b.stop()
    wanted = [f"h{i:02d}" for i in range(30)]
    with api(a) as c:
        c.msg_send_many([{"to": b.node_id, "body": body.encode()} for body in wanted])
    wait_for(lambda: outbox(a).get("sent") == 30, what="30 messages held at the host")
    assert metric(host_metrics(host), 'tmax_host_drops_total{reason="batch_unavailable"}') >= 1
    b.start()
    wait_for(lambda: outbox(a).get("delivered") == 30, timeout=30, what="all delivered")
    assert bodies(b) == wanted
