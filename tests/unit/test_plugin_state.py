"""Plugins keep per-node state on the node (``NodeAPI.plugin_state``), and
every per-node hook is told which node calls it: two real nodes in one
process (core built-ins plus the plugins under test, real SQLite) keep
separate state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tmax_core.config import Config, build_registry, config_path
from tmax_core.errors import Reason
from tmax_core.identity import NodeIdentity
from tmax_core.model import Friend, ReceivedMessage, Transport
from tmax_core.node import Node
from tmax_core.plugin import NodeAPI, hookimpl
from tmax_core.plugin.manager import create_plugin_manager
from tmax_core.store import Store
from tmax_mesh_ratelimit import plugin as ratelimit


class SeesTheNode:
    """Records the node each per-node hook was called for."""

    def __init__(self) -> None:
        self.selected_for: list[Any] = []

    @hookimpl
    def tmax_select_transport(self, friend: Friend, candidates: list[Transport], node: NodeAPI) -> None:
        self.selected_for.append(node)


def make_node(tmp_path: Path, pm: Any) -> Node:
    tmp_path.mkdir()
    env = {"TMAX_MESH_RATELIMIT_BURST": "1", "TMAX_MESH_RATELIMIT_RATE": "0.001"}
    return Node(
        state_dir=tmp_path,
        config=Config.load(config_path(tmp_path, None), build_registry(pm), env=env),
        pm=pm,
        identity=NodeIdentity.generate(),
        store=Store.open(tmp_path / "state.db"),
        socket_path=tmp_path / "s",
    )


@pytest.fixture
async def two_nodes(tmp_path: Path) -> AsyncIterator[tuple[Node, Node, SeesTheNode]]:
    pm = create_plugin_manager(load_entrypoints=False)
    pm.register(ratelimit, name="ratelimit")
    sees = SeesTheNode()
    pm.register(sees, name="sees")
    a, b = make_node(tmp_path / "a", pm), make_node(tmp_path / "b", pm)
    for n in (a, b):
        await n.start()
    yield a, b, sees
    for n in (a, b):
        await n.stop()


def test_the_node_is_a_node_api(two_nodes: tuple[Node, Node, SeesTheNode]) -> None:
    """Every NodeAPI member exists on the real Node (the Protocol is checked
    structurally: a member missing on Node fails here)."""
    a, _, _ = two_nodes
    assert isinstance(a, NodeAPI)


def test_plugin_state_is_per_node_and_made_once(two_nodes: tuple[Node, Node, SeesTheNode]) -> None:
    a, b, _ = two_nodes
    made: list[object] = []

    def factory() -> object:
        made.append(object())
        return made[-1]

    first = a.plugin_state("example", factory)
    assert a.plugin_state("example", factory) is first  # made once per node
    assert b.plugin_state("example", factory) is not first  # another node, other state
    assert a.plugin_state("other", factory) is not first  # another key, other state
    assert len(made) == 3


def test_two_nodes_keep_separate_rate_limits(two_nodes: tuple[Node, Node, SeesTheNode]) -> None:
    """Node a's friend spends its one token on a; the same sender still has
    its token on b (the limiter lives on each node, not in a module global)."""
    a, b, _ = two_nodes
    sender = NodeIdentity.generate()
    friend = Friend(node_id=sender.node_id, public_key=sender.public_key, added_at_ms=1)

    def check(node: Node) -> list[str]:
        node.friends[friend.node_id] = friend
        message = ReceivedMessage(
            message_id=b"\0" * 16,
            from_node_id=friend.node_id,
            from_alias=None,
            to_node_id=node.identity.node_id,
            sent_at_ms=0,
            received_at_ms=0,
            scope="message",
            content_type="text/plain",
            body=b"",
        )
        verdicts = node.pm.hook.tmax_ingress_check(message=message, friend=friend, node=node)
        return [v.reason for v in verdicts]

    assert check(a) == []
    assert check(a) == [Reason.RATE_LIMITED]
    assert check(b) == []  # b's bucket for the same sender is untouched
    assert ratelimit.limiter_for(a) is not ratelimit.limiter_for(b)


def test_select_transport_is_told_the_sending_node(two_nodes: tuple[Node, Node, SeesTheNode]) -> None:
    a, b, sees = two_nodes
    friend = Friend(node_id=b.identity.node_id, public_key=b.identity.public_key)
    a.transports_for(friend)
    b.transports_for(friend)
    assert sees.selected_for == [a, b]
