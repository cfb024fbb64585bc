"""Frames another cluster member sends to a node held here (issue 15): the hub
queues them on the node's stream without waiting for each write
(``Hub.deliver_soon``), so frames arriving while a write is in progress go out
as one ``Frames`` message; a frame whose write fails gets the fallback (held
for the node, or ``batch_unavailable`` for a batch) exactly once; a poster
waits only once the stream's queue is over its bound."""

from __future__ import annotations

import asyncio

import pytest

from tests.unit.hubfakes import (
    NODE,
    SENDER,
    Answers,
    SlowStream,
    deliver,
    first_write_started,
    held_node,
    written,
)
from tests.unit.relayfakes import FakeNode, seal
from tmax_mesh_relay import wire
from tmax_mesh_relay.connection import Connection
from tmax_mesh_relay.hub import Hub
from tmax_mesh_relay.limits import HostLimits
from tmax_mesh_relay.proto import host_pb2

pytestmark = pytest.mark.asyncio


class FailingStream(SlowStream):
    """The first write blocks until released; every later one fails (a reset stream)."""

    async def write(self, frame: host_pb2.HostFrame) -> None:
        await super().write(frame)
        if len(self.writes) > 1:
            raise ConnectionError("stream reset")


def batch(n: int) -> host_pb2.HostFrame:
    frame = host_pb2.HostFrame()
    frame.deliver_batch.batch_id = bytes([n])
    frame.deliver_batch.envelopes.extend([b"x" * 10, b"y" * 10])
    setattr(frame.deliver_batch, "from", SENDER)
    return frame


async def test_frames_posted_during_a_write_go_out_as_one_frames_message(stuck_task: asyncio.Task) -> None:
    hub = Hub(HostLimits(), wire.HostIdentity(b"unit", []))
    stream, answers = SlowStream(), Answers()
    conn = held_node(hub, stream, stuck_task)
    await first_write_started(hub, stream, answers)
    for n in (1, 2, 3):  # each returns while the first write is still blocked
        await hub.deliver_soon(NODE, deliver(n), answers)
    await hub.deliver_soon(NODE, batch(4), answers)
    assert len(stream.writes) == 1 and not stream.release.is_set()

    stream.release.set()
    await written(conn)
    assert [w.WhichOneof("frame") for w in stream.writes] == ["deliver", "frames"]
    inner = stream.writes[1].frames.frames
    assert [f.WhichOneof("frame") for f in inner] == ["deliver"] * 3 + ["deliver_batch"]
    assert [f.deliver.message_id[0] for f in inner[:3]] == [1, 2, 3]  # in order
    assert answers.frames == []  # delivered: nothing to answer
    assert hub.metrics.relayed == 4 + 2
    assert hub.metrics.frames_out["deliver"] == 4 and hub.metrics.frames_out["deliver_batch"] == 1


async def test_frames_of_a_failed_write_are_held_or_refused_exactly_once(stuck_task: asyncio.Task) -> None:
    hub = Hub(HostLimits(), wire.HostIdentity(b"unit", []))
    stream, answers = FailingStream(), Answers()
    conn = held_node(hub, stream, stuck_task)
    await first_write_started(hub, stream, answers)
    for n in (1, 2):
        await hub.deliver_soon(NODE, deliver(n), answers)
    await hub.deliver_soon(NODE, batch(3), answers)

    stream.release.set()
    await written(conn)
    while hub._background:  # the fallbacks run in their own tasks
        await asyncio.gather(*hub._background)
    assert conn.closing and hub.metrics.drops["write_failed"] == 1
    # Frame 0 was written; 1 and 2 are held for the node and their sender hears Queued,
    # once each; the batch is refused as a whole (its node sends it one by one).
    assert [a.WhichOneof("frame") for a in answers.frames] == ["queued", "queued", "error"]
    assert [a.queued.message_id[0] for a in answers.frames[:2]] == [1, 2]
    error = answers.frames[2].error
    assert (error.code, error.message_id, error.node_id) == ("batch_unavailable", bytes([3]), NODE)
    assert [item.message_id[0] for item in hub.store.take_all(NODE)[0]] == [1, 2]
    assert hub.metrics.relayed == 1


async def test_a_poster_waits_only_while_the_streams_queue_is_over_its_bound(
    stuck_task: asyncio.Task,
) -> None:
    hub = Hub(HostLimits(max_frame_bytes=200), wire.HostIdentity(b"unit", []))
    stream, answers = SlowStream(), Answers()
    conn = held_node(hub, stream, stuck_task)
    await first_write_started(hub, stream, answers)
    await hub.deliver_soon(NODE, deliver(1, size=150), answers)
    await hub.deliver_soon(NODE, deliver(2, size=150), answers)  # the queue is now over 200 bytes
    third = asyncio.create_task(hub.deliver_soon(NODE, deliver(3, size=150), answers))
    for _ in range(10):
        await asyncio.sleep(0)
    assert not third.done() and len(conn.pending) == 2

    stream.release.set()
    await third
    await written(conn)
    ids = [w.deliver.message_id[0] for w in stream.writes]
    assert ids == [0, 1, 2, 3]  # one by one: two of them exceed one Frames message
    assert answers.frames == []


async def test_a_senders_relay_sends_are_posted_so_its_next_frames_are_read_during_the_write(
    stuck_task: asyncio.Task,
) -> None:
    """Issue 17: on one host (no cluster), a RelaySend to a node held here is posted
    too: the sender's read loop goes on while the recipient's write runs, and the
    frames it reads meanwhile go out with the next write, as one Frames message."""
    hub = Hub(HostLimits(), wire.HostIdentity(b"unit", []))
    alice, bob = FakeNode([]), FakeNode([])
    stream = SlowStream()
    recipient = held_node(hub, stream, stuck_task)
    recipient.node_id = bob.identity.node_id
    hub.routes = {bob.identity.node_id: recipient}
    sender = Connection(SlowStream(), stuck_task, 0.0, hub.limits)
    sender.node_id = alice.identity.node_id
    envelopes = [seal(alice, bob, f"m{n}".encode()) for n in range(4)]
    for data in envelopes:  # as the sender's read loop does; none waits for a write
        send = host_pb2.RelaySend(to=bob.identity.node_id, envelope=data)
        await asyncio.wait_for(hub._on_relay_send(sender, send), timeout=5)
    assert len(stream.writes) == 1 and not stream.release.is_set()  # the first is still being written

    stream.release.set()
    await written(recipient)
    assert [w.WhichOneof("frame") for w in stream.writes] == ["deliver", "frames"]
    got = [stream.writes[0].deliver, *(f.deliver for f in stream.writes[1].frames.frames)]
    assert [d.envelope for d in got] == envelopes  # in order, each once
    assert hub.metrics.relayed == 4
