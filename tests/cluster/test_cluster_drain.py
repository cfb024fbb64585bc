"""A member drains a node's subscription when the node's stream ends there
(tests/cluster/test_cluster_stale_subscription.py), on a real nats-server: what
review 6 found that drain alone left. A drain whose round trip NATS never
answered left the subscription in nats-py's table, subscribed again on
reconnect (a ghost answering for a node that left); and frames queued before the
node registered on another member reach only this one, so they are answered here."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import nats
import nats.errors
import pytest
from prometheus_client.registry import CollectorRegistry

from tests.cluster.natsproc import NatsServer
from tests.cluster.test_cluster_stale_subscription import backlog, registered_elsewhere
from tests.polling import wait_for_async
from tmax_mesh_relay.cluster import NODE_PREFIX, Cluster, flush_all, node_subject
from tmax_mesh_relay.limits import HostLimits
from tmax_mesh_relay.pacedpublish import PacedPublisher

if TYPE_CHECKING:
    from nats.aio.msg import Msg

    from tmax_mesh_relay.hub import Hub

pytestmark = pytest.mark.timeout(40)


@pytest.fixture
def core_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server without JetStream (restarts fast): the subscriptions are core NATS."""
    server = NatsServer(tmp_path, jetstream=False)
    try:
        yield server.start()
    finally:
        server.kill()


def empty_hub() -> Any:
    """The hub of a member none of whose nodes is connected now."""
    return SimpleNamespace(
        metrics=SimpleNamespace(registry=CollectorRegistry()),
        limits=HostLimits(),
        routes={},
        clock=lambda: 0.0,
    )


async def test_a_stream_that_ended_here_before_a_nats_reconnect_is_not_answered_for_after_it(
    core_nats: NatsServer,
) -> None:
    """Scenario: node X disconnects from member 1 just as member 1's NATS server goes
    away (restart, failover). After the reconnect member 1 still subscribes to X's
    subject, forever: it answers lookups for X ("offline") racing X's real member,
    holds (and reports ``queued``) frames X's real member delivers, and if X
    registers on member 1 again every frame reaches it through two subscriptions."""
    x = os.urandom(20)
    cluster = Cluster(cast("Hub", empty_hub()), "test")
    cluster.nc = await nats.connect(
        core_nats.url, reconnect_time_wait=0.1, max_reconnect_attempts=-1, connect_timeout=1
    )
    cluster.paced = PacedPublisher(cluster.nc)
    asker: Any = None
    try:
        # As Cluster.attach subscribes for a node registered here.
        cluster._subs[x] = await cluster.nc.subscribe(f"{NODE_PREFIX}{x.hex()}.*", cb=cluster._on_node_msg)
        await flush_all(cluster.nc)

        # The server stops answering (frozen), X's stream ends here: the drain's
        # UNSUB and PING are written, its PONG never comes.
        assert core_nats.proc is not None
        os.kill(core_nats.proc.pid, signal.SIGSTOP)
        cluster.detach(x, b"")
        await wait_for_async(lambda: cluster.nc._pongs, timeout=5, what="the drain's flush")
        # The server goes away and comes back (same port): the member reconnects.
        core_nats.kill()
        await wait_for_async(lambda: not cluster.nc.is_connected, timeout=5, what="the disconnect")
        core_nats.start()
        await wait_for_async(lambda: cluster.nc.is_connected, timeout=10, what="the reconnect")
        # The drain gives up (its flush times out); the stream ended long ago.
        await asyncio.gather(*cluster._tasks)

        asker = await nats.connect(core_nats.url, allow_reconnect=False)
        # No member holds X: NATS answers "no responders", and the asker's member
        # reports X offline from what it knows (not this member's say-so).
        with pytest.raises(nats.errors.NoRespondersError):
            await asker.request(node_subject(x, "l"), os.urandom(20), timeout=2)
    finally:
        for task in list(cluster._tasks):
            task.cancel()
        await asyncio.gather(*cluster._tasks, return_exceptions=True)
        if asker is not None:
            await asker.close()
        await cluster.nc.close()


async def test_frames_queued_before_the_node_registered_elsewhere_are_each_delivered_or_answered(
    core_nats: NatsServer,
) -> None:
    """Scenario: X's stream on member 1 is busy (a backlog queued in its subscription);
    X registers on member 2. Member 2 subscribed after those frames were published,
    so only member 1 has them; member 1 once drained them but dropped each as a
    "stale route" (member 2 "answers it"), and their senders waited out the outbox's
    timeout, as for a stream that simply ended."""
    member2 = await nats.connect(core_nats.url, allow_reconnect=False)
    at_member2: list[Msg] = []

    async def on_member2(msg: Msg) -> None:
        at_member2.append(msg)

    try:
        async with backlog(core_nats.url) as b:
            # X registers on member 2: it subscribes (after the frames went out), then says so.
            await member2.subscribe(f"{NODE_PREFIX}{b.x.hex()}.*", cb=on_member2)
            await flush_all(member2)
            await b.cluster._on_registered(registered_elsewhere(b.x))  # Hub.moved: the stream here ends
            b.cluster.detach(b.x, b"")
            b.hub.release.set()

            await asyncio.gather(*b.cluster._tasks)  # the drain is done: every queued frame was handled
            await b.sender.flush()
            assert at_member2 == [], "member 2 got frames published before it subscribed"
            await b.all_accounted()
    finally:
        await member2.close()
