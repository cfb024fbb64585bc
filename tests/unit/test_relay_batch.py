"""Relay batches (issue 17): a node's RelaySendBatch goes to the recipient as one
DeliverBatch and comes back as one signed batch ack; a batch the host cannot
deliver at once, or a host that takes no batches, leaves the envelopes to be
sent one by one; the host checks and paces each envelope of a batch."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from tests.polling import wait_for_async
from tests.unit.relayfakes import FakeNode, connected, relay_hosts, relay_transports, seal
from tmax_core import envelope as env
from tmax_core.identity import NodeIdentity
from tmax_core.model import IngressSource
from tmax_core.proto import mesh_pb2
from tmax_mesh_relay.client import HostSession
from tmax_mesh_relay.hub import Hub
from tmax_mesh_relay.proto import host_pb2
from tmax_mesh_relay.transport import RelayTransport

pytestmark = pytest.mark.asyncio(loop_scope="module")

MAX_BATCH = 8


class BatchNode(FakeNode):
    """A fake node whose ingress also answers batches (one signed batch ack)."""

    def __init__(self, relays: list[str]) -> None:
        super().__init__(relays)
        self.batches: list[tuple[list[bytes], IngressSource]] = []

    async def handle_envelope_batch(
        self, envelopes: list[bytes], source: IngressSource, nonce: bytes = b""
    ) -> bytes:
        self.batches.append((envelopes, source))
        parsed = [env.parse(e, len(e)) for e in envelopes]
        entries = [
            mesh_pb2.AckEntry(message_id=p.message_id, envelope_hash=p.digest, status=1) for p in parsed
        ]
        return env.make_ack_batch(
            self.identity, to_node_id=parsed[0].from_node_id, entries=entries, nonce=nonce
        )


Start = Callable[[int], Awaitable[tuple[str, Hub]]]


@pytest_asyncio.fixture(loop_scope="module")
async def hosts() -> AsyncIterator[Start]:
    """Starts in-process hosts taking ``max_batch`` envelopes per batch (0: an older host)."""
    async with relay_hosts() as start:

        async def start_batching(max_batch: int) -> tuple[str, Hub]:
            return await start(max_batch=max_batch, rate_per_s=0.01)

        yield start_batching


@pytest_asyncio.fixture(loop_scope="module")
async def started() -> AsyncIterator[Callable[[BatchNode], Awaitable[RelayTransport]]]:
    async with relay_transports() as start:
        yield start


async def pair(url: str, started: Any) -> tuple[BatchNode, BatchNode, RelayTransport]:
    a, b = BatchNode([url]), BatchNode([url])
    ta, tb = await started(a), await started(b)
    await wait_for_async(lambda: connected(ta) and connected(tb), what="both transports registered")
    b.befriend(a, [url])
    return a, b, ta


async def test_a_batch_travels_as_one_frame_with_one_verified_ack(hosts: Start, started: Any) -> None:
    url, hub = await hosts(MAX_BATCH)
    a, b, ta = await pair(url, started)
    friend_b = a.befriend(b, [url])
    envelopes = [seal(a, b, f"m{i}".encode()) for i in range(MAX_BATCH)]
    ack = await ta.send_batch(friend_b, envelopes, 5.0)
    assert ack is not None
    entries = env.verify_ack_batch(  # exactly as the outbox verifies it
        ack,
        expected_signer_public_key=b.identity.public_key,
        expected_signer_node_id=b.identity.node_id,
        sender_node_id=a.identity.node_id,
        max_bytes=1 << 20,
    )
    wanted = {(p.message_id, p.digest) for p in (env.parse(e, len(e)) for e in envelopes)}
    assert set(entries) == wanted
    assert b.batches == [(envelopes, IngressSource("relay", a.node_id_hex))] and not b.envelopes
    assert hub.metrics.frames_in["relay_send_batch"] == 1 and hub.metrics.frames_out["deliver_batch"] == 1
    assert hub.metrics.frames_in["ack_batch_send"] == 1 and hub.metrics.relayed == MAX_BATCH
    assert ta.status()["sent"] == MAX_BATCH


async def test_the_host_paces_a_batch_per_envelope(hosts: Start, started: Any) -> None:
    url, hub = await hosts(MAX_BATCH)
    a, b, ta = await pair(url, started)
    friend_b = a.befriend(b, [url])
    await wait_for_async(lambda: hub.metrics.frames_in["set_lookup_allow"] == 2, what="allow lists pushed")
    bucket = hub.routes[a.identity.node_id].bucket
    before = bucket.tokens
    await ta.send_batch(friend_b, [seal(a, b) for _ in range(5)], 5.0)
    # one token per envelope, not per frame (the host refills 0.01 a second here)
    assert before - bucket.tokens == pytest.approx(5, abs=0.01)


async def test_an_offline_recipient_leaves_the_batch_to_single_sends(hosts: Start, started: Any) -> None:
    url, hub = await hosts(MAX_BATCH)
    a = BatchNode([url])
    ta = await started(a)
    await wait_for_async(lambda: connected(ta), what="a registered")
    offline = BatchNode([url])
    friend = a.befriend(offline, [url])
    assert await ta.send_batch(friend, [seal(a, offline) for _ in range(3)], 5.0) is None
    assert hub.store.depth(offline.identity.node_id) == 0  # nothing kept: the single sends are
    assert hub.metrics.drops["batch_unavailable"] == 1


async def test_a_host_without_batches_gets_none(hosts: Start, started: Any) -> None:
    url, hub = await hosts(0)
    a, b, ta = await pair(url, started)
    assert await ta.send_batch(a.befriend(b, [url]), [seal(a, b), seal(a, b)], 5.0) is None
    assert hub.metrics.frames_in["relay_send_batch"] == 0


async def test_a_single_envelope_or_an_oversized_batch_is_not_batched(hosts: Start, started: Any) -> None:
    url, hub = await hosts(2)
    a, b, ta = await pair(url, started)
    friend_b = a.befriend(b, [url])
    assert await ta.send_batch(friend_b, [seal(a, b)], 5.0) is None
    assert await ta.send_batch(friend_b, [seal(a, b) for _ in range(3)], 5.0) is None
    assert hub.metrics.frames_in["relay_send_batch"] == 0


async def raw_session(url: str) -> tuple[HostSession, NodeIdentity]:
    identity = NodeIdentity.generate()
    session = await HostSession.open(url.removeprefix("grpc://"), None, url=url)
    await session.register(identity, [], [])
    return session, identity


async def error_for(session: HostSession, batch: host_pb2.RelaySendBatch) -> host_pb2.Error:
    await session.write(host_pb2.NodeFrame(relay_send_batch=batch))
    while True:
        frame = await session.read()
        assert frame is not None
        if frame.WhichOneof("frame") == "error":
            return frame.error


async def test_the_host_refuses_bad_batches_whole(hosts: Start, started: Any) -> None:
    url, hub = await hosts(MAX_BATCH)
    b = BatchNode([url])
    await started(b)
    await wait_for_async(lambda: b.identity.node_id in hub.routes, what="b registered")
    session, identity = await raw_session(url)
    me = FakeNode([])
    me.identity = identity
    other = FakeNode([])
    to = b.identity.node_id
    try:
        mine = seal(me, b)
        cases = [
            ([mine, seal(other, b)], b"x", "sender_mismatch"),  # claimed from someone else
            ([mine, seal(me, other)], b"x", "malformed"),  # for another recipient
            ([mine] * (MAX_BATCH + 1), b"x", "malformed"),  # too many
            ([mine, mine], b"", "malformed"),  # no batch id
            ([mine, mine], b"x" * 17, "malformed"),  # batch id too long
            ([mine, b"\x00" * (hub.limits.max_frame_bytes + 1)], b"x", "too_large"),
        ]
        for envelopes, batch_id, code in cases:
            error = await error_for(
                session, host_pb2.RelaySendBatch(to=to, batch_id=batch_id, envelopes=envelopes)
            )
            assert (error.code, error.message_id, error.node_id) == (code, batch_id, to)
        assert not b.batches and not b.envelopes
    finally:
        await session.close()
