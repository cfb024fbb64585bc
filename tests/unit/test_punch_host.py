"""The host's hole-punching coordinator (tmax_mesh_relay.punch), in-process:
fake registered connections, the real observer socket on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.polling import wait_for_async
from tmax_core.tokenbucket import TokenBucket
from tmax_mesh_relay.allowlists import Fingerprints
from tmax_mesh_relay.proto import host_pb2
from tmax_mesh_relay.punch import DIAL_MARGIN_MS, PunchCoordinator, dial_delays_ms


class FakeConn:
    """What the coordinator uses of a hub Connection; answers pings like a node."""

    def __init__(self, node_id: bytes, lookup_rate: float = 100.0) -> None:
        self.id = os.urandom(4).hex()
        self.source = "127.0.0.1"  # the stream's peer, as the hub keys it
        self.node_id = node_id
        self.node_hex = node_id.hex()
        self.lookup_allow = b""
        self.lookup_bucket = TokenBucket(lookup_rate, 2, time.monotonic())
        self.closing = False
        self.log_extra: dict[str, str] = {}
        self.frames: list[host_pb2.HostFrame] = []
        self.answers_pings = True


class Setup:
    def __init__(self) -> None:
        self.routes: dict[bytes, Any] = {}
        self.fingerprints = Fingerprints()
        self.counts: dict[str, int] = {}
        self.coordinator = PunchCoordinator(
            self.routes, self.fingerprints, self.write, time.monotonic, self.counts, max_held=100
        )
        self.writers: list[asyncio.StreamWriter] = []  # observer connections held open

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls) -> AsyncIterator[Setup]:
        """A setup whose coordinator observes on 127.0.0.1; on exit the
        observer connections are closed and the coordinator stopped."""
        s = cls()
        await s.coordinator.start("127.0.0.1")
        yield s
        for writer in s.writers:
            writer.close()
        await s.coordinator.stop()

    async def write(self, conn: Any, frame: host_pb2.HostFrame, kind: str) -> bool:
        conn.frames.append(frame)
        if kind == "ping" and conn.answers_pings:
            pong = host_pb2.Pong(time_ms=frame.ping.time_ms)
            asyncio.get_running_loop().call_soon(self.coordinator.on_pong, conn, pong)
        return True

    def node(self) -> FakeConn:
        conn = FakeConn(os.urandom(20))
        self.routes[conn.node_id] = conn
        return conn

    def allow(self, conn: FakeConn, *others: FakeConn) -> None:
        conn.lookup_allow = self.fingerprints.pack([o.node_id for o in others])

    async def map(self, conn: FakeConn) -> str:
        """Ask for a token and present it on the observer; the mapped address the host told."""
        await self.coordinator.on_listen(conn, host_pb2.PunchListen())
        token = conn.frames[-1].punch_token
        _reader, writer = await asyncio.open_connection("127.0.0.1", token.port)
        writer.write(token.token)
        await writer.drain()
        await wait_for_async(lambda: kinds(conn)[-1] == "punch_mapped", what="the mapping")
        self.writers.append(writer)
        return conn.frames[-1].punch_mapped.addr


def kinds(conn: FakeConn) -> list[str]:
    return [f.WhichOneof("frame") or "" for f in conn.frames]


def refusals(conn: FakeConn) -> list[str]:
    return [f.punch_refused.reason for f in conn.frames if f.WhichOneof("frame") == "punch_refused"]


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    async with Setup.running() as s:
        yield s


def test_dial_delays_make_both_sides_dial_together() -> None:
    delay_a, delay_b = dial_delays_ms(100, 20)
    # Sent at t=0: A hears at 50 ms, B at 10 ms; both must dial at the same moment.
    assert 50 + delay_a == 10 + delay_b == 50 + DIAL_MARGIN_MS


async def test_mapping_is_the_observed_source_and_held(setup: Setup) -> None:
    a = setup.node()
    addr = await setup.map(a)
    local_port = setup.writers[0].get_extra_info("sockname")[1]
    assert addr == f"127.0.0.1:{local_port}"
    assert setup.coordinator.mapped[a.node_id].addr == addr
    setup.coordinator.forget(a)  # the stream ended
    assert a.node_id not in setup.coordinator.mapped


async def test_unknown_token_is_closed_without_a_mapping(setup: Setup) -> None:
    await setup.coordinator.on_listen(setup.node(), host_pb2.PunchListen())  # a token is out for 127.0.0.1
    reader, writer = await asyncio.open_connection("127.0.0.1", setup.coordinator.port)
    writer.write(os.urandom(16))
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the host
    assert setup.coordinator.mapped == {}
    writer.close()


async def test_mutual_friends_get_each_others_address(setup: Setup) -> None:
    a, b = setup.node(), setup.node()
    setup.allow(a, b)
    setup.allow(b, a)
    addr_a, addr_b = await setup.map(a), await setup.map(b)
    await setup.coordinator.on_request(a, host_pb2.PunchRequest(target=b.node_id))
    await wait_for_async(lambda: "punch_go" in kinds(a) and "punch_go" in kinds(b), what="both told")
    go_a = next(f.punch_go for f in a.frames if f.WhichOneof("frame") == "punch_go")
    go_b = next(f.punch_go for f in b.frames if f.WhichOneof("frame") == "punch_go")
    assert (go_a.peer, go_a.peer_addr) == (b.node_id, addr_b)
    assert (go_b.peer, go_b.peer_addr) == (a.node_id, addr_a)
    assert go_a.attempt == go_b.attempt and len(go_a.attempt) == 8
    assert 0 <= go_a.dial_in_ms <= DIAL_MARGIN_MS + 5
    assert setup.counts == {"go": 1}


@pytest.mark.parametrize("allowed_by", ["neither", "target only", "requester only", "offline"])
async def test_not_mutual_or_offline_is_refused_alike(setup: Setup, allowed_by: str) -> None:
    a, b = setup.node(), setup.node()
    if allowed_by in ("target only", "offline"):
        setup.allow(b, a)
    if allowed_by in ("requester only", "offline"):
        setup.allow(a, b)
    await setup.map(a)
    await setup.map(b)
    if allowed_by == "offline":
        del setup.routes[b.node_id]
    await setup.coordinator.on_request(a, host_pb2.PunchRequest(target=b.node_id))
    await wait_for_async(lambda: refusals(a), what="the refusal")
    assert refusals(a) == ["not_found"]
    assert "punch_go" not in kinds(b)


async def test_no_mapping_no_answer_and_rate_limit(setup: Setup) -> None:
    a, b = setup.node(), setup.node()
    setup.allow(a, b)
    setup.allow(b, a)
    await setup.map(a)
    await setup.coordinator.on_request(a, host_pb2.PunchRequest(target=b.node_id))
    await wait_for_async(lambda: refusals(a), what="the refusal")
    assert refusals(a) == ["no_mapping"]  # b never mapped its punch port

    await setup.map(b)
    b.answers_pings = False
    await setup.coordinator.on_request(a, host_pb2.PunchRequest(target=b.node_id))
    await wait_for_async(lambda: len(refusals(a)) == 2, what="the second refusal")
    assert refusals(a)[-1] == "no_answer" and "punch_go" not in kinds(a)

    a.lookup_bucket = TokenBucket(0.001, 1, time.monotonic())
    a.lookup_bucket.take(time.monotonic())
    await setup.coordinator.on_request(a, host_pb2.PunchRequest(target=b.node_id))
    assert refusals(a)[-1] == "rate_limited"
    assert setup.counts == {"no_mapping": 1, "no_answer": 1, "rate_limited": 1}
