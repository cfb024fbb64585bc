"""Cluster members seen from raw host streams (real tmax-host members, real
nats-server): supersede, acks, lookups and store-and-forward across members."""

from __future__ import annotations

import asyncio

import nats as nats_client
import pytest

from tests.cluster.natsproc import NatsServer
from tests.cluster.test_cluster_relay import member
from tests.harness import Host, ProcGroup, wait_for
from tests.metrics import host_metrics, metric
from tests.polling import wait_for_async
from tmax_core import envelope as env
from tmax_core.identity import NodeIdentity
from tmax_mesh_relay import held, sharedallow
from tmax_mesh_relay.client import HostSession
from tmax_mesh_relay.proto import host_pb2

pytestmark = pytest.mark.timeout(90)


async def register(host: Host, who: NodeIdentity, *allow: NodeIdentity) -> HostSession:
    session = await HostSession.open(host.listen, url=host.url)
    await session.register(who, [], [a.node_id for a in allow])
    return session


async def expect(session: HostSession, kind: str, timeout: float = 10.0) -> host_pb2.HostFrame:
    """The next frame that is not a ping; it must be of ``kind``."""
    while True:
        frame = await asyncio.wait_for(session.read(), timeout)
        assert frame is not None, "the stream ended"
        if frame.WhichOneof("frame") != "ping":
            assert frame.WhichOneof("frame") == kind, frame
            return frame


def sealed(sender: NodeIdentity, to: NodeIdentity, body: bytes) -> bytes:
    return env.seal(
        sender,
        to_node_id=to.node_id,
        to_public_key=to.public_key,
        scope="message",
        content_type="text/plain",
        body=body,
    )


async def send(session: HostSession, sender: NodeIdentity, to: NodeIdentity, body: bytes) -> bytes:
    envelope = sealed(sender, to, body)
    await session.write(host_pb2.NodeFrame(relay_send=host_pb2.RelaySend(to=to.node_id, envelope=envelope)))
    return envelope


async def lookup(session: HostSession, target: NodeIdentity) -> host_pb2.LookupResult:
    await session.write(host_pb2.NodeFrame(lookup=host_pb2.Lookup(target=target.node_id)))
    return (await expect(session, "lookup_result")).lookup_result


async def test_supersede_ack_and_lookup_across_members(procs: ProcGroup, nats_server: NatsServer) -> None:
    m1, m2 = member(procs, "m1", nats_server), member(procs, "m2", nats_server)
    x, y, stranger = NodeIdentity.generate(), NodeIdentity.generate(), NodeIdentity.generate()
    old = await register(m2, x, y)
    sy = await register(m2, y, x)
    sz = await register(m2, stranger)
    new = await register(m1, x, y)
    try:
        # X registering on m1 closes its stale stream on m2.
        assert (await expect(old, "error")).error.code == "superseded"

        # Y (m2) -> X (m1): delivered once, on the new stream; the ack crosses back.
        envelope = await send(sy, y, x, b"hello")
        deliver = (await expect(new, "deliver")).deliver
        assert deliver.envelope == envelope and getattr(deliver, "from") == y.node_id
        await new.write(
            host_pb2.NodeFrame(
                ack_send=host_pb2.AckSend(to=y.node_id, message_id=deliver.message_id, ack=b"signed-ack")
            )
        )
        ack = (await expect(sy, "ack")).ack
        assert ack.ack == b"signed-ack" and getattr(ack, "from") == x.node_id

        # Lookups are answered by X's member with X's allow list.
        assert (await lookup(sy, x)).found
        assert not (await lookup(sz, x)).found
    finally:
        for session in (old, sy, sz, new):
            await session.close()
    assert metric(host_metrics(m1), 'tmax_host_cluster_frames_in_total{type="lookup"}') == 2


async def held_count(nats: NatsServer) -> int:
    nc = await nats_client.connect(nats.url, connect_timeout=2, allow_reconnect=False)
    try:
        return (await nc.jetstream().stream_info(held.STREAM)).state.messages
    finally:
        await nc.close()


async def held_count_is(nats: NatsServer, n: int) -> bool:
    return await held_count(nats) == n


async def ack(session: HostSession, deliver: host_pb2.Deliver) -> None:
    frame = host_pb2.AckSend(to=getattr(deliver, "from"), message_id=deliver.message_id, ack=b"signed-ack")
    await session.write(host_pb2.NodeFrame(ack_send=frame))


async def test_held_envelopes_survive_a_member_kill_and_reach_the_recipient_once_on_another(
    procs: ProcGroup, nats_server: NatsServer
) -> None:
    m1, m2 = member(procs, "m1", nats_server), member(procs, "m2", nats_server)
    x, y = NodeIdentity.generate(), NodeIdentity.generate()
    sx = await register(m2, x, y)
    await sx.close()  # X goes offline; m2 remembers whom it allowed
    sy = await register(m2, y, x)
    sent = [await send(sy, y, x, f"held {i}".encode()) for i in range(3)]
    for _ in sent:
        await expect(sy, "queued")
    await sy.close()
    m2.kill()  # SIGKILL: what it stored is in JetStream, not in m2
    assert await held_count(nats_server) == 3

    sx = await register(m1, x, y)
    try:
        got = [(await expect(sx, "deliver")).deliver for _ in sent]
        assert [d.envelope for d in got] == sent
        for deliver in got:
            await ack(sx, deliver)
        await wait_for_async(
            lambda: held_count_is(nats_server, 0), what="the acknowledged envelopes to leave the stream"
        )
    finally:
        await sx.close()
    sx = await register(m1, x, y)  # and nothing comes twice
    try:
        with pytest.raises(TimeoutError):
            await expect(sx, "deliver", timeout=1.0)
    finally:
        await sx.close()
    assert metric(host_metrics(m1), "tmax_host_queue_delivered_total") == 3


async def test_a_member_holds_for_a_node_it_never_saw_only_from_its_friends(
    procs: ProcGroup, nats_server: NatsServer
) -> None:
    m1, m2 = member(procs, "m1", nats_server), member(procs, "m2", nats_server)
    x, y, stranger = NodeIdentity.generate(), NodeIdentity.generate(), NodeIdentity.generate()
    sx = await register(m2, x, y)
    await sx.close()  # m2 shares X's allow list as X goes offline
    nc = await nats_client.connect(nats_server.url, connect_timeout=2, allow_reconnect=False)
    try:
        kv = await nc.jetstream().key_value(sharedallow.ALLOW_BUCKET)

        async def shared() -> bool:
            try:
                await kv.get(x.node_id.hex())
            except nats_client.js.errors.NotFoundError:
                return False
            return True

        await wait_for_async(shared, what="m2 to share X's allow list")
    finally:
        await nc.close()
    sy, sz = await register(m1, y, x), await register(m1, stranger)
    try:
        await send(sy, y, x, b"from a friend")
        await expect(sy, "queued")
        await send(sz, stranger, x, b"from a stranger")
        with pytest.raises(TimeoutError):  # no answer, and nothing held
            await expect(sz, "queued", timeout=1.0)
    finally:
        await sy.close()
        await sz.close()
    assert await held_count(nats_server) == 1


async def test_while_nats_is_down_lookups_across_members_fail_fast_as_unavailable(
    procs: ProcGroup, nats_server: NatsServer
) -> None:
    m1, m2 = member(procs, "m1", nats_server), member(procs, "m2", nats_server)
    x, y, z = NodeIdentity.generate(), NodeIdentity.generate(), NodeIdentity.generate()
    sx, sy, sz = await register(m2, x, y), await register(m1, y, x, z), await register(m1, z, y)
    try:
        assert (await lookup(sy, x)).found
        nats_server.kill()
        wait_for(
            lambda: metric(host_metrics(m1), "tmax_host_cluster_nats_connected") == 0, what="m1 to lose NATS"
        )
        # X is on m2: m1 cannot ask, and says so at once (not "not found").
        await sy.write(host_pb2.NodeFrame(lookup=host_pb2.Lookup(target=x.node_id)))
        error = (await expect(sy, "error", timeout=1.0)).error
        assert (error.code, error.node_id) == ("unavailable", x.node_id)
        assert (await lookup(sy, z)).found  # a node on this member needs no NATS
    finally:
        for session in (sx, sy, sz):
            await session.close()
    assert metric(host_metrics(m1), 'tmax_host_lookups_total{result="unavailable"}') == 1


async def send_batch(session: HostSession, to: NodeIdentity, batch_id: bytes, envelopes: list[bytes]) -> None:
    batch = host_pb2.RelaySendBatch(to=to.node_id, batch_id=batch_id, envelopes=envelopes)
    await session.write(host_pb2.NodeFrame(relay_send_batch=batch))


async def test_a_batch_crosses_members_as_one_deliver_batch_and_its_ack_comes_back(
    procs: ProcGroup, nats_server: NatsServer
) -> None:
    m1, m2 = member(procs, "m1", nats_server), member(procs, "m2", nats_server)
    x, y, offline = NodeIdentity.generate(), NodeIdentity.generate(), NodeIdentity.generate()
    sx, sy = await register(m1, x, y), await register(m2, y, x)
    try:
        envelopes = [sealed(x, y, f"batched {i}".encode()) for i in range(3)]
        await send_batch(sx, y, b"batch-1", envelopes)
        got = (await expect(sy, "deliver_batch")).deliver_batch
        assert (list(got.envelopes), got.batch_id, getattr(got, "from")) == (envelopes, b"batch-1", x.node_id)
        ack = host_pb2.AckBatchSend(to=x.node_id, batch_id=b"batch-1", ack=b"signed-batch-ack")
        await sy.write(host_pb2.NodeFrame(ack_batch_send=ack))
        acked = (await expect(sx, "ack_batch")).ack_batch
        assert (acked.ack, acked.batch_id, getattr(acked, "from")) == (
            b"signed-batch-ack",
            b"batch-1",
            y.node_id,
        )

        # No member holds the recipient: the batch is refused as a whole and nothing is
        # held (the node sends the envelopes one by one, and those are held).
        await send_batch(sx, offline, b"batch-2", [sealed(x, offline, b"to nobody")])
        error = (await expect(sx, "error")).error
        assert (error.code, error.message_id, error.node_id) == (
            "batch_unavailable",
            b"batch-2",
            offline.node_id,
        )
    finally:
        for session in (sx, sy):
            await session.close()
    assert await held_count(nats_server) == 0
    assert metric(host_metrics(m1), 'tmax_host_cluster_frames_out_total{type="deliver_batch"}') == 2
    assert metric(host_metrics(m2), 'tmax_host_cluster_frames_in_total{type="deliver_batch"}') == 1
    assert metric(host_metrics(m2), 'tmax_host_cluster_frames_out_total{type="ack_batch"}') == 1
