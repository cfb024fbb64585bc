"""A write past ``--write-timeout`` drops its stream, whether or not anyone hears
that write fail (an attacker review of the host's write queue): when the expired
write held only frames of senders that were cancelled meanwhile, or the sender
writing it was itself cancelled in the same moment, the stream used to stay open
with its expiry spent, and its next stuck write was never expired, so every later
sender to that node waited for ever."""

from __future__ import annotations

import asyncio

import pytest

from tests.polling import wait_for_async
from tests.unit.hubfakes import (
    NODE,
    Answers,
    GatedStream,
    ack,
    deliver,
    held_node,
    spin,
)
from tmax_mesh_relay import wire
from tmax_mesh_relay.hub import Hub
from tmax_mesh_relay.limits import HostLimits

pytestmark = pytest.mark.asyncio


async def test_an_expired_write_of_cancelled_senders_frames_still_drops_the_stream(
    stuck_task: asyncio.Task,
) -> None:
    # The attacker owns NODE (reads one message, then nothing) and a sender S.
    hub = Hub(HostLimits(write_timeout_s=0.2), wire.HostIdentity(b"unit", []))
    stream, answers = GatedStream(8), Answers()
    conn = held_node(hub, stream, stuck_task)
    hub.connections[conn.id] = conn  # the sweeper walks these
    sweeper = asyncio.create_task(hub.run_sweeper())
    try:
        # 1. An AckSend (anyone may ack any node) is written by its sender's task: write 0.
        first = asyncio.create_task(hub.deliver_ack(NODE, ack()))
        await spin()
        # 2. S's AckSend queues behind it (a flusher and a future); S then disconnects.
        doomed = asyncio.create_task(hub.deliver_ack(NODE, ack()))
        await spin()
        doomed.cancel()
        await spin()
        # 3. NODE reads write 0; the flusher writes S's ack alone (write 1) and NODE stops reading.
        stream.gates[0].set()
        await first
        await spin()
        assert len(stream.writes) == 2
        # 4. The sweeper expires write 1, whose only frame's future was cancelled:
        #    nobody hears it fail, and the stream is dropped all the same.
        await wait_for_async(lambda: conn.closing, what="the stream with an expired write to be dropped")
        # 5. An honest sender's envelope for NODE is stored for it, not left waiting.
        await hub.deliver_soon(NODE, deliver(5), answers)
        await wait_for_async(lambda: answers.frames, what="the honest envelope to be answered")
        assert answers.frames[0].WhichOneof("frame") == "queued"
    finally:
        sweeper.cancel()


async def test_an_expired_fast_path_write_whose_sender_is_also_cancelled_still_drops_the_stream(
    stuck_task: asyncio.Task,
) -> None:
    """The sender's own task writes NODE's frame (send's fast path); the write expires
    and, before the task runs again, the sender's stream ends (its task is cancelled
    too), so the write's failure is never reported: the sweeper still drops NODE at
    its next stuck write, and what waits for NODE is stored."""
    hub = Hub(HostLimits(write_timeout_s=0.2), wire.HostIdentity(b"unit", []))
    stream, answers = GatedStream(8), Answers()
    conn = held_node(hub, stream, stuck_task)
    hub.connections[conn.id] = conn
    sender = asyncio.create_task(hub.deliver_ack(NODE, ack()))  # write 0, by the sender's task
    await spin()
    assert len(stream.writes) == 1 and conn.writer is sender
    conn.expire_write()  # as the sweeper does past write_timeout
    sender.cancel()  # the sender's stream closed in the same loop iteration
    await asyncio.gather(sender, return_exceptions=True)
    sweeper = asyncio.create_task(hub.run_sweeper())
    try:
        await hub.deliver_soon(NODE, deliver(5), answers)  # write 1, stuck
        await wait_for_async(lambda: conn.closing, what="the stuck stream to be dropped")
        await wait_for_async(lambda: answers.frames, what="the envelope waiting for it to be answered")
        assert answers.frames[0].WhichOneof("frame") == "queued"
    finally:
        sweeper.cancel()
