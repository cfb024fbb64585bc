"""Direct delivery through real NAT: a node behind NAT reaches a public peer;
without a relay the public peer cannot answer (its reply stays queued).
Between two NATs a direct attempt cannot succeed: it must fail and the relay
must carry everything."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import ProcGroup, befriend, wait_for
from tests.natlab.lab import RELAY_NODE_ENV, A, B, C, NatLab, start_relay_host
from tmax_core.client import JsonNodeClient

pytestmark = pytest.mark.natlab


def test_nat_direct_public_peer(natlab: NatLab, procs: ProcGroup) -> None:
    node_c = procs.node("c", "--peer-listen", f"{C}:0", prefix=natlab.prefix_for("c"))
    node_a = procs.node("a", prefix=natlab.prefix_for("a"))  # behind NAT, no listener, no relay
    c_endpoint = node_c.ready["peer_listen"]
    assert c_endpoint.startswith(f"{C}:") and not c_endpoint.endswith(":0")
    assert node_a.ready["peer_listen"] is None

    # C's invite carries its endpoint (the listener is not a wildcard); A's
    # first contact crosses A's NAT to reach it.
    friend_c = befriend(node_c, node_a, alias="c")
    assert friend_c["endpoints"] == [c_endpoint]
    a_at_c = next(f for f in node_c.cli("friends", "list") if f["node_id"] == node_a.node_id)
    assert a_at_c["endpoints"] == [] and a_at_c["relay_hosts"] == []

    sent = node_a.cli("msg", "send", "--to", "c", "--wait", "--timeout", "20", "hello from behind NAT")
    assert sent["status"] == "delivered", sent
    assert sent["path"] == "direct", sent
    inbox = node_c.cli("inbox", "list")
    assert [(m["body"], m["from_node_id"]) for m in inbox] == [("hello from behind NAT", node_a.node_id)]

    # C -> A: A has no listener and no relay, so nothing can carry the reply.
    # It must stay queued (retried until its TTL), not fail.
    reply = node_c.cli("msg", "send", "--to", node_a.node_id, "reply to A")
    assert reply["status"] == "queued", reply
    with JsonNodeClient(node_c.ready["socket"]) as client:
        status = wait_for(
            lambda: (s := client.msg_status(reply["message_id"]))["attempts"] >= 1 and s,
            what="C's first attempt at the reply",
        )
    assert status["status"] == "queued", status
    assert status["path"] is None, status
    assert node_a.inbox_bodies() == []


def test_nat_direct_fails_fast_between_nats(natlab: NatLab, procs: ProcGroup, tmp_path: Path) -> None:
    _host, url = start_relay_host(natlab, procs, tmp_path / "host")
    node_a = procs.node(
        "a", "--peer-listen", f"{A}:0", "--relay", url, env=RELAY_NODE_ENV, prefix=natlab.prefix_for("a")
    )
    node_b = procs.node(
        "b", "--peer-listen", f"{B}:0", "--relay", url, env=RELAY_NODE_ENV, prefix=natlab.prefix_for("b")
    )
    a_endpoint, b_endpoint = node_a.ready["peer_listen"], node_b.ready["peer_listen"]
    assert a_endpoint.startswith(f"{A}:") and b_endpoint.startswith(f"{B}:")

    # Both advertise their private endpoint; neither is dialable from the other LAN.
    friend_a = befriend(node_a, node_b, alias="a")
    assert friend_a["endpoints"] == [a_endpoint]
    b_at_a = next(f for f in node_a.cli("friends", "list") if f["node_id"] == node_b.node_id)
    assert b_at_a["endpoints"] == [b_endpoint]

    results = []
    for i in range(3):
        for sender, to, body in ((node_a, node_b.node_id, f"a{i}"), (node_b, "a", f"b{i}")):
            results.append(sender.cli("msg", "send", "--to", to, "--wait", "--timeout", "30", body))
    assert [(r["status"], r["path"]) for r in results] == [("delivered", "relay")] * len(results), results
    assert node_b.inbox_bodies() == ["a0", "a1", "a2"]
    assert node_a.inbox_bodies() == ["b0", "b1", "b2"]

    # Direct really was tried (and failed) each way; the relay path is not a
    # sign that direct was never attempted.
    for node, peer_endpoint in ((node_a, b_endpoint), (node_b, a_endpoint)):
        log = node.log_path.read_text(errors="replace")
        failures = [line for line in log.splitlines() if peer_endpoint in line and "fail" in line.lower()]
        assert failures, f"no failed direct attempt at {peer_endpoint} in the log:\n{log[-3000:]}"
