"""Chaos: 4 nodes on 3 members exchange 10,000 messages while one member is
SIGKILLed and restarted twice and the NATS server is restarted once.
Nothing is lost and nothing duplicated: every sender status is delivered, and
every inbox holds exactly the set sent to it. The messages go out in batches
(one ``msg_send_many`` per round and directed pair) so that the test stays
well inside the cluster tests' CI budget."""

from __future__ import annotations

import itertools

import pytest

from tests.cluster.natsproc import NatsServer
from tests.cluster.test_cluster_relay import member
from tests.e2e.test_relay import BULK, api, bodies, outbox, wait_registered
from tests.harness import Node, ProcGroup, befriend, wait_for

pytestmark = pytest.mark.timeout(300)

UNPACED = ("--rate", "100000", "--burst", "100000")
TOTAL = 10_000  # over 4 rounds x 12 directed pairs: batches of 208 or 209


def unread(node: Node) -> int:
    with api(node) as client:
        return client.node_status()["inbox_unread"]


def test_chaos_member_kills_and_a_nats_restart_lose_and_duplicate_nothing(
    procs: ProcGroup, nats_server: NatsServer
) -> None:
    # Each node sends ~2,500 messages and acks as many: far above a connection's default
    # --rate (100 frames/s), which would pace them into send timeouts and retries.
    members = [member(procs, f"m{i}", nats_server, *UNPACED) for i in (1, 2, 3)]
    homes = {"a": members[0], "b": members[1], "c": members[2], "d": members[0]}
    nodes = {name: procs.node(name, "--relay", host.url, env=BULK) for name, host in homes.items()}
    wait_registered(*nodes.values())
    for x, y in itertools.combinations(nodes.values(), 2):
        befriend(x, y)

    wanted: dict[str, list[str]] = {name: [] for name in nodes}
    sent: dict[str, int] = dict.fromkeys(nodes, 0)

    def restart_nats() -> None:
        nats_server.kill()
        nats_server.start()

    # After each round: SIGKILL and restart m2, restart NATS, SIGKILL and restart m2, nothing.
    disruptions = [members[1].restart_same_port, restart_nats, members[1].restart_same_port, None]
    pairs = list(itertools.permutations(nodes, 2))
    batch, extra = divmod(TOTAL, len(disruptions) * len(pairs))
    batch_no = itertools.count()
    for round_no, disrupt in enumerate(disruptions):
        for sender, recipient in pairs:
            size = batch + (next(batch_no) < extra)
            bodies_now = [f"{sender}->{recipient} r{round_no} {i}" for i in range(size)]
            with api(nodes[sender]) as client:
                client.msg_send_many(
                    [{"to": nodes[recipient].node_id, "body": b.encode()} for b in bodies_now]
                )
            wanted[recipient] += bodies_now
            sent[sender] += size
        if disrupt is not None:
            disrupt()
    assert sum(sent.values()) == TOTAL

    for name, node in nodes.items():
        wait_for(
            lambda n=node, w=wanted[name]: unread(n) >= len(w),
            timeout=180,
            what=f"{name}'s inbox to fill",
        )
    for name, node in nodes.items():
        assert bodies(node) == sorted(wanted[name]), name  # each exactly once
    for name, node in nodes.items():
        # Every message this node sent (and its first contacts) ends up delivered.
        wait_for(lambda n=node: all_delivered(outbox(n)), timeout=120, what=f"{name}'s outbox delivered")
        assert outbox(node)["delivered"] >= sent[name]


def all_delivered(counts: dict[str, int]) -> bool:
    return counts.get("delivered", 0) == sum(counts.values())
