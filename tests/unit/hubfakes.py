"""Fakes for the relay host's write queue (``tmax_mesh_relay.connection``) in unit
tests: stream contexts whose writes block until released, a node held on a hub
through one, frames, and what the hub answers a frame's sender."""

from __future__ import annotations

import asyncio

from tmax_mesh_relay.connection import Connection
from tmax_mesh_relay.hub import Hub
from tmax_mesh_relay.proto import host_pb2

NODE, SENDER, OTHER = b"n" * 20, b"s" * 20, b"o" * 20


class SlowStream:
    """A stream context whose first write blocks until released; records every write."""

    def __init__(self) -> None:
        self.writes: list[host_pb2.HostFrame] = []
        self.release = asyncio.Event()

    def peer(self) -> str:
        return "ipv4:127.0.0.1:5000"

    async def write(self, frame: host_pb2.HostFrame) -> None:
        self.writes.append(frame)
        if len(self.writes) == 1:
            await self.release.wait()


class GatedStream(SlowStream):
    """Write number i blocks until gates[i] is set."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.gates = [asyncio.Event() for _ in range(n)]

    async def write(self, frame: host_pb2.HostFrame) -> None:
        self.writes.append(frame)
        await self.gates[len(self.writes) - 1].wait()


def held_node(hub: Hub, stream: SlowStream, task: asyncio.Task) -> Connection:
    """``NODE`` registered on ``hub`` through ``stream``, with ``SENDER`` in its allow list."""
    conn = Connection(stream, task, 0.0, hub.limits)
    conn.node_id, conn.takes_frames = NODE, True
    conn.lookup_allow = hub.fingerprints.pack([SENDER])
    hub.routes[NODE] = conn
    return conn


def deliver(n: int, size: int = 10) -> host_pb2.HostFrame:
    """A ``Deliver`` from ``SENDER``, its message id made of ``n``."""
    frame = host_pb2.HostFrame()
    frame.deliver.message_id = bytes([n]) * 16
    frame.deliver.envelope = b"e" * size
    setattr(frame.deliver, "from", SENDER)
    return frame


def ack(size: int = 8) -> host_pb2.HostFrame:
    """An ``Ack`` from ``OTHER`` (anyone may ack any node)."""
    frame = host_pb2.HostFrame()
    frame.ack.message_id = b"a" * 16
    frame.ack.ack = b"k" * size
    setattr(frame.ack, "from", OTHER)
    return frame


class Answers:
    """Collects what the hub answers each frame's sender with."""

    def __init__(self) -> None:
        self.frames: list[host_pb2.HostFrame] = []

    async def __call__(self, frame: host_pb2.HostFrame | None) -> None:
        if frame is not None:
            self.frames.append(frame)


async def first_write_started(hub: Hub, stream: SlowStream, answers: Answers) -> None:
    """Posts frame 0, whose write then blocks until ``stream.release``."""
    await hub.deliver_soon(NODE, deliver(0), answers)
    while not stream.writes:
        await asyncio.sleep(0)


async def written(conn: Connection) -> None:
    """Until everything posted on ``conn`` was written or failed."""
    while conn.flusher is not None:
        await asyncio.shield(conn.flusher)


async def spin(n: int = 20) -> None:
    """Let the event loop run ``n`` rounds (tasks that are ready get to their next wait)."""
    for _ in range(n):
        await asyncio.sleep(0)
