"""Host-side coalescing (issue 17): frames that wait while a node's stream is busy
go out as one ``Frames`` message, in order, to a node that reads them; a node
that does not gets them one by one; the node unpacks them in order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.unit.hubfakes import SlowStream
from tests.unit.relayfakes import FakeNode
from tmax_mesh_relay import wire
from tmax_mesh_relay.connection import Connection
from tmax_mesh_relay.limits import HostLimits
from tmax_mesh_relay.proto import host_pb2
from tmax_mesh_relay.transport import HostLink, RelayTransport


def deliver(n: int, size: int = 10) -> host_pb2.HostFrame:
    return host_pb2.HostFrame(deliver=host_pb2.Deliver(message_id=bytes([n]) * 16, envelope=b"e" * size))


async def busy_then_three(
    takes_frames: bool, limits: HostLimits | None = None, size: int = 10
) -> tuple[SlowStream, list[bool]]:
    """One write in progress, three more frames queued behind it, then the stream frees up."""
    stream = SlowStream()
    task = asyncio.current_task()
    assert task is not None
    conn = Connection(stream, task, 0.0, limits or HostLimits())
    conn.takes_frames = takes_frames
    first = asyncio.create_task(conn.send(deliver(0, size), lambda: 0.0))
    while not stream.writes:
        await asyncio.sleep(0)
    rest = [asyncio.create_task(conn.send(deliver(n, size), lambda: 0.0)) for n in (1, 2, 3)]
    await asyncio.sleep(0)  # they wait for the lock
    stream.release.set()
    return stream, list(await asyncio.gather(first, *rest))


@pytest.mark.asyncio
async def test_frames_waiting_for_a_busy_stream_go_out_as_one() -> None:
    stream, results = await busy_then_three(takes_frames=True)
    assert results == [True] * 4
    assert [w.WhichOneof("frame") for w in stream.writes] == ["deliver", "frames"]
    inner = stream.writes[1].frames.frames
    assert [f.deliver.message_id[0] for f in inner] == [1, 2, 3]  # in order


@pytest.mark.asyncio
async def test_a_node_that_does_not_read_frames_gets_them_one_by_one() -> None:
    stream, results = await busy_then_three(takes_frames=False)
    assert results == [True] * 4
    assert [w.WhichOneof("frame") for w in stream.writes] == ["deliver"] * 4


@pytest.mark.asyncio
async def test_one_coalesced_message_holds_at_most_max_frame_bytes() -> None:
    limits = HostLimits(max_frame_bytes=250)  # two delivers of 100-byte envelopes fit, not three
    stream, results = await busy_then_three(takes_frames=True, limits=limits, size=100)
    assert results == [True] * 4
    assert [w.WhichOneof("frame") for w in stream.writes] == ["deliver", "frames", "deliver"]
    assert [f.deliver.message_id[0] for f in stream.writes[1].frames.frames] == [1, 2]
    assert stream.writes[2].deliver.message_id[0] == 3


@pytest.mark.asyncio
async def test_a_failed_coalesced_write_fails_every_frame_in_it() -> None:
    stream = SlowStream()

    async def broken(frame: host_pb2.HostFrame) -> None:
        stream.writes.append(frame)
        if len(stream.writes) == 1:
            await stream.release.wait()
        else:
            raise ConnectionError("stream reset")

    stream.write = broken  # type: ignore[method-assign]
    task = asyncio.current_task()
    assert task is not None
    conn = Connection(stream, task, 0.0, HostLimits())
    conn.takes_frames = True
    first = asyncio.create_task(conn.send(deliver(0), lambda: 0.0))
    while not stream.writes:
        await asyncio.sleep(0)
    rest = [asyncio.create_task(conn.send(deliver(n), lambda: 0.0)) for n in (1, 2)]
    await asyncio.sleep(0)
    stream.release.set()
    assert await asyncio.gather(first, *rest) == [True, False, False]


@pytest.mark.asyncio
async def test_the_node_handles_each_frame_of_a_frames_message_in_order() -> None:
    node = FakeNode([])
    link = HostLink(RelayTransport(node), wire.parse_relay_url("grpc://127.0.0.1:1"))
    peer = b"p" * 20
    loop = asyncio.get_running_loop()
    acked, queued = loop.create_future(), loop.create_future()
    link._acks[(peer, b"a" * 16)] = acked
    link._acks[(peer, b"q" * 16)] = queued
    frame = host_pb2.HostFrame()
    frame.frames.frames.add().ack.CopyFrom(
        host_pb2.Ack(**{"from": peer, "message_id": b"a" * 16, "ack": b"A"})
    )
    frame.frames.frames.add().queued.CopyFrom(host_pb2.Queued(message_id=b"q" * 16, to=peer))
    frames: list[Any] = [frame, None]

    class Session:
        async def read(self) -> host_pb2.HostFrame | None:
            return frames.pop(0)

    with pytest.raises(ConnectionError):
        await link._read_loop(Session())  # type: ignore[arg-type]
    assert acked.result() == b"A" and queued.result() is None
