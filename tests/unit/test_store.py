"""Unit tests for tmax_core.store (SQLite state database)."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tmax_core.errors import MeshError, NotFound, Reason, StateDirError, UsageError
from tmax_core.model import Friend, InboxMessage, IssuedInvite, OutboxEntry, RateLimit
from tmax_core.store import EXPIRED_ERROR, SCHEMA_VERSION, Store
from tmax_core.store.invites import INVITE_RETENTION_MS
from tmax_core.store.schema import MIGRATIONS

NOW = 1_700_000_000_000


def nid(n: int) -> bytes:
    return n.to_bytes(20, "big")


def mid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def key(n: int) -> bytes:
    return bytes([2]) + n.to_bytes(32, "big")


def friend(n: int, **kw: object) -> Friend:
    kw.setdefault("added_at_ms", NOW + n)
    return Friend(node_id=nid(n), public_key=key(n), **kw)  # type: ignore[arg-type]


def invite(n: int, *, uses: int | None = 1, expires: int = NOW + 3_600_000, **kw: object) -> IssuedInvite:
    return IssuedInvite(
        token_id=mid(n),
        created_at_ms=kw.pop("created", NOW),  # type: ignore[arg-type]
        expires_at_ms=expires,
        max_uses=uses or 0,
        uses_left=uses,
        scopes=kw.pop("scopes", ["message", "files"]),  # type: ignore[arg-type]
        rate_limit=kw.pop("rate_limit", RateLimit(2.0, 10)),  # type: ignore[arg-type]
    )


def inbox_msg(n: int, sender: int = 1, alias: str | None = None) -> InboxMessage:
    return InboxMessage(
        message_id=mid(n),
        from_node_id=nid(sender),
        from_alias=alias,
        sent_at_ms=NOW + n,
        received_at_ms=NOW + n + 5,
        scope="message",
        content_type="text/plain",
        body=f"hello {n}".encode(),
    )


def outbox_entry(n: int, to: int = 1, **kw: object) -> OutboxEntry:
    kw.setdefault("created_at_ms", NOW + n)
    kw.setdefault("expires_at_ms", NOW + 60_000)
    return OutboxEntry(
        message_id=mid(n),
        to_node_id=nid(to),
        scope="message",
        content_type="text/plain",
        body=b"x" * n,
        **kw,  # type: ignore[arg-type]
    )


def inbox_get(store: Store, message_id: bytes) -> InboxMessage | None:
    return next((m for _, m in store.inbox_list() if m.message_id == message_id), None)


def issued(store: Store, token_id: bytes) -> IssuedInvite | None:
    """The invite as ingress reads it on first contact."""
    found = store.issued_invite_tokens().get(token_id)
    return found[0] if found else None


def integrity(db_path: Path) -> str:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    s = Store.open(db_path)
    yield s
    s.close()


# ---------------------------------------------------------------- open / schema


def test_open_creates_wal_db_with_schema_version(db_path: Path, store: Store) -> None:
    assert db_path.exists()
    assert (db_path.stat().st_mode & 0o777) == 0o600
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()
    assert integrity(db_path) == "ok"


def test_open_directory_uses_state_db(tmp_path: Path) -> None:
    s = Store.open(tmp_path)
    try:
        assert s.path == tmp_path / "state.db"
    finally:
        s.close()


def test_reopen_keeps_data(db_path: Path) -> None:
    s = Store.open(db_path)
    s.add_friend(friend(1, alias="bob"))
    s.record_issued_invite(invite(1), "tok")
    s.inbox_insert_many([inbox_msg(1)])
    s.record_received_many([(nid(1), mid(1), b"h" * 32, "accepted", NOW)])
    s.outbox_put_many([outbox_entry(1)])
    s.close()
    s.close()  # idempotent
    s = Store.open(db_path)
    try:
        assert [f.alias for f in s.list_friends()] == ["bob"]
        assert issued(s, mid(1)) is not None
        assert inbox_get(s, mid(1)) is not None
        assert s.seen_check_many([(nid(1), mid(1))]) == {(nid(1), mid(1)): b"h" * 32}
        assert s.outbox_get(mid(1)) is not None
    finally:
        s.close()


def test_open_garbage_file_raises_state_dir_error(tmp_path: Path) -> None:
    bad = tmp_path / "state.db"
    bad.write_bytes(b"this is not a sqlite database at all" * 200)
    with pytest.raises(StateDirError) as ei:
        Store.open(bad)
    assert str(bad) in str(ei.value)
    assert "\n" not in str(ei.value)


def test_open_unwritable_location_raises_state_dir_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    target = blocker / "sub" / "state.db"  # parent "directory" is a file
    with pytest.raises(StateDirError) as ei:
        Store.open(target)
    assert str(target) in str(ei.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_open_readonly_dir_raises_state_dir_error(tmp_path: Path) -> None:
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        with pytest.raises(StateDirError, match=r"state\.db"):
            Store.open(d / "state.db")
    finally:
        d.chmod(0o700)


def test_open_newer_schema_raises(db_path: Path) -> None:
    Store.open(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StateDirError, match="newer"):
        Store.open(db_path)


def test_version_1_database_migrates_to_sender_keyed_messages(db_path: Path) -> None:
    """A state.db from before messages were (sender, message_id): its rows
    survive, its inbox ids and order stay, and the same id from another
    sender can then be stored."""
    db_path.parent.mkdir(mode=0o700)
    conn = sqlite3.connect(db_path)
    for stmt in MIGRATIONS[0]:
        conn.execute(stmt)
    conn.execute(
        "INSERT INTO inbox (id, message_id, from_node_id, sent_at_ms, received_at_ms, scope, "
        "content_type, body) VALUES (7, ?, ?, 1, 2, 'message', 'text/plain', x'6869')",
        (mid(1), nid(1)),
    )
    conn.execute("INSERT INTO seen VALUES (?, ?, 'accepted', ?)", (mid(1), nid(1), NOW))
    conn.execute(
        "INSERT INTO outbox (message_id, to_node_id, scope, content_type, body, created_at_ms, "
        "expires_at_ms, status) VALUES (?, ?, 'message', 'text/plain', x'', 1, 2, 'queued')",
        (mid(5), nid(2)),
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    s = Store.open(db_path)
    try:
        assert [(rowid, m.body) for rowid, m in s.inbox_list()] == [(7, b"hi")]
        assert s.seen_check_many([(nid(1), mid(1))]) == {(nid(1), mid(1)): None}
        assert s.outbox_get(mid(5)).sent_hashes == b""  # type: ignore[union-attr]
        stored = s.inbox_insert_many([inbox_msg(1, sender=2)])
        assert [rowid for rowid, _ in stored] == [8]
    finally:
        s.close()


def test_inbox_is_keyed_by_sender_and_message_id(store: Store) -> None:
    stored = store.inbox_insert_many([inbox_msg(1, sender=1), inbox_msg(1, sender=2), inbox_msg(1, sender=1)])
    assert [m.from_node_id for _, m in stored] == [nid(1), nid(2)]  # another sender, same id
    assert sorted(m.from_node_id for _, m in store.inbox_list()) == [nid(1), nid(2)]
    # Ack and delete by id alone would hit both: they need the sender then.
    with pytest.raises(UsageError, match="used by 2 senders"):
        store.inbox_ack([mid(1)])
    with pytest.raises(UsageError, match="used by 2 senders"):
        store.inbox_delete([mid(1)])
    assert store.inbox_ack([mid(1)], sender=nid(2)) == 1
    assert [(m.from_node_id, m.acked) for _, m in store.inbox_list()] == [(nid(1), False), (nid(2), True)]
    with pytest.raises(NotFound, match="from 0x"):
        store.inbox_delete([mid(1)], sender=nid(3))
    assert store.inbox_delete([mid(1)], sender=nid(1)) == 1
    assert [m.from_node_id for _, m in store.inbox_list()] == [nid(2)]


# ---------------------------------------------------------------- friends


def test_add_and_get_friend_roundtrip(store: Store) -> None:
    f = friend(
        1,
        alias="bob",
        scopes=["message"],
        relay_hosts=["grpc://r:1"],
        endpoints=["1.2.3.4:5"],
        rate_limit=RateLimit(1.5, 3),
        invite_token=b"tok",
    )
    stored = store.add_friend(f)
    assert stored == f
    assert store.get_friend(nid(1)) == f
    assert store.get_friend(nid(99)) is None


def test_add_friend_merges(store: Store) -> None:
    store.add_friend(friend(1, alias="bob", relay_hosts=["grpc://a:1"], endpoints=["e1"], added_at_ms=5))
    store.set_blocked(nid(1), True)
    merged = store.add_friend(
        friend(1, scopes=["files", "message"], relay_hosts=[], endpoints=["e2"], added_at_ms=999)
    )
    assert merged.scopes == ["message", "files"]
    assert merged.relay_hosts == ["grpc://a:1"]  # empty new list keeps old
    assert merged.endpoints == ["e2"]
    assert merged.blocked is True
    assert merged.added_at_ms == 5
    assert merged.alias == "bob"  # alias not given -> kept
    assert store.get_friend(nid(1)) == merged
    renamed = store.add_friend(friend(1, alias="robert"))
    assert renamed.alias == "robert"
    assert store.get_friend(nid(1)).alias == "robert"  # type: ignore[union-attr]


def test_add_friend_key_changed(store: Store) -> None:
    store.add_friend(friend(1))
    with pytest.raises(MeshError) as ei:
        store.add_friend(Friend(node_id=nid(1), public_key=key(2)))
    assert ei.value.code == Reason.KEY_CHANGED == "key_changed"
    assert store.get_friend(nid(1)).public_key == key(1)  # type: ignore[union-attr]


def test_alias_uniqueness(store: Store) -> None:
    store.add_friend(friend(1, alias="bob"))
    with pytest.raises(MeshError) as ei:
        store.add_friend(friend(2, alias="bob"))
    assert ei.value.code == "alias_taken"
    assert "bob" in str(ei.value)
    assert store.get_friend(nid(2)) is None
    with pytest.raises(MeshError, match="alias"):
        store.add_friend(friend(2, alias="BOB"))  # case-insensitive
    store.add_friend(friend(1, alias="bob"))  # same friend re-adding its own alias is fine


def test_list_friends_ordered_by_added(store: Store) -> None:
    store.add_friend(friend(1, added_at_ms=300))
    store.add_friend(friend(2, added_at_ms=100))
    store.add_friend(friend(3, added_at_ms=200))
    assert [f.node_id for f in store.list_friends()] == [nid(2), nid(3), nid(1)]


def test_set_blocked_remove_and_not_found(store: Store) -> None:
    store.add_friend(friend(1))
    assert store.set_blocked(nid(1), True).blocked is True
    assert store.get_friend(nid(1)).blocked is True  # type: ignore[union-attr]
    assert store.set_blocked(nid(1), False).blocked is False
    store.remove_friend(nid(1))
    assert store.get_friend(nid(1)) is None
    with pytest.raises(NotFound, match="no friend"):
        store.remove_friend(nid(1))
    with pytest.raises(NotFound):
        store.set_blocked(nid(1), True)
    with pytest.raises(NotFound):
        store.update_friend_contact(nid(1), [], [])


def test_update_contact_last_seen_and_clear_token(store: Store) -> None:
    store.add_friend(friend(1, relay_hosts=["a"], endpoints=["b"], invite_token=b"T"))
    store.update_friend_contact(nid(1), ["grpcs://r:443"], [])
    store.record_received_many([(nid(1), mid(1), b"a" * 32, "accepted", NOW + 10)])
    store.record_received_many([(nid(1), mid(2), b"b" * 32, "accepted", NOW + 5)])  # never backwards
    store.clear_friend_invite_token(nid(1))
    f = store.get_friend(nid(1))
    assert f is not None
    assert f.relay_hosts == ["grpcs://r:443"] and f.endpoints == []
    assert f.last_seen_ms == NOW + 10
    assert f.invite_token is None
    store.record_received_many([(nid(9), mid(3), b"c" * 32, "accepted", NOW)])  # unknown: no-op
    store.clear_friend_invite_token(nid(9))
    assert [f.node_id for f in store.list_friends()] == [nid(1)]


# ---------------------------------------------------------------- issued invites


def test_record_list_get_revoke_invites(store: Store) -> None:
    store.record_issued_invite(invite(1), "tok1")
    store.record_issued_invite(invite(2, uses=None, created=NOW + 1), "tok2")
    store.record_issued_invite(invite(3, expires=NOW - 1, created=NOW + 2), "tok3")
    got = issued(store, mid(1))
    assert got == invite(1)
    assert issued(store, mid(9)) is None
    assert [i.token_id for i in store.list_issued_invites(now_ms=NOW)] == [mid(1), mid(2)]
    assert [i.token_id for i in store.list_issued_invites(include_inactive=True, now_ms=NOW)] == [
        mid(1),
        mid(2),
        mid(3),
    ]
    store.revoke_invite(mid(1))
    assert issued(store, mid(1)).revoked is True  # type: ignore[union-attr]
    assert [i.token_id for i in store.list_issued_invites(now_ms=NOW)] == [mid(2)]
    with pytest.raises(NotFound):
        store.revoke_invite(mid(9))
    with pytest.raises(MeshError):
        store.record_issued_invite(invite(2), "dup")


def test_first_contact_single_use_consumed_once(store: Store) -> None:
    store.record_issued_invite(invite(1, rate_limit=RateLimit(3.0, 7)), "tok")
    f = store.accept_first_contact(mid(1), friend(10, alias="newbie", relay_hosts=["r"]), NOW)
    assert f.scopes == ["message", "files"]
    assert f.rate_limit == RateLimit(3.0, 7)
    assert f.alias == "newbie" and f.relay_hosts == ["r"]
    assert store.get_friend(nid(10)) == f
    assert issued(store, mid(1)).uses_left == 0  # type: ignore[union-attr]
    # The same friend again: returned, no use consumed, no error.
    assert store.accept_first_contact(mid(1), friend(10), NOW).node_id == nid(10)
    # A different friend with the replayed token: used.
    with pytest.raises(MeshError) as ei:
        store.accept_first_contact(mid(1), friend(11), NOW)
    assert ei.value.code == Reason.INVITE_USED
    assert store.get_friend(nid(11)) is None
    assert store.list_issued_invites(now_ms=NOW) == []


def test_first_contact_existing_friend_different_key(store: Store) -> None:
    store.record_issued_invite(invite(1), "tok")
    store.add_friend(friend(10))
    with pytest.raises(MeshError) as ei:
        store.accept_first_contact(mid(1), Friend(node_id=nid(10), public_key=key(99)), NOW)
    assert ei.value.code == Reason.KEY_CHANGED
    assert issued(store, mid(1)).uses_left == 1  # type: ignore[union-attr]


def test_first_contact_unlimited_and_multi_use(store: Store) -> None:
    store.record_issued_invite(invite(1, uses=None), "tok")
    for n in range(10, 15):
        store.accept_first_contact(mid(1), friend(n), NOW)
    assert issued(store, mid(1)).uses_left is None  # type: ignore[union-attr]
    store.record_issued_invite(invite(2, uses=2), "tok2")
    store.accept_first_contact(mid(2), friend(20), NOW)
    store.accept_first_contact(mid(2), friend(21), NOW)
    with pytest.raises(MeshError) as ei:
        store.accept_first_contact(mid(2), friend(22), NOW)
    assert ei.value.code == Reason.INVITE_USED


def test_first_contact_unknown_revoked_expired(store: Store) -> None:
    with pytest.raises(MeshError) as ei:
        store.accept_first_contact(mid(1), friend(10), NOW)
    assert ei.value.code == Reason.INVITE_UNKNOWN
    store.record_issued_invite(invite(1), "tok")
    store.revoke_invite(mid(1))
    with pytest.raises(MeshError) as ei:
        store.accept_first_contact(mid(1), friend(10), NOW)
    assert ei.value.code == Reason.INVITE_REVOKED
    store.record_issued_invite(invite(2, expires=NOW + 10), "tok2")
    with pytest.raises(MeshError) as ei:
        store.accept_first_contact(mid(2), friend(10), NOW + 10)
    assert ei.value.code == Reason.INVITE_EXPIRED
    assert store.get_friend(nid(10)) is None
    assert issued(store, mid(2)).uses_left == 1  # type: ignore[union-attr]


def test_first_contact_drops_taken_alias(store: Store) -> None:
    store.add_friend(friend(1, alias="bob"))
    store.record_issued_invite(invite(1), "tok")
    f = store.accept_first_contact(mid(1), friend(10, alias="bob"), NOW)
    assert f.alias is None


def test_used_invites_remembered_and_pruned(store: Store) -> None:
    store.record_issued_invite(invite(1), "tok")
    store.accept_first_contact(mid(1), friend(10), NOW)
    # A later recording prunes only invites expired > 30 days ago.
    store.record_issued_invite(invite(2, created=NOW + 1000), "tok2")
    with pytest.raises(MeshError) as ei:
        store.accept_first_contact(mid(1), friend(11), NOW)
    assert ei.value.code == Reason.INVITE_USED
    later = NOW + 3_600_000 + INVITE_RETENTION_MS + 1
    store.record_issued_invite(invite(3, created=later, expires=later + 1000), "tok3")
    assert issued(store, mid(1)) is None
    assert issued(store, mid(3)) is not None


def test_invite_row_cap(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import tmax_core.store.invites as invites_mod

    monkeypatch.setattr(invites_mod, "INVITE_MAX_ROWS", 3)
    store.record_issued_invite(invite(1, created=NOW), "a")  # active, oldest
    store.record_issued_invite(invite(2, created=NOW + 1), "b")
    store.revoke_invite(mid(2))  # inactive -> pruned first
    store.record_issued_invite(invite(3, created=NOW + 2), "c")
    store.record_issued_invite(invite(4, created=NOW + 3), "d")
    ids = [i.token_id for i in store.list_issued_invites(include_inactive=True)]
    assert ids == [mid(1), mid(3), mid(4)]


def test_concurrent_first_contact_consumes_once(db_path: Path) -> None:
    setup = Store.open(db_path)
    setup.record_issued_invite(invite(1), "tok")
    setup.close()
    rounds = 20
    for r in range(rounds):
        tid = mid(1000 + r)
        s0 = Store.open(db_path)
        s0.record_issued_invite(invite(1000 + r), f"tok{r}")
        s0.close()
        stores = [Store.open(db_path), Store.open(db_path)]
        barrier = threading.Barrier(2)
        results: list[object] = [None, None]

        def run(
            i: int,
            tid: bytes = tid,
            r: int = r,
            stores: list[Store] = stores,
            barrier: threading.Barrier = barrier,
            results: list[object] = results,
        ) -> None:
            barrier.wait()
            try:
                results[i] = stores[i].accept_first_contact(tid, friend(10_000 + r * 2 + i), NOW)
            except MeshError as exc:
                results[i] = exc

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        ok = [x for x in results if isinstance(x, Friend)]
        errs = [x for x in results if isinstance(x, MeshError)]
        assert len(ok) == 1 and len(errs) == 1, results
        assert errs[0].code == Reason.INVITE_USED
        assert issued(stores[0], tid).uses_left == 0  # type: ignore[union-attr]
        for s in stores:
            s.close()
    s = Store.open(db_path)
    try:
        assert len(s.list_friends()) == rounds
    finally:
        s.close()


# ---------------------------------------------------------------- inbox


def test_inbox_insert_dedup_and_alias(store: Store) -> None:
    store.add_friend(friend(1, alias="bob"))
    assert len(store.inbox_insert_many([inbox_msg(1)])) == 1
    assert store.inbox_insert_many([inbox_msg(1)]) == []
    got = inbox_get(store, mid(1))
    assert got is not None and got.from_alias == "bob" and got.body == b"hello 1"
    assert len(store.inbox_insert_many([inbox_msg(2, alias="explicit")])) == 1
    assert inbox_get(store, mid(2)).from_alias == "explicit"  # type: ignore[union-attr]
    # Alias stored at receive time: renaming the friend later does not change it.
    store.add_friend(friend(1, alias="robert"))
    assert inbox_get(store, mid(1)).from_alias == "bob"  # type: ignore[union-attr]
    assert inbox_get(store, mid(99)) is None
    assert store.inbox_unread() == 2


def test_inbox_insert_many(store: Store) -> None:
    store.inbox_insert_many([inbox_msg(2)])
    stored = store.inbox_insert_many([inbox_msg(1), inbox_msg(2), inbox_msg(3), inbox_msg(1)])
    assert [m.message_id for _, m in stored] == [mid(1), mid(3)]  # repeats left out
    assert store.inbox_insert_many([]) == []
    listed = store.inbox_list()
    assert [m.message_id for _, m in listed] == [mid(2), mid(1), mid(3)]
    assert [rowid for rowid, _ in stored] == [rowid for rowid, _ in listed[1:]]


def test_inbox_list_paging_and_unread(store: Store) -> None:
    store.inbox_insert_many([inbox_msg(n) for n in range(1, 8)])
    page1 = store.inbox_list(limit=3)
    assert [m.message_id for _, m in page1] == [mid(1), mid(2), mid(3)]
    page2 = store.inbox_list(limit=3, after_rowid=page1[-1][0])
    assert [m.message_id for _, m in page2] == [mid(4), mid(5), mid(6)]
    assert store.inbox_ack([mid(1), mid(4)]) == 2
    assert [m.message_id for _, m in store.inbox_list(unread_only=True)] == [
        mid(2),
        mid(3),
        mid(5),
        mid(6),
        mid(7),
    ]
    rowids = [r for r, _ in store.inbox_list()]
    assert rowids == sorted(rowids)
    assert inbox_get(store, mid(1)).acked is True  # type: ignore[union-attr]


def test_inbox_ack_unknown_changes_nothing(store: Store) -> None:
    store.inbox_insert_many([inbox_msg(1), inbox_msg(2)])
    with pytest.raises(NotFound) as ei:
        store.inbox_ack([mid(1), mid(77), mid(78)])
    assert mid(77).hex() in str(ei.value)
    assert store.inbox_unread() == 2
    assert store.inbox_ack([mid(1), mid(1)]) == 1
    assert store.inbox_ack([mid(1)]) == 0  # already acked
    assert store.inbox_ack([]) == 0
    assert store.inbox_ack_all() == 1
    assert store.inbox_ack_all() == 0
    assert store.inbox_unread() == 0


# ---------------------------------------------------------------- seen ids


def seen(store: Store, sender: int, n: int) -> bool:
    return (nid(sender), mid(n)) in store.seen_check_many([(nid(sender), mid(n))])


def test_seen_is_keyed_by_sender_and_message_id(store: Store) -> None:
    """Two senders may pick the same message id: neither shadows the other."""
    assert store.seen_check_many([(nid(1), mid(1))]) == {}
    store.record_received_many([(nid(1), mid(1), b"a" * 32, "accepted", NOW)])
    store.record_received_many([])
    assert store.seen_check_many([(nid(1), mid(1)), (nid(2), mid(1))]) == {(nid(1), mid(1)): b"a" * 32}
    store.record_received_many([(nid(2), mid(1), b"b" * 32, "accepted", NOW)])
    assert store.seen_check_many([(nid(1), mid(1)), (nid(2), mid(1))]) == {
        (nid(1), mid(1)): b"a" * 32,
        (nid(2), mid(1)): b"b" * 32,
    }


def test_seen_prune_by_age_and_count(store: Store) -> None:
    store.record_received_many([(nid(1), mid(n), None, "accepted", NOW + n) for n in range(100)])
    assert store.seen_prune(NOW + 10, 1000) == 10
    assert not seen(store, 1, 9) and seen(store, 1, 10)
    assert store.seen_prune(NOW, 50) == 40  # keep newest 50
    assert not seen(store, 1, 49) and seen(store, 1, 50)
    assert seen(store, 1, 99)
    assert store.seen_prune(NOW, 50) == 0


# ---------------------------------------------------------------- outbox


def test_outbox_put_get_roundtrip(store: Store) -> None:
    e = outbox_entry(3, reply_to=mid(9))
    store.outbox_put_many([e])
    assert store.outbox_get(mid(3)) == e
    assert store.outbox_get(mid(4)) is None
    e.attempts = 5
    store.outbox_put_many([e])  # upsert
    assert store.outbox_get(mid(3)).attempts == 5  # type: ignore[union-attr]


def test_outbox_due(store: Store) -> None:
    store.outbox_put_many([outbox_entry(3, created_at_ms=NOW + 30)])
    store.outbox_put_many([outbox_entry(1, created_at_ms=NOW + 10, status="sent")])
    store.outbox_put_many([outbox_entry(2, created_at_ms=NOW + 20, next_attempt_ms=NOW + 1000)])
    store.outbox_put_many([outbox_entry(4, created_at_ms=NOW + 5, status="delivered")])
    store.outbox_put_many([outbox_entry(5, to=2, created_at_ms=NOW + 1)])
    assert [e.message_id for e in store.outbox_due(NOW, 10)] == [mid(5), mid(1), mid(3)]
    assert [e.message_id for e in store.outbox_due(NOW, 2)] == [mid(5), mid(1)]
    assert [e.message_id for e in store.outbox_due(NOW + 1000, 10)] == [mid(5), mid(1), mid(2), mid(3)]
    # Entries already on their way are skipped: the limit counts only the others.
    assert [e.message_id for e in store.outbox_due(NOW + 1000, 2, {mid(5), mid(2)})] == [mid(1), mid(3)]
    due = store.outbox_due(NOW, 1, {mid(5)})
    assert due == [store.outbox_get(mid(1))]  # whole entries, as stored


def test_outbox_update(store: Store) -> None:
    store.outbox_put_many([outbox_entry(1, error="boom")])
    store.outbox_update_many([(mid(1), {"status": "sent", "attempts": 2, "next_attempt_ms": NOW + 5})])
    e = store.outbox_get(mid(1))
    assert e is not None
    assert (e.status, e.attempts, e.next_attempt_ms, e.error, e.path) == ("sent", 2, NOW + 5, "boom", None)
    store.outbox_update_many(
        [(mid(1), {"status": "delivered", "path": "relay", "error": None, "delivered_at_ms": NOW + 9})]
    )
    e = store.outbox_get(mid(1))
    assert e is not None
    assert (e.status, e.path, e.error, e.delivered_at_ms, e.attempts) == (
        "delivered",
        "relay",
        None,
        NOW + 9,
        2,
    )
    with pytest.raises(NotFound):
        store.outbox_update_many([(mid(2), {"status": "sent"})])
    # An attempt still in flight when an ack arrived on its own cannot undo the outcome.
    store.outbox_update_many([(mid(1), {"status": "sent", "attempts": 3, "error": "relay: timed out"})])
    assert store.outbox_get(mid(1)).status == "delivered"  # type: ignore[union-attr]


def test_outbox_update_many_atomic(store: Store) -> None:
    store.outbox_put_many([outbox_entry(1)])
    store.outbox_put_many([outbox_entry(2)])
    store.outbox_update_many([(mid(1), {"status": "sent", "attempts": 1}), (mid(2), {"error": "x"})])
    assert store.outbox_get(mid(1)).status == "sent"  # type: ignore[union-attr]
    assert store.outbox_get(mid(2)).error == "x"  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        store.outbox_update_many([(mid(1), {"status": "failed"}), (mid(9), {"status": "failed"})])
    assert store.outbox_get(mid(1)).status == "sent"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="bogus"):
        store.outbox_update_many([(mid(1), {"bogus": 1})])
    store.outbox_update_many([])


def test_outbox_expire_and_counts(store: Store) -> None:
    store.outbox_put_many([outbox_entry(1, expires_at_ms=NOW)])
    store.outbox_put_many([outbox_entry(2, expires_at_ms=NOW - 5, status="sent")])
    store.outbox_put_many([outbox_entry(3, expires_at_ms=NOW - 5, status="delivered")])
    store.outbox_put_many([outbox_entry(4, expires_at_ms=NOW + 5)])
    assert sorted(store.outbox_expire(NOW)) == [mid(1), mid(2)]
    e = store.outbox_get(mid(1))
    assert e is not None and e.status == "failed" and e.error == EXPIRED_ERROR
    assert store.outbox_get(mid(3)).status == "delivered"  # type: ignore[union-attr]
    assert store.outbox_expire(NOW) == []
    assert store.outbox_counts() == {"queued": 1, "sent": 0, "delivered": 1, "failed": 2}
    assert [e.message_id for e in store.outbox_due(NOW, 10)] == [mid(4)]
