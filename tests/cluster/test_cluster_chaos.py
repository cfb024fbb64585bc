"""Chaos, scaled to CI: 4 nodes on 3 members exchange messages while one member
is SIGKILLed and restarted twice and the NATS server is restarted once.
Nothing is lost and nothing duplicated: every sender status is delivered, and
every inbox holds exactly the set sent to it."""

from __future__ import annotations

import itertools

import pytest

from tests.cluster.natsproc import NatsServer
from tests.cluster.test_cluster_relay import member
from tests.e2e.test_relay import BULK, api, bodies, outbox, wait_registered
from tests.harness import ProcGroup, befriend, wait_for

pytestmark = pytest.mark.timeout(240)

PER_PAIR = 10  # per round and directed pair: 4 x 12 x 10 = 480 messages


def test_chaos_member_kills_and_a_nats_restart_lose_and_duplicate_nothing(
    procs: ProcGroup, nats_server: NatsServer
) -> None:
    members = [member(procs, f"m{i}", nats_server) for i in (1, 2, 3)]
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
    for round_no, disrupt in enumerate(disruptions):
        for sender, recipient in itertools.permutations(nodes, 2):
            bodies_now = [f"{sender}->{recipient} r{round_no} {i}" for i in range(PER_PAIR)]
            with api(nodes[sender]) as client:
                client.msg_send_many(
                    [{"to": nodes[recipient].node_id, "body": b.encode()} for b in bodies_now]
                )
            wanted[recipient] += bodies_now
            sent[sender] += PER_PAIR
        if disrupt is not None:
            disrupt()

    for name, node in nodes.items():
        wait_for(
            lambda n=node, w=wanted[name]: len(bodies(n)) >= len(w),
            timeout=120,
            what=f"{name}'s inbox to fill",
        )
    for name, node in nodes.items():
        assert bodies(node) == sorted(wanted[name]), name  # each exactly once
    for name, node in nodes.items():
        # Every message this node sent (and its first contacts) ends up delivered.
        wait_for(lambda n=node: all_delivered(outbox(n)), timeout=60, what=f"{name}'s outbox delivered")
        assert outbox(node)["delivered"] >= sent[name]


def all_delivered(counts: dict[str, int]) -> bool:
    return counts.get("delivered", 0) == sum(counts.values())
