"""End-to-end: nodes without peer listeners talk through a real tmax-host."""

from __future__ import annotations

from tests.harness import ProcGroup, befriend, wait_for


def relay_status(node) -> dict:
    status = node.cli("node", "status")
    return next(t for t in status["transports"] if t["name"] == "relay")


def test_relay_message_round_trip(procs: ProcGroup) -> None:
    host = procs.host()
    a = procs.node("a", "--relay", host.url)
    b = procs.node("b", "--relay", host.url)
    wait_for(lambda: relay_status(a)["state"] == "connected", what="a registered")
    wait_for(lambda: relay_status(b)["state"] == "connected", what="b registered")
    befriend(a, b, alias="b")
    sent = b.cli("msg", "send", "--to", a.node_id, "--wait", "--timeout", "20", "hello a")
    assert sent["status"] == "delivered" and sent["path"] == "relay", sent
    sent = a.cli("msg", "send", "--to", b.node_id, "--wait", "--timeout", "20", "hello b")
    assert sent["status"] == "delivered" and sent["path"] == "relay", sent
    assert a.inbox_bodies() == ["hello a"]
    assert b.inbox_bodies() == ["hello b"]
    status = relay_status(a)
    assert status["hosts"][0]["url"] == host.url and status["hosts"][0]["registered_since_ms"]
