"""Between a node's stream ending on a member and that member's unsubscribe reaching
NATS, frames and lookups for the node still arrive there. They once went unanswered,
so the sender's member took the silence for a delivery and its outbox waited out its
send timeout (a CI failure of ``test_a_resent_envelope_is_held_once_and_again_after_its_ack``).
Now such a frame is held as for an offline node, unless the node registered on another
member, which got the frame too and answers it."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import nats
import pytest
from prometheus_client.registry import CollectorRegistry

from tests.polling import poll_async
from tmax_mesh_relay.cluster import NODE_PREFIX, Cluster, flush_all, node_subject
from tmax_mesh_relay.limits import HostLimits
from tmax_mesh_relay.pacedpublish import PacedPublisher
from tmax_mesh_relay.proto import host_pb2

if TYPE_CHECKING:
    from nats.aio.msg import Msg

    from tests.cluster.natsproc import NatsServer
    from tmax_mesh_relay.hub import Hub

pytestmark = pytest.mark.timeout(30)

REPLY = "tmax.answer.sender.1"


class FakeNats:
    """Records publishes; enough of a NATS client for the member's answers."""

    is_connected = True

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, subject: str, payload: bytes, reply: str = "") -> None:
        self.published.append((subject, payload))


class FakeSubscription:
    pending_msgs = 0

    def __init__(self) -> None:
        self.ended = False

    async def drain(self) -> None:
        self.ended = True


class FakeHub:
    """The hub as a member sees it: routes, and what it does with a frame for a node."""

    def __init__(self) -> None:
        self.metrics = SimpleNamespace(registry=CollectorRegistry())
        self.limits = HostLimits()
        self.routes: dict[bytes, Any] = {}
        self.handed: list[bytes] = []
        self.moved_ids: list[bytes] = []

    def clock(self) -> float:
        return 0.0

    async def deliver_soon(self, to: bytes, frame: host_pb2.HostFrame, answer: Any) -> None:
        """As for a node with no stream here: held, and its sender told so."""
        self.handed.append(to)
        await answer(host_pb2.HostFrame(queued=host_pb2.Queued(message_id=frame.deliver.message_id, to=to)))

    async def lookup(self, requester: bytes, target: bytes, *, route: bool = True) -> host_pb2.LookupResult:
        raise AssertionError("a stream that ended here must not be looked up")

    def moved(self, node_id: bytes) -> None:
        self.moved_ids.append(node_id)


def member() -> tuple[Cluster, FakeHub, FakeNats]:
    hub = FakeHub()
    cluster = Cluster(cast("Hub", hub), "test")
    nc = cluster.nc = FakeNats()
    cluster.paced = PacedPublisher(nc)  # plain publish: FakeNats has no nats-py buffer
    return cluster, hub, nc


def deliver_msg(node_id: bytes) -> Msg:
    frame = host_pb2.HostFrame(deliver=host_pb2.Deliver(message_id=os.urandom(16), envelope=b"sealed"))
    msg = SimpleNamespace(subject=node_subject(node_id, "d"), data=frame.SerializeToString(), reply=REPLY)
    return cast("Msg", msg)


class LookupMsg:
    def __init__(self, node_id: bytes) -> None:
        self.subject = node_subject(node_id, "l")
        self.data = os.urandom(20)
        self.reply = "_INBOX.x"
        self.answers: list[host_pb2.LookupResult] = []

    async def respond(self, data: bytes) -> None:
        self.answers.append(host_pb2.LookupResult.FromString(data))


def registered_elsewhere(node_id: bytes) -> Msg:
    return cast("Msg", SimpleNamespace(data=os.urandom(8) + node_id))


async def test_a_frame_for_a_node_whose_stream_ended_here_is_held_and_answered() -> None:
    cluster, hub, nc = member()
    x = os.urandom(20)
    await cluster._on_node_msg(deliver_msg(x))
    assert hub.handed == [x]
    [(subject, payload)] = nc.published
    assert subject == REPLY
    assert host_pb2.HostFrame.FromString(payload).WhichOneof("frame") == "queued"
    assert cluster.metrics.errors["stale_route"] == 0


async def test_a_frame_for_a_node_whose_stream_is_closing_here_is_held_and_answered() -> None:
    cluster, hub, nc = member()
    x = os.urandom(20)
    hub.routes[x] = SimpleNamespace(closing=True, queue_full=True)
    await cluster._on_node_msg(deliver_msg(x))
    assert hub.handed == [x]  # not "busy": the full queue is the closing stream's
    assert host_pb2.HostFrame.FromString(nc.published[0][1]).WhichOneof("frame") == "queued"


async def test_a_lookup_for_a_node_whose_stream_ended_here_finds_nothing() -> None:
    cluster, hub, _ = member()
    x = os.urandom(20)
    for route in (None, SimpleNamespace(closing=True)):
        if route is not None:
            hub.routes[x] = route
        msg = LookupMsg(x)
        await cluster._on_node_msg(cast("Msg", msg))
        assert [(a.target, a.found) for a in msg.answers] == [(x, False)]


async def test_frames_for_a_node_that_registered_on_another_member_are_left_to_that_member() -> None:
    cluster, hub, nc = member()
    x = os.urandom(20)
    sub = FakeSubscription()
    cluster._subs[x] = cast("Any", sub)
    await cluster._on_registered(registered_elsewhere(x))
    assert hub.moved_ids == [x]

    lookup = LookupMsg(x)
    await cluster._on_node_msg(deliver_msg(x))
    await cluster._on_node_msg(cast("Msg", lookup))
    assert (hub.handed, nc.published, lookup.answers) == ([], [], [])
    assert cluster.metrics.errors["stale_route"] == 2

    # Once unsubscribed, a frame that still reaches this member is an offline node's.
    cluster.detach(x, b"")
    await asyncio.gather(*cluster._tasks)
    assert sub.ended
    await cluster._on_node_msg(deliver_msg(x))
    assert hub.handed == [x]


async def test_a_registration_elsewhere_of_a_node_not_subscribed_here_is_not_remembered() -> None:
    """Every member hears of every registration: only those of nodes subscribed here
    are kept (so the set is bounded by this member's subscriptions)."""
    cluster, hub, _ = member()
    x = os.urandom(20)
    await cluster._on_registered(registered_elsewhere(x))
    assert hub.moved_ids == [x]
    await cluster._on_node_msg(deliver_msg(x))
    assert hub.handed == [x]


FRAMES = 5


class SlowHub:
    """The hub as a member sees it. The first frame's write is slow (a busy member),
    so the frames behind it wait in the node's NATS subscription."""

    def __init__(self, node_id: bytes) -> None:
        self.metrics = SimpleNamespace(registry=CollectorRegistry())
        self.limits = HostLimits()
        self.routes: dict[bytes, Any] = {node_id: SimpleNamespace(closing=False, queue_full=False)}
        self.delivered: list[bytes] = []
        self.writing = asyncio.Event()
        self.release = asyncio.Event()

    def clock(self) -> float:
        return 0.0

    async def deliver_soon(self, to: bytes, frame: host_pb2.HostFrame, answer: Any) -> None:
        """Written to the node's stream if it is there (silence), else held and its sender told so."""
        online = to in self.routes
        if not self.writing.is_set():
            self.writing.set()
            await self.release.wait()
        if online:
            self.delivered.append(frame.deliver.message_id)
        else:
            queued = host_pb2.Queued(message_id=frame.deliver.message_id, to=to)
            await answer(host_pb2.HostFrame(queued=queued))

    def moved(self, node_id: bytes) -> None:
        self.routes.pop(node_id, None)


@dataclass
class Backlog:
    """Node X subscribed on a member whose first write to X is slow, and FRAMES frames
    sent to X: one being written, the others queued in X's subscription."""

    x: bytes
    hub: SlowHub
    cluster: Cluster
    sub: Any
    sender: Any
    sent: list[bytes] = field(default_factory=list)
    answers: list[bytes] = field(default_factory=list)  # the frames answered (held)

    async def all_accounted(self) -> None:
        """Every frame is either written to the stream or answered (held): none is silence."""
        hub, answers = self.hub, self.answers
        accounted = await poll_async(lambda: len(hub.delivered) + len(answers) == FRAMES, timeout=3)
        assert accounted, f"{FRAMES} frames sent; delivered {len(hub.delivered)}, answered {len(answers)}"
        assert sorted(hub.delivered + answers) == sorted(self.sent)


@contextlib.asynccontextmanager
async def backlog(url: str) -> AsyncIterator[Backlog]:
    x = os.urandom(20)
    hub = SlowHub(x)
    cluster = Cluster(cast("Hub", hub), "test")
    cluster.nc = await nats.connect(url, allow_reconnect=False)
    cluster.paced = PacedPublisher(cluster.nc)
    sender = await nats.connect(url, allow_reconnect=False)
    try:
        # As Cluster.attach subscribes for a node registered here.
        sub = await cluster.nc.subscribe(f"{NODE_PREFIX}{x.hex()}.*", cb=cluster._on_node_msg)
        cluster._subs[x] = sub
        made = Backlog(x, hub, cluster, sub, sender)

        async def on_answer(msg: Msg) -> None:
            made.answers.append(host_pb2.HostFrame.FromString(msg.data).queued.message_id)

        await sender.subscribe("tmax.answer.sender.*", cb=on_answer)
        await flush_all(cluster.nc)
        for i in range(FRAMES):
            message_id = os.urandom(16)
            frame = host_pb2.HostFrame(deliver=host_pb2.Deliver(message_id=message_id, envelope=b"sealed"))
            reply = f"tmax.answer.sender.{i}"
            await sender.publish(node_subject(x, "d"), frame.SerializeToString(), reply=reply)
            made.sent.append(message_id)
        await sender.flush()
        await asyncio.wait_for(hub.writing.wait(), 5)
        queued = await poll_async(lambda: sub.pending_msgs == FRAMES - 1)
        assert queued, "the frames behind the first never queued"
        yield made
    finally:
        for task in list(cluster._tasks):
            task.cancel()
        await asyncio.gather(*cluster._tasks, return_exceptions=True)
        await cluster.nc.close()
        await sender.close()


async def test_frames_queued_in_the_subscription_when_the_stream_ends_are_each_delivered_or_answered(
    nats_server: NatsServer,
) -> None:
    """On a real nats-server: ``Subscription.unsubscribe`` once dropped the frames
    queued in the node's subscription (behind a slow write) unanswered."""
    async with backlog(nats_server.url) as b:
        # The node's stream ends here (as Hub._cleanup does), then the first write ends.
        del b.hub.routes[b.x]
        b.cluster.detach(b.x, b"")
        await asyncio.sleep(0)  # (the unsubscribe task's first step)
        b.hub.release.set()
        await b.all_accounted()
