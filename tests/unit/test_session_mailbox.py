"""Unit tests of the session_mailbox plugin: store, mailbox + sink, hooks,
the gRPC service with its client (in process), and the CLI command."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tmax_core.cli import CommandRegistry, build_parser
from tmax_core.config import Config, build_registry
from tmax_core.errors import ConfigError, MeshError, NotFound, StateDirError, UsageError
from tmax_core.model import Friend, ReceivedMessage
from tmax_core.plugin.helpers import PluginStates
from tmax_core.plugin.manager import create_plugin_manager
from tmax_mesh_session_mailbox import cli as session_cli
from tmax_mesh_session_mailbox import plugin
from tmax_mesh_session_mailbox.client import PLUGIN_UNAVAILABLE, SessionMailboxClient
from tmax_mesh_session_mailbox.mailbox import SessionMailbox, SessionMailboxSink
from tmax_mesh_session_mailbox.service import add_to_server
from tmax_mesh_session_mailbox.store import (
    DB_NAME,
    LOCAL,
    REMOTE,
    SessionMessage,
    SessionStore,
    validate_session_name,
)

SENDER = bytes(range(20))


def local(mid: int, session: str = "root", frm: str = "alice", body: bytes = b"hi") -> SessionMessage:
    return SessionMessage(
        message_id=mid.to_bytes(16, "big"),
        session=session,
        origin=LOCAL,
        from_session=frm,
        from_node_id=None,
        from_alias=None,
        sent_at_ms=1000 + mid,
        received_at_ms=1000 + mid,
        scope=None,
        content_type="text/plain",
        body=body,
    )


def received(mid: int, alias: str | None = None, body: bytes = b"remote") -> ReceivedMessage:
    return ReceivedMessage(
        message_id=mid.to_bytes(16, "big"),
        from_node_id=SENDER,
        from_alias=alias,
        to_node_id=bytes(20),
        sent_at_ms=5,
        received_at_ms=6,
        scope="message",
        content_type="text/plain",
        body=body,
        reply_to=b"r" * 16,
        via="direct",
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SessionStore]:
    s = SessionStore.open(tmp_path / DB_NAME)
    yield s
    s.close()


# -- store ---------------------------------------------------------------------------


def test_store_file_is_private_and_wal(tmp_path: Path, store: SessionStore) -> None:
    assert stat.S_IMODE(os.stat(tmp_path / DB_NAME).st_mode) == 0o600
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_store_list_unread_ack(store: SessionStore) -> None:
    for i in range(3):
        assert store.insert(local(i, body=f"m{i}".encode()))
    store.insert(local(9, session="planner"))
    assert store.unread("root") == 3 and store.unread("planner") == 1 and store.unread("nobody") == 0
    assert [m.body for m in store.list_messages("root")] == [b"m0", b"m1", b"m2"]
    assert [m.body for m in store.list_messages("root", limit=2)] == [b"m0", b"m1"]

    assert store.ack("root", [local(1).message_id, local(1).message_id]) == 1
    assert store.ack("root", [local(1).message_id]) == 0  # already read
    assert [m.body for m in store.list_messages("root", unread_only=True)] == [b"m0", b"m2"]
    assert store.ack_all("root") == 2
    assert store.unread("root") == 0 and store.unread("planner") == 1


def test_store_ack_unknown_or_other_session_changes_nothing(store: SessionStore) -> None:
    store.insert(local(1))
    store.insert(local(2, session="planner"))
    with pytest.raises(NotFound, match="in session 'root'"):
        store.ack("root", [local(1).message_id, local(2).message_id])
    assert store.unread("root") == 1 and store.unread("planner") == 1


def test_store_insert_is_idempotent_by_message_id(store: SessionStore) -> None:
    assert store.insert(local(1, body=b"first"))
    assert not store.insert(local(1, body=b"second"))
    assert not store.insert(local(1, session="planner"))
    assert [m.body for m in store.list_messages("root")] == [b"first"]
    assert store.list_messages("planner") == []


def test_store_survives_reopen(tmp_path: Path) -> None:
    s = SessionStore.open(tmp_path / DB_NAME)
    s.insert(local(1))
    s.ack("root", [local(1).message_id])
    s.close()
    s.close()  # idempotent
    with pytest.raises(StateDirError, match="closed"):
        s.unread("root")
    again = SessionStore.open(tmp_path / DB_NAME)
    try:
        [m] = again.list_messages("root")
        assert m.message_id == local(1).message_id and m.acked and m.from_session == "alice"
    finally:
        again.close()


def test_store_refuses_newer_schema_and_bad_files(tmp_path: Path) -> None:
    path = tmp_path / DB_NAME
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StateDirError, match="schema version 99"):
        SessionStore.open(path)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateDirError, match="cannot open session database"):
        SessionStore.open(junk)


@pytest.mark.parametrize("name", ["root", "planner-2", "Agent Smith", "ü"])
def test_valid_session_names(name: str) -> None:
    validate_session_name(name)


@pytest.mark.parametrize(
    ("name", "reason"),
    [("", "empty"), (" root", "whitespace"), ("a\nb", "control"), ("x" * 129, "at most 128")],
)
def test_invalid_session_names(name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        validate_session_name(name)


# -- mailbox and sink --------------------------------------------------------------------


@pytest.fixture
async def mailbox(tmp_path: Path) -> AsyncIterator[SessionMailbox]:
    friends = {SENDER: Friend(node_id=SENDER, public_key=b"k", alias="alice")}
    mb = SessionMailbox.open(tmp_path, friends)
    yield mb
    mb.close()


async def test_mailbox_local_send(mailbox: SessionMailbox) -> None:
    sent = await mailbox.send("alice", "root", b"hello", reply_to=b"x" * 16)
    assert sent.origin == LOCAL and sent.content_type == "text/plain" and len(sent.message_id) == 16
    assert await mailbox.unread("root") == 1
    [got] = await mailbox.messages("root")
    assert got == sent
    with pytest.raises(UsageError, match="empty"):
        await mailbox.send("", "root", b"x")
    with pytest.raises(UsageError, match="whitespace"):
        await mailbox.messages("root ")
    with pytest.raises(UsageError, match="limit"):
        await mailbox.send("a", "b", b"x" * (1024 * 1024 + 1))
    with pytest.raises(UsageError, match="--all"):
        await mailbox.ack("root", [])


async def test_sink_tags_sender_and_is_idempotent(mailbox: SessionMailbox) -> None:
    sink = SessionMailboxSink(mailbox, "root")
    assert sink.name == "session_mailbox"
    await sink.deliver(received(1))  # no alias from ingress: filled from the friend list
    await sink.deliver(received(1, body=b"again"))  # a redelivery after a crash
    await sink.deliver(received(2, alias="al"))
    got = await mailbox.messages("root")
    assert [(m.body, m.from_alias) for m in got] == [(b"remote", "alice"), (b"remote", "al")]
    first = got[0]
    assert first.origin == REMOTE and first.from_node_id == SENDER and first.scope == "message"
    assert first.from_session is None and first.reply_to == b"r" * 16 and first.sent_at_ms == 5
    with pytest.raises(UsageError):
        SessionMailboxSink(mailbox, "")


async def test_concurrent_deliveries_are_serialized(mailbox: SessionMailbox) -> None:
    await asyncio.gather(*(mailbox.deliver("root", received(i % 10)) for i in range(50)))
    assert await mailbox.unread("root") == 10


# -- hooks -----------------------------------------------------------------------------


class FakeNode:
    def __init__(self, state_dir: Path, config: Config) -> None:
        self.state_dir = state_dir
        self.config = config
        self.friends: dict[bytes, Friend] = {}
        self.plugin_state = PluginStates().get


def _pm() -> Any:
    pm = create_plugin_manager(load_entrypoints=False)
    pm.register(plugin, name="session_mailbox")
    return pm


def test_config_key_and_validation(tmp_path: Path) -> None:
    registry = build_registry(_pm())
    config = Config.load(tmp_path / "config.toml", registry, env={})
    assert config.get("session_mailbox.session") == "root"
    with pytest.raises(ConfigError, match="empty"):
        Config.load(None, registry, env={"TMAX_MESH_SESSION_MAILBOX_SESSION": ""})


def test_sink_hook_uses_configured_session_and_one_mailbox_per_node(tmp_path: Path) -> None:
    pm = _pm()
    config = Config.load(None, build_registry(pm), env={"TMAX_MESH_SESSION_MAILBOX_SESSION": "ops"})
    node = FakeNode(tmp_path, config)
    sinks: list[Any] = []
    pm.hook.tmax_register_delivery_sinks(register=sinks.append, node=node)
    [sink] = [s for s in sinks if s.name == "session_mailbox"]
    assert sink.session == "ops"
    assert plugin.mailbox_for(node) is sink.mailbox
    assert (tmp_path / DB_NAME).exists()
    other = FakeNode(tmp_path / "other", config)
    assert plugin.mailbox_for(other) is not sink.mailbox


def test_commands_registered() -> None:
    pm = _pm()
    cli = CommandRegistry()
    pm.hook.tmax_register_commands(cli=cli)
    parser = build_parser(cli)
    args = parser.parse_args(["session", "send", "--from", "a", "--to", "b", "hi", "--json"])
    assert (args.action, args.from_session, args.to_session, args.body, args.json) == (
        "send",
        "a",
        "b",
        "hi",
        True,
    )
    args = parser.parse_args(["session", "ack", "root", "--all"])
    assert args.all and args.message_ids == []
    with pytest.raises(SystemExit):
        parser.parse_args(["session", "send", "--to", "b", "hi"])  # --from is required


def test_render() -> None:
    msg = {
        "message_id": "ab" * 16,
        "session": "root",
        "origin": "remote",
        "from_session": None,
        "from_node_id": "0xABC",
        "from_alias": None,
        "received_at_ms": 0,
        "scope": "message",
        "content_type": "text/plain",
        "body": "hi",
        "acked": False,
    }
    assert session_cli.render([msg]).endswith(f"{'ab' * 16}  from 0xABC [message]: hi")
    assert session_cli.render([]) == "(no messages)"
    assert session_cli.render({"session": "root", "acked": 2}) == "acked 2 in session root"
    assert session_cli.render({"session": "root", "unread": 0}) == "0 unread in session root"
    assert session_cli.render(msg) == f"sent {'ab' * 16} to session root"


# -- service + client ---------------------------------------------------------------------------


@pytest.fixture
async def served(tmp_path: Path, mailbox: SessionMailbox) -> AsyncIterator[Path]:
    sock = tmp_path / "api.sock"
    server = grpc.aio.server()
    add_to_server(server, mailbox)
    assert server.add_insecure_port(f"unix:{sock}")
    await server.start()
    yield sock
    await server.stop(None)


async def test_service_round_trip(served: Path, mailbox: SessionMailbox) -> None:
    def scenario() -> None:
        with SessionMailboxClient(served) as client:
            sent = client.send("alice", "root", b"hello")
            assert sent["session"] == "root" and sent["from_session"] == "alice" and sent["body"] == "hello"
            client.send("bob", "root", b"\xff\x00", content_type="application/octet-stream")
            assert client.unread("root") == {"session": "root", "unread": 2}
            listed = client.list("root")
            assert listed[1]["body_encoding"] == "base64" and listed[1]["body"] == "/wA="
            assert client.ack("root", [sent["message_id"]]) == {"session": "root", "acked": 1}
            assert [m["from_session"] for m in client.list("root", unread=True)] == ["bob"]
            assert client.ack("root", all=True)["acked"] == 1
            with pytest.raises(MeshError) as err:
                client.ack("root", ["00" * 16])
            assert err.value.code == "not_found"
            with pytest.raises(MeshError) as err:
                client.ack("root", ["zz"])
            assert err.value.code == "usage" and "hex" in str(err.value)
            with pytest.raises(MeshError) as err:
                client.send("", "root", b"x")
            assert err.value.code == "usage"

    await asyncio.to_thread(scenario)
    await mailbox.deliver("root", received(7, alias="carol"))

    def remote() -> None:
        with SessionMailboxClient(served) as client:
            [m] = client.list("root", unread=True)
            assert m["origin"] == "remote" and m["from_alias"] == "carol"
            assert m["from_node_id"].lower() == "0x" + SENDER.hex() and m["scope"] == "message"
            assert m["reply_to"] == (b"r" * 16).hex()

    await asyncio.to_thread(remote)


async def test_client_explains_a_node_without_the_service(tmp_path: Path) -> None:
    sock = tmp_path / "bare.sock"
    server = grpc.aio.server()
    server.add_insecure_port(f"unix:{sock}")
    await server.start()
    try:

        def call() -> MeshError:
            with SessionMailboxClient(sock) as client, pytest.raises(MeshError) as err:
                client.unread("root")
            return err.value

        err = await asyncio.to_thread(call)
        assert err.code == PLUGIN_UNAVAILABLE and "does not serve session mailboxes" in str(err)
    finally:
        await server.stop(None)


def test_client_without_a_node(tmp_path: Path) -> None:
    with SessionMailboxClient(tmp_path / "none.sock") as client, pytest.raises(MeshError) as err:
        client.list("root")
    assert err.value.code == "node_not_running"
