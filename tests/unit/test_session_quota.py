"""Unit tests of the session_mailbox plugin's quotas on remote messages:
the store's accounting, the sink refusing what does not fit, acking and
deleting to free space, the config keys, the ``session delete`` command and
the migration of a v1 ``sessions.db``."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tmax_core.cli import CommandRegistry, build_parser
from tmax_core.config import Config, build_registry
from tmax_core.errors import ConfigError, NotFound, QuotaExceeded, UsageError
from tmax_core.model import Friend, ReceivedMessage
from tmax_core.plugin.helpers import PluginStates
from tmax_core.plugin.manager import create_plugin_manager
from tmax_core.store import ALL_SENDERS, Quota, message_charge
from tmax_mesh_session_mailbox import cli as session_cli
from tmax_mesh_session_mailbox import plugin
from tmax_mesh_session_mailbox.mailbox import DEFAULT_QUOTA, SessionMailbox, SessionMailboxSink
from tmax_mesh_session_mailbox.store import (
    DB_NAME,
    LOCAL,
    MIGRATIONS,
    REMOTE,
    REMOTE_USAGE,
    SCHEMA_VERSION,
    SessionMessage,
    SessionStore,
)

A, B = bytes([1]) * 20, bytes([2]) * 20
BODY = b"x" * 100
CHARGE = message_charge(BODY, "text/plain", "message", None)


def remote(n: int, sender: bytes = A, session: str = "root", body: bytes = BODY) -> SessionMessage:
    return SessionMessage(
        message_id=n.to_bytes(16, "big"),
        session=session,
        origin=REMOTE,
        from_session=None,
        from_node_id=sender,
        from_alias=None,
        sent_at_ms=1,
        received_at_ms=2,
        scope="message",
        content_type="text/plain",
        body=body,
    )


def local(n: int, body: bytes = BODY) -> SessionMessage:
    return SessionMessage(
        message_id=n.to_bytes(16, "big"),
        session="root",
        origin=LOCAL,
        from_session="planner",
        from_node_id=None,
        from_alias=None,
        sent_at_ms=1,
        received_at_ms=1,
        scope=None,
        content_type="text/plain",
        body=body,
    )


def received(n: int, sender: bytes = A) -> ReceivedMessage:
    return ReceivedMessage(
        message_id=n.to_bytes(16, "big"),
        from_node_id=sender,
        from_alias=None,
        to_node_id=bytes(20),
        sent_at_ms=1,
        received_at_ms=2,
        scope="message",
        content_type="text/plain",
        body=BODY,
    )


def mid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def usage(store: SessionStore, sender: bytes = ALL_SENDERS) -> tuple[int, int]:
    """``(bytes, messages)`` unread from node ``sender``, as the triggers keep them."""
    return REMOTE_USAGE.usage(store.conn, sender)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SessionStore]:
    s = SessionStore.open(tmp_path / DB_NAME)
    yield s
    s.close()


@pytest.fixture
async def mailbox(tmp_path: Path) -> AsyncIterator[SessionMailbox]:
    friends = {A: Friend(node_id=A, public_key=b"k", alias="alice")}
    mb = SessionMailbox.open(tmp_path, friends, Quota(per_sender=2 * CHARGE, total=3 * CHARGE))
    yield mb
    mb.close()


def test_store_refuses_what_does_not_fit_one_by_one(store: SessionStore) -> None:
    quota = Quota(per_sender=2 * CHARGE, total=3 * CHARGE)
    batch = [remote(1), remote(2), remote(3), remote(4, sender=B), remote(5, sender=B)]
    refused = store.insert_remote_many(batch, quota)
    assert [m.message_id for m in refused] == [mid(3), mid(5)]  # A's own quota, then the total
    assert usage(store, A) == (2 * CHARGE, 2)
    assert usage(store) == (3 * CHARGE, 3)
    # Repeats are neither charged again nor refused, even when full.
    assert store.insert_remote_many([remote(1), remote(4, sender=B)], quota) == []
    assert usage(store) == (3 * CHARGE, 3)
    # Messages between local sessions are not counted, and not limited.
    assert store.insert(local(9, body=b"y" * (10 * CHARGE)))
    assert usage(store) == (3 * CHARGE, 3)


def test_store_ack_and_delete_free_space(store: SessionStore) -> None:
    quota = Quota(per_sender=3 * CHARGE, total=10 * CHARGE)
    store.insert_remote_many([remote(1), remote(2), remote(3, session="planner")], quota)
    assert usage(store, A) == (3 * CHARGE, 3)  # quotas are per sender, over all sessions
    assert store.insert_remote_many([remote(5, session="other")], quota)
    store.insert(local(4))
    assert store.ack("root", [mid(1)]) == 1
    assert usage(store, A) == (2 * CHARGE, 2)
    assert store.delete("root", [mid(1), mid(2), mid(4)]) == 3
    assert usage(store, A) == (CHARGE, 1)
    assert store.ack_all("planner") == 1
    assert usage(store) == (0, 0)
    assert store.delete_acked("root") == 0
    assert store.delete_acked("planner") == 1
    assert store.list_messages("planner") == []


def test_store_delete_unknown_or_other_session_changes_nothing(store: SessionStore) -> None:
    store.insert_remote_many([remote(1), remote(2, session="planner")], DEFAULT_QUOTA)
    with pytest.raises(NotFound, match=f"{mid(2).hex()} in session 'root'"):
        store.delete("root", [mid(1), mid(2)])
    assert len(store.list_messages("root")) == 1 and usage(store) == (2 * CHARGE, 2)


def test_migration_from_v1_counts_unread_remote_messages(tmp_path: Path) -> None:
    path = tmp_path / DB_NAME
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    for m, acked in ((remote(1), 0), (remote(2), 1), (remote(3, sender=B), 0), (local(4), 0)):
        m.acked = bool(acked)
        conn.execute(f"INSERT INTO messages VALUES (NULL, {', '.join('?' * 13)})", m.params())
    conn.close()
    store = SessionStore.open(path)
    try:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        assert usage(store, A) == (CHARGE, 1)
        assert usage(store, B) == (CHARGE, 1)
        assert usage(store) == (2 * CHARGE, 2)
        store.ack("root", [mid(1)])  # the triggers run from now on
        assert usage(store) == (CHARGE, 1)
    finally:
        store.close()
    store = SessionStore.open(path)  # opening again counts nothing twice
    try:
        assert usage(store) == (CHARGE, 1)
    finally:
        store.close()


async def test_sink_refuses_with_quota_exceeded(mailbox: SessionMailbox) -> None:
    sink = SessionMailboxSink(mailbox, "root")
    refused = await sink.deliver_many([received(1), received(2), received(3), received(4, sender=B)])
    assert [m.message_id for m in refused] == [mid(3)]
    with pytest.raises(QuotaExceeded) as err:
        await sink.deliver(received(5, sender=B))  # the total is full
    assert err.value.code == "quota_exceeded"
    got = await mailbox.messages("root")
    assert [(m.message_id, m.from_alias) for m in got] == [
        (mid(1), "alice"),
        (mid(2), "alice"),
        (mid(4), None),
    ]
    assert await mailbox.delete("root", [mid(1)]) == 1
    await sink.deliver(received(5, sender=B))
    with pytest.raises(UsageError, match="--acked"):
        await mailbox.delete("root", [])
    await mailbox.ack("root", [mid(2)])
    assert await mailbox.delete_acked("root") == 1


def test_config_keys_set_the_sink_quota(tmp_path: Path) -> None:
    pm = create_plugin_manager(load_entrypoints=False)
    pm.register(plugin, name="session_mailbox")
    registry = build_registry(pm)
    config = Config.load(None, registry, env={})
    assert config.get("session_mailbox.max_bytes_per_friend") == DEFAULT_QUOTA.per_sender == 64 * 1024 * 1024
    assert config.get("session_mailbox.max_bytes_total") == DEFAULT_QUOTA.total == 1024 * 1024 * 1024
    with pytest.raises(ConfigError, match="greater than 0"):
        Config.load(None, registry, env={"TMAX_MESH_SESSION_MAILBOX_MAX_BYTES_TOTAL": "0"})
    config = Config.load(None, registry, env={"TMAX_MESH_SESSION_MAILBOX_MAX_BYTES_PER_FRIEND": "5000"})

    class FakeNode:
        state_dir = tmp_path
        friends: dict[bytes, Friend] = {}
        plugin_state = PluginStates().get

    node = FakeNode()
    node.config = config  # type: ignore[attr-defined]
    assert plugin.mailbox_for(node).quota == Quota(per_sender=5000, total=DEFAULT_QUOTA.total)


def test_delete_command_parses_and_renders() -> None:
    cli = CommandRegistry()
    session_cli.register(cli)
    parser = build_parser(cli)
    args = parser.parse_args(["session", "delete", "root", "ab" * 16, "--json"])
    assert (args.action, args.session, args.message_ids, args.acked) == ("delete", "root", ["ab" * 16], False)
    assert parser.parse_args(["session", "delete", "root", "--acked"]).acked
    assert session_cli.render({"session": "root", "deleted": 2}) == "deleted 2 in session root"


def test_two_friends_may_use_the_same_message_id(store: SessionStore) -> None:
    """A message is (sending node, message_id): a friend that copies another's
    id does not shadow its message; a repeat of the same sender's is ignored."""
    store.insert_remote_many([remote(1), remote(1, sender=B)], DEFAULT_QUOTA)
    store.insert_remote_many([remote(1)], DEFAULT_QUOTA)
    assert sorted(m.from_node_id for m in store.list_messages("root")) == sorted([A, B])
    assert usage(store) == (2 * CHARGE, 2)


def test_ack_in_one_session_leaves_the_same_id_in_another(store: SessionStore) -> None:
    store.insert_remote_many([remote(1), remote(1, sender=B, session="planner")], DEFAULT_QUOTA)
    assert store.ack("root", [mid(1)]) == 1
    assert [m.acked for m in store.list_messages("planner")] == [False]


def test_ack_and_delete_of_an_id_two_senders_used_need_the_sender(store: SessionStore) -> None:
    """By id alone they would hit both friends' messages: refused, nothing changes."""
    store.insert_remote_many([remote(1), remote(1, sender=B)], DEFAULT_QUOTA)
    with pytest.raises(UsageError, match="used by 2 senders"):
        store.ack("root", [mid(1)])
    with pytest.raises(UsageError, match="used by 2 senders"):
        store.delete("root", [mid(1)])
    assert store.ack("root", [mid(1)], sender=B) == 1
    assert store.delete("root", [mid(1)], sender=A) == 1
    assert [(m.from_node_id, m.acked) for m in store.list_messages("root")] == [(B, True)]
