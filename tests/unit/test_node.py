"""The node (tmax_core/node.py) on an in-memory store: its start and stop
when a plugin or a collaborator misbehaves, and the refusals of its operations
that the end-to-end tests do not reach (bad input gets a clear error)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from tests.polling import wait_for_async
from tests.unit.nodefakes import MemoryStore, core_config
from tmax_core import node as node_module
from tmax_core.crypto import to_checksum
from tmax_core.errors import ConfigError, NotFound, QuotaExceeded, UsageError
from tmax_core.identity import NodeIdentity
from tmax_core.invites import create_invite
from tmax_core.model import DEFAULT_SCOPE, Friend, InviteScope, OutgoingMessage, ReceivedMessage, Transport
from tmax_core.node import HELLO_CONTENT_TYPE, Node
from tmax_core.plugin import hookimpl
from tmax_core.plugin.manager import create_plugin_manager
from tmax_core.store import Store


class NodeStore(MemoryStore):
    """:class:`MemoryStore` plus the calls the node itself makes at start,
    delivery and stop."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[tuple[bytes, bytes, bytes, str, int]] = []
        self.prune: list[int | Exception] = []  # what the next seen_prune calls return or raise
        self.closed = False

    def list_friends(self) -> list[Friend]:
        return list(self.friends.values())

    def issued_invite_tokens(self) -> dict[bytes, Any]:
        return {}

    def record_received_many(self, records: Sequence[tuple[bytes, bytes, bytes, str, int]]) -> None:
        self.received += records

    def seen_prune(self, older_than_ms: int, max_rows: int) -> int:
        outcome = self.prune.pop(0) if self.prune else 0
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def close(self) -> None:
        self.closed = True


class Named:
    """A transport that only has a name (and can fail to stop)."""

    cost = 5

    def __init__(self, name: str, stop_error: Exception | None = None) -> None:
        self.name, self.stop_error, self.stopped = name, stop_error, False

    async def start(self) -> None: ...

    async def stop(self) -> None:
        self.stopped = True
        if self.stop_error is not None:
            raise self.stop_error

    def can_reach(self, friend: Friend) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        return {}

    async def send(self, friend: Friend, envelope: bytes, timeout: float) -> bytes | None:
        raise ConnectionError("not in these tests")


class Registers:
    """A plugin that registers the given transports."""

    def __init__(self, *transports: Transport) -> None:
        self.transports = transports

    @hookimpl
    def tmax_register_transports(self, register: Any, node: Any) -> None:
        for t in self.transports:
            register(t)


def make_node(tmp_path: Path, *plugins: object, **config: Any) -> Node:
    pm = create_plugin_manager(load_entrypoints=False)
    for plugin in plugins:
        pm.register(plugin)
    return Node(
        state_dir=tmp_path,
        config=core_config(**config),
        pm=pm,
        identity=NodeIdentity.generate(),
        store=cast(Store, NodeStore()),
        socket_path=tmp_path / "node.sock",
    )


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    """A node that is not started: no transports, no outbox scheduler."""
    n = make_node(tmp_path)
    n.scopes[DEFAULT_SCOPE] = InviteScope(DEFAULT_SCOPE, "plain messages")  # as start() registers it
    try:
        yield n
    finally:
        await n.stop()


def store(n: Node) -> NodeStore:
    return cast(NodeStore, n.store)


def befriend(n: Node, **fields: Any) -> Friend:
    other = NodeIdentity.generate()
    friend = Friend(node_id=other.node_id, public_key=other.public_key, **fields)
    n.friends[friend.node_id] = friend
    return friend


def received(friend: Friend, body: bytes = b"hi", content_type: str = "text/plain") -> ReceivedMessage:
    return ReceivedMessage(
        message_id=body.ljust(16, b"."),
        from_node_id=friend.node_id,
        from_alias=friend.alias,
        to_node_id=b"\x00" * 20,
        sent_at_ms=1,
        received_at_ms=2,
        scope=DEFAULT_SCOPE,
        content_type=content_type,
        body=body,
        envelope_hash=b"h" * 32,
    )


# -- start and stop ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sinks", "error"),
    [
        ([], "delivery.sinks is empty: messages would have nowhere to land"),
        (
            ["inbox", "archive"],
            "delivery.sinks names archive, which no installed plugin provides (available: inbox)",
        ),
    ],
)
async def test_start_refuses_sinks_that_are_not_there(tmp_path: Path, sinks: list[str], error: str) -> None:
    n = make_node(tmp_path, delivery__sinks=sinks)
    try:
        with pytest.raises(ConfigError) as info:
            await n.start()
        assert str(info.value) == error
    finally:
        await n.stop()


async def test_start_refuses_two_transports_with_one_name(tmp_path: Path) -> None:
    n = make_node(tmp_path, Registers(Named("direct")))  # the core registers "direct" too
    try:
        with pytest.raises(ConfigError, match="two plugins register a transport named 'direct'"):
            await n.start()
    finally:
        await n.stop()


async def test_a_transport_that_fails_to_stop_does_not_stop_the_rest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken, fine = Named("broken", RuntimeError("stuck")), Named("fine")
    n = make_node(tmp_path, Registers(fine, broken))
    await n.start()
    with caplog.at_level(logging.ERROR, logger="tmax_mesh.node"):
        await n.stop()
    assert broken.stopped and fine.stopped
    assert store(n).closed
    assert "stopping transport broken failed" in caplog.text


async def test_a_failed_maintenance_pass_is_logged_and_the_next_one_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(node_module, "MAINTENANCE_INTERVAL_S", 0.01)
    n = make_node(tmp_path)
    store(n).prune = [OSError("disk I/O error"), 3]
    with caplog.at_level(logging.INFO, logger="tmax_mesh.node"):
        await n.start()
        try:
            await wait_for_async(lambda: "pruned 3 seen message ids" in caplog.text, what="the second pass")
        finally:
            await n.stop()
    assert "maintenance pass failed" in caplog.text


# -- the database ------------------------------------------------------------------------


async def test_a_store_call_that_fails_inline_raises_to_its_caller(node: Node) -> None:
    def broken(batch: Sequence[Any]) -> None:
        raise ValueError(f"bad batch of {len(batch)}")

    with pytest.raises(ValueError, match="bad batch of 2"):
        await node.db_batch(broken, [1, 2])
    assert await node.db_batch(len, [1, 2, 3]) == 3  # the lock was released


# -- delivery ------------------------------------------------------------------------------


class OneByOne:
    """A sink without deliver_many, with room for ``room`` messages."""

    def __init__(self, name: str, room: int) -> None:
        self.name, self.room = name, room
        self.got: list[bytes] = []

    async def deliver(self, message: ReceivedMessage) -> None:
        if len(self.got) >= self.room:
            raise QuotaExceeded("full")
        self.got.append(message.body)


async def test_a_message_a_sink_has_no_room_for_goes_no_further_and_is_not_remembered(node: Node) -> None:
    friend = befriend(node)
    first, second = OneByOne("first", room=1), OneByOne("second", room=10)
    node.sinks = [first, second]
    refused = await node.deliver_many([received(friend, b"a"), received(friend, b"b")])
    assert [m.body for m in refused] == [b"b"]
    assert first.got == [b"a"] and second.got == [b"a"]
    assert [r[1] for r in store(node).received] == [b"a".ljust(16, b".")]
    assert friend.last_seen_ms == 2


async def test_a_hello_is_remembered_but_reaches_no_sink(node: Node) -> None:
    friend = befriend(node)
    sink = OneByOne("inbox", room=10)
    node.sinks = [sink]
    assert await node.deliver_many([received(friend, b"", HELLO_CONTENT_TYPE)]) == []
    assert sink.got == [] and len(store(node).received) == 1


async def test_only_a_friends_ack_reaches_the_outbox(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    handled: list[tuple[bytes, bytes]] = []

    async def handle_async_ack(ack: bytes, friend: Friend) -> None:
        handled.append((ack, friend.node_id))

    monkeypatch.setattr(node.outbox, "handle_async_ack", handle_async_ack)
    friend = befriend(node)
    await node.handle_ack(b"from a stranger", NodeIdentity.generate().node_id)
    await node.handle_ack(b"from the friend", friend.node_id)
    assert handled == [(b"from the friend", friend.node_id)]


# -- refusals of the local API's operations ----------------------------------------------------


async def test_sending_to_a_node_id_that_is_not_a_friend_is_not_found(node: Node) -> None:
    with pytest.raises(NotFound, match="no such friend"):
        await node.send(NodeIdentity.generate().node_id, b"hi")


async def test_sending_in_an_unknown_scope_is_refused_and_stores_nothing(node: Node) -> None:
    friend = befriend(node, alias="bob")
    with pytest.raises(UsageError, match="unknown scope 'files'"):
        await node.send_many(
            [OutgoingMessage(to="bob", body=b"ok"), OutgoingMessage(friend.node_id, b"x", scope="files")]
        )
    assert store(node).outbox == {}


async def test_a_friend_is_found_by_alias_in_any_case_or_by_node_id(node: Node) -> None:
    friend = befriend(node, alias="Bob")
    assert node.find_friend(" bob ") is friend
    assert node.find_friend(to_checksum(friend.node_id).lower()) is friend
    with pytest.raises(NotFound, match="no friend with node id"):
        node.find_friend("0x" + "ab" * 20)
    with pytest.raises(UsageError, match="not a node id"):
        node.find_friend("0x1234")


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"alias": "0xbob"}, "an alias cannot start with 0x"),
        ({"relay_hosts": ["file:///etc/passwd"]}, "--relay 'file:///etc/passwd'"),
        ({"endpoints": ["unix:/run/x.sock"]}, "--endpoint 'unix:/run/x.sock'"),
        ({"scopes": ["files"]}, "unknown scope 'files' (known: message)"),
    ],
)
async def test_an_invite_with_bad_options_is_refused_before_anything_is_stored(
    node: Node, options: dict[str, Any], error: str
) -> None:
    args: dict[str, Any] = {
        "ttl_ms": None,
        "uses": None,
        "scopes": [],
        "relay_hosts": [],
        "endpoints": [],
        "alias": None,
        "rate_limit": None,
    }
    with pytest.raises(UsageError) as info:
        await node.create_invite(**{**args, **options})
    assert error in str(info.value) and store(node).invites == {}


async def test_accepting_an_invite_with_a_bad_alias_is_refused(node: Node) -> None:
    token = create_invite(NodeIdentity.generate(), ttl_ms=60_000).token
    with pytest.raises(UsageError, match="an alias cannot be empty"):
        await node.accept_invite(token, alias="   ")
    assert node.friends == {}


# -- friends' contacts and keys --------------------------------------------------------------


async def test_a_contact_with_unusable_entries_keeps_the_rest_and_says_what_was_dropped(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="tmax_mesh.node"):
        hosts, endpoints = node.checked_contact(
            b"\x01" * 20, ["grpc://relay.example:7000", "file:///etc/passwd"], ["192.0.2.1:7001", "unix:/x"]
        )
    assert (hosts, endpoints) == (["grpc://relay.example:7000"], ["192.0.2.1:7001"])
    assert "dropped 1 relay host(s)" in caplog.text and "1 endpoint(s)" in caplog.text


async def test_a_failed_refill_of_one_time_keys_is_logged(
    node: Node, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    friend = befriend(node)

    def no_entropy(key: bytes) -> None:
        raise OSError("no entropy")

    monkeypatch.setattr(node.ephemeral, "fill", no_entropy)
    with caplog.at_level(logging.WARNING, logger="tmax_mesh.node"):
        node.prepare_ephemeral(friend)
        await wait_for_async(
            lambda: "making one-time keys ahead failed: no entropy" in caplog.text,
            what="the refill's warning",
        )
        node.prepare_ephemeral(friend)  # the failed refill is not left "queued": a new one is asked for
        await wait_for_async(lambda: caplog.text.count("no entropy") == 2, what="the second refill's warning")
