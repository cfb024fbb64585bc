"""What a friend tells a node about itself (contact card, invite): kept only
as far as it is well-formed and bounded (issue 13, items 7 and 9)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tmax_core.config import Config, build_registry, config_path
from tmax_core.identity import NodeIdentity
from tmax_core.model import Friend
from tmax_core.node import Node
from tmax_core.plugin.manager import create_plugin_manager
from tmax_core.store import Store


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[Node, Friend]]:
    pm = create_plugin_manager(load_entrypoints=False)
    config = Config.load(config_path(tmp_path, None), build_registry(pm))
    identity, other = NodeIdentity.generate(), NodeIdentity.generate()
    store = Store.open(tmp_path / "state.db")
    friend = store.add_friend(Friend(node_id=other.node_id, public_key=other.public_key, alias="f"))
    n = Node(
        state_dir=tmp_path, config=config, pm=pm, identity=identity, store=store, socket_path=tmp_path / "s"
    )
    n.friends[friend.node_id] = friend  # as start() would load it; not started: no outbox, no transports
    try:
        yield n, friend
    finally:
        await n.stop()


async def test_a_later_card_is_screened_and_logged_once(
    node: tuple[Node, Friend], caplog: pytest.LogCaptureFixture
) -> None:
    n, friend = node
    spray = [
        "unix:/run/victim.sock",
        "[ff02::1]:80",
        *(f"10.0.{i // 256}.{i % 256}:22" for i in range(50_000)),
    ]
    hosts = ["grpcs://relay.example:443", "file:///etc/passwd"]
    with caplog.at_level(logging.WARNING, logger="tmax_mesh.node"):
        for _ in range(3):  # the card rides on every message
            await n.update_contact(n.friends[friend.node_id], hosts, spray)
    stored = n.store.get_friend(friend.node_id)
    assert stored is not None
    assert stored.endpoints == spray[2:34] and n.friends[friend.node_id].endpoints == spray[2:34]
    assert stored.relay_hosts == ["grpcs://relay.example:443"]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert (
        "dropped 1 relay host(s)" in warnings[0] and "49970 endpoint(s)" in warnings[0]
    )  # 2 bad, 49968 over the bound
    assert "unix:/run/victim.sock" in warnings[0]
    # A card with nothing usable leaves the stored contact as it was.
    await n.update_contact(n.friends[friend.node_id], ["ftp://x"], ["unix:/x"])
    assert n.store.get_friend(friend.node_id).endpoints == spray[2:34]


@pytest.mark.parametrize(
    "suggested",
    [
        "0x" + "ab" * 20,
        "0Xbob",
        "\x1b[2Jbob",
        "bob\nfrom 0x1234",
        "evil\u202etxt.exe",
        " bob",
        "x" * 200,
        "\u200b",
    ],
)
async def test_a_bad_suggested_alias_falls_back_to_a_generated_one(
    node: tuple[Node, Friend], suggested: str
) -> None:
    n, _friend = node
    newcomer = NodeIdentity.generate().node_id
    assert n.remote_alias(suggested, newcomer) == f"peer-{newcomer.hex()[:8]}"


async def test_free_alias_is_case_insensitive_like_the_store(node: tuple[Node, Friend]) -> None:
    n, friend = node  # alias "f"
    newcomer = NodeIdentity.generate().node_id
    assert n.remote_alias("F", newcomer) == "F-2"
    assert n.remote_alias("carol", newcomer) == "carol"
    assert n.remote_alias("", newcomer) is None
    assert n.find_friend("F") is n.friends[friend.node_id]
