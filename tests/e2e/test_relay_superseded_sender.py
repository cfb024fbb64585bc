"""Real processes: a sender whose frames wait for room on a recipient's queue is
not stuck when that recipient is superseded (the sweeper used to skip closing
streams, and the stream's end neither stopped its writer nor woke the senders)."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.hostqueue import FILLING_BODY, scrape, sender_waits_for_room
from tests.e2e.test_relay_abuse import Clients, N, clients, frame, relay, seal  # noqa: F401 (fixture)
from tests.harness import ProcGroup
from tests.polling import wait_for_async
from tmax_core.identity import NodeIdentity
from tmax_mesh_relay.client import HostSession
from tmax_mesh_relay.proto import host_pb2

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_a_sender_blocked_on_a_superseded_recipient_recovers(
    procs: ProcGroup,
    clients: Clients,  # noqa: F811 (the fixture imported above)
) -> None:
    clients.host = procs.host("host", "--metrics-listen", "127.0.0.1:0")
    victim_id = NodeIdentity.generate()
    old = await HostSession.open(clients.host.listen)
    await old.register(victim_id, [], [])  # never reads
    sender, sender_id = await clients.node()

    async def flood() -> None:
        for n in range(10):  # fills gRPC's buffers, then the queue: the sender's read loop waits on room
            await relay(sender, victim_id, seal(sender_id, victim_id, bytes([n]) * FILLING_BODY))

    flooding = asyncio.create_task(flood())

    async def stuck() -> bool:
        return sender_waits_for_room(await scrape(clients.host))

    # The scenario: gRPC's buffers toward the old stream are full and so is its queue.
    await wait_for_async(stuck, 10, 0.02, what="the sender's read loop to wait for room on the old stream")
    await clients.node(victim_id)  # supersedes the old stream
    await asyncio.wait_for(flooding, 15)  # gRPC's buffers take them; the host reads some
    await sender.write(N(ping=host_pb2.Ping(time_ms=1)))
    # --write-timeout is 5 s; closing the old stream waits that long for its lock at most.
    try:
        await frame(sender, "pong", timeout=12)
    except TimeoutError:
        raise AssertionError("the sender's read loop still waits on the superseded stream's room") from None
    await old.close()
