"""Members on a 3-server NATS cluster with the held envelopes at 3 replicas: one
NATS server is killed mid-run and nothing is lost; a member started with the
NATS cluster waits for its meta leader instead of exiting."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nats
import pytest

from tests.cluster.natsproc import NatsServer, routed_servers
from tests.e2e.test_relay import BULK, api, bodies, outbox, wait_registered
from tests.harness import ProcGroup, befriend, wait_for
from tmax_mesh_relay import held

pytestmark = pytest.mark.timeout(180)


async def stream_leader(server: NatsServer) -> str:
    nc = await nats.connect(server.url, connect_timeout=2, allow_reconnect=False)
    try:
        info = await nc.jetstream().stream_info(held.STREAM)
        assert info.config.num_replicas == 3
        return info.cluster.leader
    finally:
        await nc.close()


def test_held_messages_at_r3_survive_the_loss_of_a_nats_server(
    procs: ProcGroup, nats_cluster: list[NatsServer]
) -> None:
    urls = ",".join(s.url for s in nats_cluster)
    m1 = procs.host("m1", "--cluster", urls, "--cluster-replicas", "3")
    m2 = procs.host("m2", "--cluster", urls, "--cluster-replicas", "3")
    a = procs.node("a", "--relay", m1.url, env=BULK)
    b = procs.node("b", "--relay", m2.url, env=BULK)
    wait_registered(a, b)
    befriend(a, b)
    b.stop()
    before = [f"before {i:02d}" for i in range(20)]
    after = [f"after {i:02d}" for i in range(20)]
    with api(a) as client:
        client.msg_send_many([{"to": b.node_id, "body": body.encode()} for body in before])
    wait_for(lambda: outbox(a).get("sent") == 20, what="20 messages held at R3")

    leader = asyncio.run(stream_leader(nats_cluster[0]))
    next(s for s in nats_cluster if s.name == leader).kill()  # the held stream's leader
    with api(a) as client:
        client.msg_send_many([{"to": b.node_id, "body": body.encode()} for body in after])
    wait_for(lambda: outbox(a).get("sent") == 40, timeout=60, what="20 more held after the kill")

    b = procs.node("b", "--relay", m2.url, env=BULK)
    wait_for(lambda: len(bodies(b)) >= 40, timeout=60, what="b to receive all 40")
    assert bodies(b) == sorted(before + after)  # every one, once
    wait_for(lambda: outbox(a).get("delivered") == 40, what="a to learn all were delivered")


def test_a_member_started_before_the_nats_cluster_elects_a_meta_leader_waits_and_relays(
    procs: ProcGroup, tmp_path: Path
) -> None:
    """Started with a fresh 3-server NATS cluster (a boot), a member got "JetStream
    temporarily unavailable" until the servers elected a meta leader, and exited 1."""
    servers = routed_servers(tmp_path)
    try:
        servers[0].start(leader=False)  # alone: no quorum, so no meta leader
        urls = ",".join(s.url for s in servers)
        m1 = procs.host("m1", "--cluster", urls, "--cluster-replicas", "3", start=False)
        with ThreadPoolExecutor(1) as pool:
            started = pool.submit(m1.start)
            wait_for(
                lambda: started.done() or "waiting for JetStream at" in m1.log(),
                what="m1 to connect and wait for JetStream",
            )
            assert not started.done(), m1.log()  # up, without a meta leader to set up with
            assert "(no meta leader yet)" in m1.log()
            for server in servers[1:]:
                server.start(wait=False)
            started.result(timeout=30)
        a = procs.node("a", "--relay", m1.url)
        b = procs.node("b", "--relay", m1.url)
        wait_registered(a, b)
        befriend(a, b)
        with api(a) as client:
            client.msg_send(b.node_id, b"after the election")
        wait_for(lambda: bodies(b) == ["after the election"], what="b to receive the message")
    finally:
        for server in servers:
            server.kill()
