"""Relay through real NAT: two nodes behind different masquerading routers,
no listeners, only the relay host on the public segment; then the same with
packet loss on the routers' WAN side (every message lands exactly once)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.harness import Node, Proc, ProcGroup, befriend, wait_for
from tests.natlab.lab import RELAY_NODE_ENV, NatLab, start_relay_host
from tmax_core.client import JsonNodeClient

pytestmark = pytest.mark.natlab

LOSSY_MESSAGES = 30
WAN_LOSS_PERCENT = 20


def send_wait(sender: Node, to: str, body: str) -> dict:
    return sender.cli("msg", "send", "--to", to, "--wait", "--timeout", "30", body)


def send_many(sender: Node, to: str, bodies: list[str]) -> list[str]:
    """Queue many messages through the local API (one CLI process each would be slow)."""
    with JsonNodeClient(sender.ready["socket"]) as client:
        return [client.msg_send(to, body.encode())["message_id"] for body in bodies]


def wait_delivered(sender: Node, message_ids: list[str], timeout: float) -> list[dict]:
    with JsonNodeClient(sender.ready["socket"]) as client:
        pending = set(message_ids)
        states: dict[str, dict] = {}

        def all_final() -> bool:
            for mid in list(pending):
                state = client.msg_status(mid)
                assert state["status"] != "failed", state
                if state["status"] == "delivered":
                    states[mid] = state
                    pending.discard(mid)
            return not pending

        wait_for(all_final, timeout, interval=0.2, what=f"{len(pending)} messages to be delivered")
        return [states[mid] for mid in message_ids]


def inbox(node: Node) -> list[dict]:
    with JsonNodeClient(node.ready["socket"]) as client:
        return client.inbox_list()


def test_nat_relay_round_trip(natlab: NatLab, procs: ProcGroup, tmp_path: Path) -> None:
    _host, url = start_relay_host(natlab, procs, tmp_path / "host")
    node_a = procs.node("a", "--relay", url, env=RELAY_NODE_ENV, prefix=natlab.prefix_for("a"))
    node_b = procs.node("b", "--relay", url, env=RELAY_NODE_ENV, prefix=natlab.prefix_for("b"))
    assert node_a.ready["peer_listen"] is None and node_b.ready["peer_listen"] is None

    # A's invite names the relay; B accepts; first contact crosses both NATs via the host.
    friend_a = befriend(node_a, node_b, alias="a")
    assert friend_a["relay_hosts"] == [url] and friend_a["endpoints"] == []
    b_at_a = next(f for f in node_a.cli("friends", "list") if f["node_id"] == node_b.node_id)
    assert b_at_a["relay_hosts"] == [url]

    sent = send_wait(node_a, node_b.node_id, "a to b through the relay")
    assert (sent["status"], sent["path"]) == ("delivered", "relay"), sent
    sent = send_wait(node_b, "a", "b to a through the relay")
    assert (sent["status"], sent["path"]) == ("delivered", "relay"), sent
    assert node_b.inbox_bodies() == ["a to b through the relay"]
    assert node_a.inbox_bodies() == ["b to a through the relay"]

    # Now lose packets on both routers' WAN side, both directions.
    natlab.set_wan_loss(WAN_LOSS_PERCENT)
    a_bodies = [f"a->b lossy {i}" for i in range(LOSSY_MESSAGES)]
    b_bodies = [f"b->a lossy {i}" for i in range(LOSSY_MESSAGES)]
    a_ids = send_many(node_a, node_b.node_id, a_bodies)
    b_ids = send_many(node_b, node_a.node_id, b_bodies)
    for sender, ids in ((node_a, a_ids), (node_b, b_ids)):
        states = wait_delivered(sender, ids, timeout=90)
        assert {s["path"] for s in states} == {"relay"}, states
    assert natlab.loss_drops() > 0, "the loss rules dropped nothing: the lossy phase tested no loss"

    # Exactly once: each inbox holds exactly the set sent to it, no duplicates.
    for receiver, sender, first, bodies, ids in (
        (node_b, node_a, "a to b through the relay", a_bodies, a_ids),
        (node_a, node_b, "b to a through the relay", b_bodies, b_ids),
    ):
        got = inbox(receiver)
        assert sorted(m["body"] for m in got) == sorted([first, *bodies])
        assert len({m["message_id"] for m in got}) == len(got)
        assert {m["message_id"] for m in got} >= set(ids)
        assert {m["from_node_id"] for m in got} == {sender.node_id}


# -- attacks (issue 13) ---------------------------------------------------------------------

SLOT_HOG = r"""
import asyncio, json, os, signal, sys
from tmax_core.identity import NodeIdentity
from tmax_mesh_relay.client import HostSession

target, count, ready = sys.argv[1], int(sys.argv[2]), sys.argv[sys.argv.index("--ready-file") + 1]

async def main():
    held, refused = [], []
    for _ in range(count):
        try:
            session = await HostSession.open(target)
            await session.register(NodeIdentity.generate(), [], [])
            held.append(session)
        except Exception as err:
            refused.append(str(err))
    with open(ready + ".tmp", "w") as f:
        json.dump({"pid": os.getpid(), "registered": len(held), "refused": refused}, f)
    os.replace(ready + ".tmp", ready)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()

asyncio.run(main())
"""


def test_nat_relay_one_address_takes_every_slot(natlab: NatLab, procs: ProcGroup, tmp_path: Path) -> None:
    """From one public address (c), open as many registered streams as the host
    allows in all; a node behind NAT at another address must still register."""
    host, url = start_relay_host(natlab, procs, tmp_path / "host", "--max-connections", "80")
    hog = procs.add(
        Proc(
            [sys.executable, "-c", SLOT_HOG, host.ready["listen"], "80"],
            tmp_path / "hog.ready",
            tmp_path / "hog.log",
            prefix=natlab.prefix_for("c"),
        )
    ).start(timeout=60)
    node_a = procs.node("a", "--relay", url, env=RELAY_NODE_ENV, prefix=natlab.prefix_for("a"))

    def relay_state() -> str:
        with JsonNodeClient(node_a.ready["socket"]) as client:
            status = client.node_status()
        return next(t for t in status["transports"] if t["name"] == "relay")["state"]

    assert hog.ready["registered"] <= 64, f"one address holds {hog.ready['registered']} of 80 slots"
    wait_for(lambda: relay_state() == "connected", timeout=20, what="node a to register next to the hog")
