"""Between a node's stream ending on a member and that member's unsubscribe reaching
NATS, frames and lookups for the node still arrive there. They once went unanswered,
so the sender's member took the silence for a delivery and its outbox waited out its
send timeout (a CI failure of ``test_a_resent_envelope_is_held_once_and_again_after_its_ack``).
Now such a frame is held as for an offline node, unless the node registered on another
member, which got the frame too and answers it."""

from __future__ import annotations

import asyncio
import os
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest
from prometheus_client.registry import CollectorRegistry

from tmax_mesh_relay.cluster import Cluster, node_subject
from tmax_mesh_relay.limits import HostLimits
from tmax_mesh_relay.pacedpublish import PacedPublisher
from tmax_mesh_relay.proto import host_pb2

if TYPE_CHECKING:
    from nats.aio.msg import Msg

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
    def __init__(self) -> None:
        self.unsubscribed = False

    async def unsubscribe(self) -> None:
        self.unsubscribed = True


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
    assert sub.unsubscribed
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
