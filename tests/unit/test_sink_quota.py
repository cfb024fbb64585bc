"""How the node hands messages to sinks that refuse some for lack of quota
(:meth:`tmax_core.node.Node.deliver_many`): a real node (core plugins only,
real SQLite) with test sinks in place of the configured ones."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tmax_core.clock import now_ms
from tmax_core.config import Config, build_registry, config_path
from tmax_core.errors import QuotaExceeded
from tmax_core.identity import NodeIdentity
from tmax_core.model import ReceivedMessage
from tmax_core.node import HELLO_CONTENT_TYPE, Node
from tmax_core.plugin.manager import create_plugin_manager
from tmax_core.store import Store

SENDER = bytes([7]) * 20


def received(body: bytes, content_type: str = "text/plain") -> ReceivedMessage:
    return ReceivedMessage(
        message_id=os.urandom(16),
        from_node_id=SENDER,
        from_alias=None,
        to_node_id=bytes(20),
        # Now: the node's first maintenance pass prunes seen ids far older than
        # the retention, which the remembering assertions read.
        sent_at_ms=now_ms(),
        received_at_ms=now_ms(),
        scope="message",
        content_type=content_type,
        body=body,
    )


class NoRoomForBig:
    """A sink with only ``deliver``: refuses bodies over 3 bytes."""

    name = "small"

    def __init__(self) -> None:
        self.stored: list[bytes] = []

    async def deliver(self, message: ReceivedMessage) -> None:
        if len(message.body) > 3:
            raise QuotaExceeded("no room")
        self.stored.append(message.body)


class Batches:
    """A sink with ``deliver_many`` that refuses bodies starting with ``b"x"``."""

    name = "batches"

    def __init__(self) -> None:
        self.seen: list[list[bytes]] = []

    async def deliver(self, message: ReceivedMessage) -> None:
        raise AssertionError("the node uses deliver_many when a sink has it")

    async def deliver_many(self, messages: list[ReceivedMessage]) -> list[ReceivedMessage]:
        self.seen.append([m.body for m in messages])
        return [m for m in messages if m.body.startswith(b"x")]


@contextlib.asynccontextmanager
async def started_node(state_dir: Path, env: dict[str, str] | None = None) -> AsyncIterator[Node]:
    """A node with the core sinks only, configured from ``env``; stopped on exit."""
    pm = create_plugin_manager(load_entrypoints=False)
    config = Config.load(config_path(state_dir, None), build_registry(pm), env=env)
    n = Node(
        state_dir=state_dir,
        config=config,
        pm=pm,
        identity=NodeIdentity.generate(),
        store=Store.open(state_dir / "state.db"),
        socket_path=state_dir / "s",
    )
    await n.start()
    try:
        yield n
    finally:
        await n.stop()


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with started_node(tmp_path) as n:
        yield n


async def test_refused_messages_skip_later_sinks_and_are_not_remembered(node: Node) -> None:
    first, second = NoRoomForBig(), Batches()
    node.sinks[:] = [first, second]
    ok, big, refused_later, hello = (
        received(b"ok"),
        received(b"big!"),
        received(b"xyz"),
        received(b"", HELLO_CONTENT_TYPE),
    )
    refused = await node.deliver_many([ok, big, refused_later, hello])
    assert refused == [big, refused_later]
    assert first.stored == [b"ok", b"xyz"]  # a sink before may have kept one the next refused
    assert second.seen == [[b"ok", b"xyz"]]  # "big!" went to no later sink; the hello to none
    seen = node.store.seen_check_many(
        [(m.from_node_id, m.message_id) for m in (ok, big, refused_later, hello)]
    )
    assert {message_id for _, message_id in seen} == {ok.message_id, hello.message_id}  # can come again


async def test_when_every_message_is_refused_later_sinks_get_nothing(node: Node) -> None:
    first, second = NoRoomForBig(), Batches()
    node.sinks[:] = [first, second]
    big = received(b"too big")
    assert await node.deliver_many([big]) == [big]
    assert second.seen == []
    assert node.store.seen_check_many([(big.from_node_id, big.message_id)]) == {}


async def test_inbox_sink_uses_the_configured_quota(tmp_path: Path) -> None:
    env = {"TMAX_MESH_INBOX_MAX_BYTES_PER_FRIEND": "300", "TMAX_MESH_INBOX_MAX_BYTES_TOTAL": "1000"}
    async with started_node(tmp_path, env) as n:
        (inbox,) = n.sinks
        assert (inbox.quota.per_sender, inbox.quota.total) == (300, 1000)
        # Each is charged 5 + 10 + 7 + 128 = 150 bytes: two fit in 300.
        msgs = [received(b"hello") for _ in range(3)]
        assert await n.deliver_many(msgs) == msgs[2:]
        with pytest.raises(QuotaExceeded):
            await inbox.deliver(received(b"hello"))
        assert [m.message_id for _r, m in n.store.inbox_list()] == [m.message_id for m in msgs[:2]]


async def test_a_repeat_in_one_batch_gets_the_outcome_of_its_first_copy(node: Node) -> None:
    """A batch [X, X] (a path that doubles envelopes) where the sink refuses X:
    both copies are answered with the refusal, never the second with
    "duplicate", which the sender would take as delivered."""
    from tmax_core import envelope as env
    from tmax_core.model import Friend, IngressSource
    from tmax_core.proto import mesh_pb2

    friend = NodeIdentity.generate()
    await node.db(node.store.add_friend, Friend(node_id=friend.node_id, public_key=friend.public_key))
    node.friends[friend.node_id] = await node.db(node.store.get_friend, friend.node_id)
    node.sinks[:] = [NoRoomForBig()]
    x = env.seal(
        friend,
        to_node_id=node.identity.node_id,
        to_public_key=node.identity.public_key,
        scope="message",
        content_type="text/plain",
        body=b"too big for the sink",
    )
    answer = await node.ingress.handle_batch([x, x], IngressSource("direct", "ipv4:127.0.0.1"))
    entries = env.verify_ack_batch(
        answer,
        expected_signer_public_key=node.identity.public_key,
        expected_signer_node_id=node.identity.node_id,
        sender_node_id=friend.node_id,
        max_bytes=1 << 20,
    )
    (entry,) = entries.values()
    assert (entry.status, entry.reason) == (mesh_pb2.ACK_STATUS_REJECTED, "quota_exceeded")
    assert node.store.seen_check_many([(friend.node_id, env.parse(x, 1 << 20).message_id)]) == {}


def test_the_node_is_what_its_parts_expect(node: Node) -> None:
    """Ingress, outbox and the peer listener type the node by the narrow
    Protocols of tmax_core.nodeports (no import of Node, so no import cycle):
    the real Node has every member they name."""
    from tmax_core import nodeports

    for port in (nodeports.EnvelopeHandler, nodeports.PeerHost, nodeports.IngressHost, nodeports.OutboxHost):
        assert isinstance(node, port), port.__name__
