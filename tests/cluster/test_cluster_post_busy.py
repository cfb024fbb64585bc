"""Frames from other members for a node whose stream's queue is full are answered
``unavailable`` at once instead of waiting for room (an attacker review): the
node's NATS subscription carries its acks and lookups too, and nats-py buffers
what waits in it (up to 128 MB by default) in the member's memory."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from tests.unit.hubfakes import NODE, Answers, SlowStream, deliver, held_node
from tmax_mesh_relay import wire
from tmax_mesh_relay.cluster import Cluster, node_subject
from tmax_mesh_relay.connection import POST_MAX_FRAMES
from tmax_mesh_relay.hub import Hub
from tmax_mesh_relay.limits import HostLimits

pytestmark = pytest.mark.asyncio


async def test_a_full_queue_does_not_stall_the_nodes_nats_subscription(stuck_task: asyncio.Task) -> None:
    hub = Hub(HostLimits(), wire.HostIdentity(b"unit", []))
    cluster = Cluster(hub, "nats://unused")
    stream, answers = SlowStream(), Answers()
    held_node(hub, stream, stuck_task)
    # The attacker's node is not reading; its own senders filled its queue.
    await hub.deliver_soon(NODE, deliver(0), answers)
    while not stream.writes:  # its first write is in progress (and stuck)
        await asyncio.sleep(0)
    for n in range(POST_MAX_FRAMES):
        await hub.deliver_soon(NODE, deliver(n % 256), answers)
    frame = deliver(7)
    msg = SimpleNamespace(subject=node_subject(NODE, "d"), data=frame.SerializeToString(), reply="")
    handling = asyncio.create_task(cluster._on_node_msg(msg))
    done, _ = await asyncio.wait([handling], timeout=1.0)
    handling.cancel()
    assert done, (
        "_on_node_msg waits on the full queue (up to write_timeout, or for ever for a "
        "slow reader): the node's NATS subscription buffers everything meanwhile"
    )
    assert cluster.metrics.errors["recipient_busy"] == 1  # answered unavailable (the sender retries)
