"""The host's write queue against abuse (an attacker review of issue 17's change):
a frame's result is its own even when it waits behind others, a sender's task
being cancelled fails nobody else's frames, and nothing a cancelled sender
leaves queued blocks the posters behind it."""

from __future__ import annotations

import asyncio

import pytest

from tests.unit.hubfakes import (
    NODE,
    OTHER,
    Answers,
    GatedStream,
    SlowStream,
    ack,
    deliver,
    first_write_started,
    held_node,
    spin,
    written,
)
from tmax_mesh_relay import wire
from tmax_mesh_relay.hub import Hub
from tmax_mesh_relay.limits import HostLimits
from tmax_mesh_relay.proto import host_pb2

pytestmark = pytest.mark.asyncio


def ack_batch(size: int) -> host_pb2.HostFrame:
    frame = host_pb2.HostFrame()
    frame.ack_batch.batch_id = b"b"
    frame.ack_batch.ack = b"k" * size
    setattr(frame.ack_batch, "from", OTHER)
    return frame


async def test_an_ack_queued_behind_a_full_post_queue_does_not_drop_a_healthy_recipient(
    stuck_task: asyncio.Task,
) -> None:
    """send() returns bool(mine.written) after writing only the oldest max_frame_bytes
    of the queue: when its own frame did not fit it reports False (None), and _write
    drops the recipient as broken (write_failed). Anyone may AckSend any node, so a
    stranger (or ordinary traffic: big envelopes plus an ack or a pong) drops it."""
    hub = Hub(HostLimits(max_frame_bytes=200), wire.HostIdentity(b"unit", []))
    stream, answers = SlowStream(), Answers()
    conn = held_node(hub, stream, stuck_task)
    await first_write_started(hub, stream, answers)  # frame 0 is being written
    await hub.deliver_soon(NODE, deliver(1, size=150), answers)
    await hub.deliver_soon(NODE, deliver(2, size=150), answers)
    acking = asyncio.create_task(hub.deliver_ack(NODE, ack()))
    await spin()
    stream.release.set()
    await asyncio.wait_for(acking, 5)
    await written(conn)
    assert not conn.closing and hub.metrics.drops["write_failed"] == 0
    kinds = [
        f.WhichOneof("frame")
        for w in stream.writes
        for f in (w.frames.frames if w.HasField("frames") else [w])
    ]
    assert kinds == ["deliver", "deliver", "deliver", "ack"]  # each once, in order


async def test_a_frame_left_by_a_cancelled_sender_does_not_block_posters_forever(
    stuck_task: asyncio.Task,
) -> None:
    """A send() cancelled while waiting for the lock (its sender's stream closed, e.g.
    superseded by its own re-registration) leaves its frame queued with no flusher.
    With that frame >= max_frame_bytes (an AckBatchSend may be that big) the queue is
    full: every post() to the node waits on ``room`` for ever (no write is in
    progress, so the sweeper never fires): each sender's read loop, or the NATS
    subscription of the node, hangs."""
    hub = Hub(HostLimits(max_frame_bytes=200), wire.HostIdentity(b"unit", []))
    stream, answers = SlowStream(), Answers()
    conn = held_node(hub, stream, stuck_task)
    first = asyncio.create_task(hub.deliver_ack(NODE, ack()))  # a send() holds the lock
    while not stream.writes:
        await asyncio.sleep(0)
    doomed = asyncio.create_task(hub.deliver_ack(NODE, ack_batch(200)))
    await spin()
    doomed.cancel()  # its sender's stream closed
    await spin()
    stream.release.set()
    await first
    poster = asyncio.create_task(hub.deliver_soon(NODE, deliver(5), answers))
    done, _ = await asyncio.wait([poster], timeout=2)
    poster.cancel()
    assert done, "post() still waiting on room: nobody will ever write the queue"
    await written(conn)
    assert stream.writes[-1].WhichOneof("frame") in ("deliver", "frames")


async def test_cancelling_a_sender_mid_write_does_not_drop_the_recipient(stuck_task: asyncio.Task) -> None:
    """A sender's task that takes the lock writes everyone's posted frames (coalesced).
    When that task is cancelled (the attacker closes or re-registers its own stream at
    the right moment) the CancelledError is not a write timeout: _write_pending settles
    every posted frame False, _posted drops the healthy recipient (write_failed) and
    sends each frame to the fallback (stored + Queued) although it may have been
    written: a stranger drops other nodes' streams and duplicates their messages."""
    hub = Hub(HostLimits(), wire.HostIdentity(b"unit", []))
    stream, answers = GatedStream(4), Answers()
    conn = held_node(hub, stream, stuck_task)
    await hub.deliver_soon(NODE, deliver(0), answers)  # the flusher writes 0
    while not stream.writes:
        await asyncio.sleep(0)
    for n in (1, 2):
        await hub.deliver_soon(NODE, deliver(n), answers)
    attacker = asyncio.create_task(hub.deliver_ack(NODE, ack()))  # waits for the lock
    await spin()
    stream.gates[0].set()
    while len(stream.writes) < 2:  # the attacker's task now writes 1, 2 and its ack
        await asyncio.sleep(0)
    attacker.cancel()
    await spin()
    for gate in stream.gates:
        gate.set()
    await written(conn)
    while hub._background:
        await asyncio.gather(*hub._background, return_exceptions=True)
    assert not conn.closing and hub.metrics.drops["write_failed"] == 0
    assert answers.frames == [] and hub.store.depth(NODE) == 0  # not also held: no duplicates
