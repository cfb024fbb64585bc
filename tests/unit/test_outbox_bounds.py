"""The outbox keeps a bounded number of waiting entries in memory: a sender
much faster than its friend fills the database, not the node's memory, and
every message still goes out exactly once. A real node (core plugins only,
real SQLite) with a transport whose answers wait behind a gate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.polling import wait_for_async
from tmax_core import envelope as env
from tmax_core import outbox
from tmax_core.config import Config, build_registry, config_path
from tmax_core.identity import NodeIdentity
from tmax_core.model import Friend, OutgoingMessage
from tmax_core.node import Node
from tmax_core.plugin.manager import create_plugin_manager
from tmax_core.proto import mesh_pb2
from tmax_core.store import Store

LANES_MAX = 300
MESSAGES = 2000


class GatedTransport:
    """Takes batches but answers none until the gate opens; then acks each
    one as the friend would (signed by the friend's key)."""

    name = "gated"
    cost = 1

    def __init__(self, friend: NodeIdentity, to_node_id: bytes) -> None:
        self.friend, self.to_node_id = friend, to_node_id
        self.gate = asyncio.Event()
        self.held = 0  # batches waiting at the gate
        self.delivered: list[bytes] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def can_reach(self, friend: Friend) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        return {}

    async def send(self, friend: Friend, envelope: bytes, timeout: float) -> bytes:
        raise AssertionError("the outbox sends batches to a transport that has send_batch")

    async def send_batch(self, friend: Friend, envelopes: list[bytes], timeout: float) -> bytes:
        self.held += 1
        await self.gate.wait()
        parsed = [env.parse(e, 1 << 20) for e in envelopes]
        self.delivered += [p.message_id for p in parsed]
        entries = [
            mesh_pb2.AckEntry(
                message_id=p.message_id, status=mesh_pb2.ACK_STATUS_ACCEPTED, envelope_hash=p.digest
            )
            for p in parsed
        ]
        return env.make_ack_batch(self.friend, to_node_id=self.to_node_id, entries=entries)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[Node, NodeIdentity]]:
    pm = create_plugin_manager(load_entrypoints=False)
    config = Config.load(config_path(tmp_path, None), build_registry(pm))
    identity, friend = NodeIdentity.generate(), NodeIdentity.generate()
    store = Store.open(tmp_path / "state.db")
    store.add_friend(Friend(node_id=friend.node_id, public_key=friend.public_key, alias="f"))
    node = Node(
        state_dir=tmp_path, config=config, pm=pm, identity=identity, store=store, socket_path=tmp_path / "s"
    )
    await node.start()
    try:
        yield node, friend
    finally:
        await node.stop()


async def test_a_fast_sender_fills_the_database_not_memory(
    node: tuple[Node, NodeIdentity], monkeypatch: pytest.MonkeyPatch
) -> None:
    n, friend = node
    monkeypatch.setattr(outbox, "LANES_MAX_ENTRIES", LANES_MAX)
    gated = GatedTransport(friend, n.identity.node_id)
    n.transports[:] = [gated]
    ids: list[bytes] = []
    per_call = outbox.SEAL_INLINE_MAX  # sealed and launched before send_many returns
    for k in range(0, MESSAGES, per_call):
        sent = await n.send_many(
            [OutgoingMessage(to=friend.node_id, body=f"m{i}".encode()) for i in range(k, k + per_call)]
        )
        ids += [e.message_id for e in sent]
        assert n.outbox.in_memory[0] <= LANES_MAX
    # Every batch the friend's lanes may have in flight is held at the gate...
    await wait_for_async(lambda: gated.held == outbox.LANE_BATCHES, what="the lanes' batches at the gate")
    in_flight = outbox.LANE_BATCHES * outbox.BATCH_MAX
    assert in_flight + LANES_MAX < MESSAGES  # so some of them can only be in the database
    # ...and what waits behind them in memory stays within the bound.
    assert n.outbox.in_memory[0] <= LANES_MAX
    assert n.store.outbox_counts()["queued"] == MESSAGES
    gated.gate.set()
    await wait_for_async(
        lambda: n.store.outbox_counts()["delivered"] == MESSAGES, 30, what="every message delivered"
    )
    assert sorted(gated.delivered) == sorted(ids)  # each exactly once
    assert n.outbox.in_memory == (0, 0)
