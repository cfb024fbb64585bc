"""What one node (or two identities of one abuser) must not be able to do to a
relay cluster: knock a member off NATS, make it log tracebacks, multiply or
hoard the envelopes held for offline nodes, or grow NATS's store without bound
(the security review of issue 15's cluster)."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import nats as nats_client
import nats.errors
import pytest
from nats.js.errors import NotFoundError
from prometheus_client.registry import CollectorRegistry

from tests.cluster.natsproc import NatsServer
from tests.cluster.test_cluster_protocol import (
    ack,
    expect,
    held_count,
    held_count_is,
    lookup,
    member,
    register,
    send,
)
from tests.harness import Host, ProcGroup
from tests.metrics import host_metrics, metric
from tests.polling import wait_for_async
from tmax_core.identity import NodeIdentity
from tmax_mesh_relay import held, sharedallow
from tmax_mesh_relay.client import HostSession
from tmax_mesh_relay.cluster import Cluster, node_subject, without_credentials
from tmax_mesh_relay.limits import HostLimits
from tmax_mesh_relay.pacedpublish import PacedPublisher
from tmax_mesh_relay.proto import host_pb2
from tmax_mesh_relay.storeforward import QueueLimits

if TYPE_CHECKING:
    from nats.aio.msg import Msg

    from tmax_mesh_relay.connection import Connection
    from tmax_mesh_relay.hub import Hub

pytestmark = pytest.mark.timeout(90)

DISCONNECTS = "tmax_host_cluster_nats_disconnects_total"


def test_node_subject_refuses_anything_but_a_node_id() -> None:
    assert node_subject(b"\x01" * 20, "d") == "tmax.node." + "01" * 20 + ".d"
    for wrong in (b"", b"\x01" * 19, b"\x01" * 3000):
        with pytest.raises(ValueError, match="not a node id"):
            node_subject(wrong, "l")


@pytest.mark.parametrize("size", [5, 3000])
async def test_a_lookup_of_a_target_that_is_no_node_id_is_malformed_and_keeps_the_member_on_nats(
    procs: ProcGroup, nats_server: NatsServer, size: int
) -> None:
    """A 3,000-byte target once became a subject beyond nats-server's control-line
    limit (the server dropped the member's connection); a 5-byte one made the
    member log a traceback and end the stream when the lookup timed out."""
    m1, m2 = member(procs, "m1", nats_server), member(procs, "m2", nats_server)
    x, y = NodeIdentity.generate(), NodeIdentity.generate()
    sx = await register(m1, x, y)
    sy = await register(m2, y, x)
    try:
        await sy.write(host_pb2.NodeFrame(lookup=host_pb2.Lookup(target=os.urandom(size))))
        assert (await expect(sy, "error")).error.code == "malformed"
        assert (await lookup(sy, x)).found  # the same stream, and m2's NATS link, still work
    finally:
        await sx.close()
        await sy.close()
    assert metric(host_metrics(m2), DISCONNECTS) == 0
    assert "Traceback" not in m2.log_path.read_text(errors="replace")


async def test_an_ack_to_a_long_id_is_malformed_and_keeps_the_member_on_nats(
    procs: ProcGroup, nats_server: NatsServer
) -> None:
    m1, m2 = member(procs, "m1", nats_server), member(procs, "m2", nats_server)
    x, y = NodeIdentity.generate(), NodeIdentity.generate()
    sx = await register(m1, x, y)
    sy = await register(m2, y, x)
    try:
        frame = host_pb2.AckSend(to=os.urandom(3000), message_id=os.urandom(16), ack=b"x")
        await sy.write(host_pb2.NodeFrame(ack_send=frame))
        assert (await expect(sy, "error")).error.code == "malformed"
        assert (await lookup(sy, x)).found
    finally:
        await sx.close()
        await sy.close()
    assert metric(host_metrics(m2), DISCONNECTS) == 0


async def bucket_value(server: NatsServer, bucket: str, key: str) -> bytes | None:
    nc = await nats_client.connect(server.url, connect_timeout=2, allow_reconnect=False)
    try:
        return (await (await nc.jetstream().key_value(bucket)).get(key)).value
    except NotFoundError:
        return None
    finally:
        await nc.close()


async def go_offline(host: Host, nats: NatsServer, who: NodeIdentity, *allow: NodeIdentity) -> None:
    """Register ``who`` on ``host`` and leave: every member then holds for its friends."""
    session = await register(host, who, *allow)
    await session.close()
    key = who.node_id.hex()
    await wait_for_async(
        lambda: bucket_value(nats, sharedallow.ALLOW_BUCKET, key), what="the allow list to be shared"
    )


async def resend(session: HostSession, to: NodeIdentity, envelope: bytes) -> None:
    """What the sender's outbox does with a message answered ``Queued`` and never acknowledged."""
    await session.write(host_pb2.NodeFrame(relay_send=host_pb2.RelaySend(to=to.node_id, envelope=envelope)))


async def test_a_resent_envelope_is_held_once_and_again_after_its_ack(
    procs: ProcGroup, nats_server: NatsServer
) -> None:
    m1, m2 = member(procs, "m1", nats_server), member(procs, "m2", nats_server)
    x, y = NodeIdentity.generate(), NodeIdentity.generate()
    await go_offline(m1, nats_server, x, y)
    sy = await register(m2, y, x)
    try:
        envelope = await send(sy, y, x, b"one message")
        await expect(sy, "queued")
        for _ in range(4):
            await resend(sy, x, envelope)
            await expect(sy, "queued")
        assert await held_count(nats_server) == 1

        sx = await register(m1, x, y)
        try:
            deliver = (await expect(sx, "deliver")).deliver
            assert deliver.envelope == envelope
            await ack(sx, deliver)
            assert (await expect(sy, "ack")).ack.message_id == deliver.message_id
            await wait_for_async(
                lambda: held_count_is(nats_server, 0), what="the acknowledged envelope to leave the stream"
            )
            # The sender is uncharged just after the envelope leaves the stream.
            await wait_for_async(
                lambda: bucket_is(nats_server, held.sender_key(y.node_id), b"0"),
                what="Y's held bytes back to 0",
            )
            with pytest.raises(TimeoutError):  # no second copy
                await expect(sx, "deliver", timeout=1.0)
        finally:
            await sx.close()
        # The ack was lost on its way to the sender's outbox: a re-send is held again.
        await wait_for_async(lambda: no_route(m1), what="m1 to drop X's route")
        await resend(sy, x, envelope)
        await expect(sy, "queued")
        assert await held_count(nats_server) == 1
    finally:
        await sy.close()


async def bucket_is(nats: NatsServer, key: str, value: bytes) -> bool:
    return await bucket_value(nats, held.INDEX_BUCKET, key) == value


def no_route(host: Host) -> bool:
    return metric(host_metrics(host), "tmax_host_registered_nodes") == 0


async def test_one_sender_cannot_fill_the_clusters_held_envelopes_for_everyone(
    procs: ProcGroup, nats_server: NatsServer
) -> None:
    """Two identities of one abuser (an offline X that allows Y, and Y) once filled
    the whole stream through any members, and nothing was held for anyone else."""
    limits = ("--queue-sender-bytes", "200000", "--queue-total-bytes", "2000000")
    m1, m2 = (
        procs.host(name, "--cluster", nats_server.url, "--metrics-listen", "127.0.0.1:0", *limits)
        for name in ("m1", "m2")
    )
    x, y, victim, friend = (NodeIdentity.generate() for _ in range(4))
    await go_offline(m1, nats_server, x, y)
    await go_offline(m1, nats_server, victim, friend)
    sy = await register(m2, y)
    for _ in range(3):  # 3 x 60 KB: within Y's 200,000 bytes
        await send(sy, y, x, os.urandom(60_000))
        await expect(sy, "queued")
    await sy.close()
    sy = await register(m1, y)  # the other member knows what Y holds
    try:
        for _ in range(30):
            await send(sy, y, x, os.urandom(60_000))
            assert (await expect(sy, "error")).error.code == "queue_full"
    finally:
        await sy.close()
    sf = await register(m2, friend)
    try:
        await send(sf, friend, victim, os.urandom(30_000))
        await expect(sf, "queued")
    finally:
        await sf.close()
    assert await held_count(nats_server) == 4
    assert metric(host_metrics(m1), 'tmax_host_drops_total{reason="sender_full"}') == 30


async def test_a_member_limits_how_fast_one_sender_gets_envelopes_held(nats_server: NatsServer) -> None:
    nc = await nats_client.connect(nats_server.url, connect_timeout=2, allow_reconnect=False)
    try:
        errors: defaultdict[str, int] = defaultdict(int)
        stream = await held.HeldStream.open(nc, QueueLimits(), 64 * 1024, 1, errors, clock=lambda: 0.0)
        sender, other, to = os.urandom(20), os.urandom(20), os.urandom(20)
        answers = [await stream.put(to, deliver_frame(sender)) for _ in range(held.HOLD_BURST + 1)]
        assert answers[:-1] == [None] * held.HOLD_BURST
        assert answers[-1] == "hold_rate_limited"
        assert await stream.put(to, deliver_frame(other)) is None  # another sender is not slowed
        assert not errors
    finally:
        await nc.close()


def deliver_frame(sender: bytes) -> host_pb2.HostFrame:
    frame = host_pb2.HostFrame()
    frame.deliver.message_id = os.urandom(16)
    frame.deliver.envelope = b"envelope"
    setattr(frame.deliver, "from", sender)
    return frame


async def stream_configs(server: NatsServer, *names: str) -> dict[str, tuple[int, int, int]]:
    """Per stream: max_bytes, max_msg_size and messages."""
    nc = await nats_client.connect(server.url, connect_timeout=2, allow_reconnect=False)
    try:
        infos = [await nc.jetstream().stream_info(name) for name in names]
    finally:
        await nc.close()
    return {
        name: (info.config.max_bytes or -1, info.config.max_msg_size or -1, info.state.messages)
        for name, info in zip(names, infos, strict=True)
    }


async def test_the_shared_allow_lists_and_every_bucket_are_bounded(
    procs: ProcGroup, nats_server: NatsServer
) -> None:
    """Fresh identities are free: each one that registers with a long allow list and
    leaves once grew the tmax_allow bucket without bound (for the queue TTL)."""
    m1 = procs.host(
        "m1",
        "--cluster",
        nats_server.url,
        "--metrics-listen",
        "127.0.0.1:0",
        "--remembered-allow-bytes",
        "8000",
        "--max-lookup-allow",
        "100",
    )
    for _ in range(10):  # about 1 KB each, in 8,000 bytes
        who = NodeIdentity.generate()
        session = await register(m1, who, *(NodeIdentity.generate() for _ in range(100)))
        await session.close()
    await wait_for_async(
        lambda: metric(host_metrics(m1), 'tmax_host_cluster_errors_total{kind="kv"}') > 0,
        what="the full bucket to refuse a list",
    )
    buckets = ("KV_tmax_allow", "KV_tmax_members", "KV_tmax_cluster", f"KV_{held.INDEX_BUCKET}")
    configs = await stream_configs(nats_server, *buckets)
    assert configs["KV_tmax_allow"][:2] == (8000, 100 * 8 + sharedallow.VALUE_OVERHEAD)
    assert 0 < configs["KV_tmax_allow"][2] < 10
    for name, (max_bytes, max_msg_size, _) in configs.items():
        assert max_bytes > 0 and max_msg_size > 0, f"{name} is unbounded"


class RecordingNats:
    """Just enough of a NATS client for :meth:`Cluster.forward`: every publish succeeds."""

    is_connected = True

    def __init__(self) -> None:
        self.replies: list[str] = []

    async def publish(self, subject: str, payload: bytes, reply: str = "") -> None:
        self.replies.append(reply)


async def test_a_member_keeps_a_bounded_number_of_forwarded_frames_waiting_for_an_answer() -> None:
    """Delivered frames are never answered, so each one waited ANSWER_WAIT_S in memory
    with no cap (a few fast senders could pin gigabytes)."""
    answered: list[host_pb2.HostFrame] = []

    async def answer(conn: object, frame: host_pb2.HostFrame) -> None:
        answered.append(frame)

    hub = SimpleNamespace(
        metrics=SimpleNamespace(registry=CollectorRegistry()),
        limits=HostLimits(),
        clock=lambda: 0.0,
        answer=answer,
    )
    cluster = Cluster(cast("Hub", hub), "test")
    nc = cluster.nc = RecordingNats()
    cluster.paced = PacedPublisher(nc)  # plain publish: RecordingNats has no nats-py buffer
    cluster.pending_max_frames, cluster.pending_max_bytes = 3, 250
    to, conn = os.urandom(20), cast("Connection", object())

    def frame(size: int) -> host_pb2.HostFrame:
        return host_pb2.HostFrame(deliver=host_pb2.Deliver(message_id=os.urandom(16), envelope=b"e" * size))

    assert await cluster.forward(conn, to, frame(100)) is None
    assert await cluster.forward(conn, to, frame(100)) is None
    busy = await cluster.forward(conn, to, frame(100))  # 300 bytes > 250
    assert busy is not None and busy.error.code == "unavailable"
    assert await cluster.forward(conn, to, frame(10)) is None
    busy = await cluster.forward(conn, to, frame(10))  # a fourth frame
    assert busy is not None and busy.error.code == "unavailable"
    assert cluster.metrics.errors["pending_full"] == 2

    # An answer frees its frame's place.
    queued = host_pb2.HostFrame(queued=host_pb2.Queued(to=to))
    await cluster._on_answer(
        cast("Msg", SimpleNamespace(subject=nc.replies[0], headers=None, data=queued.SerializeToString()))
    )
    assert answered == [queued]
    assert await cluster.forward(conn, to, frame(100)) is None


async def test_a_batch_the_cluster_cannot_take_now_is_answered_batch_unavailable() -> None:
    """A batch refused with ``unavailable`` would make its node retry the whole batch
    later; ``batch_unavailable`` sends its envelopes one by one (which the cluster
    answers, retries or holds each)."""
    hub = SimpleNamespace(
        metrics=SimpleNamespace(registry=CollectorRegistry()), limits=HostLimits(), clock=lambda: 0.0
    )
    cluster = Cluster(cast("Hub", hub), "test")
    nc = cluster.nc = RecordingNats()
    cluster.paced = PacedPublisher(nc)  # plain publish: RecordingNats has no nats-py buffer
    cluster.pending_max_bytes = 250
    to, conn = os.urandom(20), cast("Connection", object())
    batch = host_pb2.HostFrame()
    batch.deliver_batch.batch_id = b"b1"
    batch.deliver_batch.envelopes.extend([b"e" * 100, b"e" * 100])
    assert await cluster.forward(conn, to, batch) is None  # 200 bytes: forwarded
    assert nc.replies and cluster.metrics.frames_out["deliver_batch"] == 1

    busy = await cluster.forward(conn, to, batch)  # 400 bytes waiting > 250
    nc.is_connected = False
    lost = await cluster.forward(conn, to, batch)
    for answer in (busy, lost):
        assert answer is not None
        assert (answer.error.code, answer.error.message_id, answer.error.node_id) == (
            "batch_unavailable",
            b"b1",
            to,
        )


async def test_the_workers_nats_server_refuses_clients_without_the_supervisors_token(
    procs: ProcGroup,
) -> None:
    """Any local user could once connect to the supervised nats-server and act as a
    member (forge frames, read the fingerprint key, delete held envelopes)."""
    host = procs.host("host", "--workers", "2")
    url, workers = host.ready["cluster"], host.ready["workers"]
    for token in (None, "guessed"):
        with pytest.raises(nats.errors.Error, match=r"(?i)authorization"):
            await nats_client.connect(url, token=token, connect_timeout=2, allow_reconnect=False)
    # The workers have the token in their environment (readable by this user only), not in argv.
    environ = Path(f"/proc/{workers[0]}/environ").read_bytes().split(b"\0")
    token = next(v for v in environ if v.startswith(b"TMAX_HOST_NATS_TOKEN=")).partition(b"=")[2]
    assert len(token) >= 32
    for pid in [*workers, host.proc.pid]:
        assert token not in Path(f"/proc/{pid}/cmdline").read_bytes()
    nc = await nats_client.connect(url, token=token.decode(), connect_timeout=2, allow_reconnect=False)
    await nc.close()


def test_logs_and_errors_show_no_nats_credentials() -> None:
    assert without_credentials("nats://alice:s3cret@n1.example.org:4222") == "nats://***@n1.example.org:4222"
    assert without_credentials("tls://t0ken@10.0.0.1:4222") == "tls://***@10.0.0.1:4222"
    assert without_credentials("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"
