"""Unit tests of the inbox quotas in tmax_core.store: the running byte totals
per sender (``inbox_usage``), storing a batch within the quotas, acking and
deleting to free space, and the migration of a v1 ``state.db``."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tmax_core.errors import NotFound
from tmax_core.model import InboxMessage
from tmax_core.store import (
    ALL_SENDERS,
    INBOX_USAGE,
    MESSAGE_OVERHEAD,
    SCHEMA_VERSION,
    Quota,
    Store,
    message_charge,
)
from tmax_core.store.schema import MIGRATIONS

A, B = bytes([1]) * 20, bytes([2]) * 20
BODY = b"x" * 100
CHARGE = message_charge(BODY, "text/plain", "message", None)


def msg(n: int, sender: bytes = A, body: bytes = BODY, **kw: object) -> InboxMessage:
    return InboxMessage(
        message_id=n.to_bytes(16, "big"),
        from_node_id=sender,
        from_alias=None,
        sent_at_ms=1000 + n,
        received_at_ms=2000 + n,
        scope=kw.pop("scope", "message"),  # type: ignore[arg-type]
        content_type=kw.pop("content_type", "text/plain"),  # type: ignore[arg-type]
        body=body,
        reply_to=kw.pop("reply_to", None),  # type: ignore[arg-type]
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "state.db")
    yield s
    s.close()


def usage(store: Store, sender: bytes = ALL_SENDERS) -> tuple[int, int]:
    """``(bytes, messages)`` unread from ``sender``, as the triggers keep them."""
    return INBOX_USAGE.usage(store.conn, sender)


def ids(pairs: list[tuple[int, InboxMessage]]) -> list[int]:
    return [int.from_bytes(m.message_id, "big") for _rowid, m in pairs]


def test_charge_counts_what_the_sender_controls_plus_overhead(store: Store) -> None:
    assert message_charge(BODY, "text/plain", "message", None) == 100 + 10 + 7 + MESSAGE_OVERHEAD
    assert message_charge(b"", "", None, None) == MESSAGE_OVERHEAD  # empty messages are not free
    # The SQL triggers count the same bytes as Python, multi-byte text included.
    odd = msg(
        1, body=b"\x00" * 7, content_type="text/plain; charset=\u00e9", scope="sc\u00f6pe", reply_to=b"r" * 16
    )
    store.inbox_insert_within_quota([odd], Quota(10**6, 10**6))
    assert usage(store, A) == (message_charge(odd.body, odd.content_type, odd.scope, odd.reply_to), 1)


def test_batch_stores_what_fits_and_refuses_the_rest(store: Store) -> None:
    quota = Quota(per_sender=3 * CHARGE, total=5 * CHARGE)
    batch = [msg(1), msg(2), msg(3), msg(4), msg(5, sender=B), msg(6, body=b"small")]
    stored, refused = store.inbox_insert_within_quota(batch, quota)
    # A's fourth message does not fit, but a smaller one after it still does.
    assert ids(stored) == [1, 2, 3, 5]
    assert [m.message_id[-1] for m in refused] == [4, 6]
    assert usage(store, A) == (3 * CHARGE, 3)
    assert usage(store, B) == (CHARGE, 1)
    assert usage(store) == (4 * CHARGE, 4)
    # Now the total stops B too, though B is far below its own quota.
    stored, refused = store.inbox_insert_within_quota([msg(7, sender=B), msg(8, sender=B)], quota)
    assert ids(stored) == [7] and [m.message_id[-1] for m in refused] == [8]
    assert usage(store) == (5 * CHARGE, 5)
    assert [m.message_id[-1] for _r, m in store.inbox_list()] == [1, 2, 3, 5, 7]


def test_repeats_are_not_charged_twice_nor_refused(store: Store) -> None:
    quota = Quota(per_sender=2 * CHARGE, total=10 * CHARGE)
    store.inbox_insert_within_quota([msg(1), msg(2)], quota)
    # A redelivery after a crash, while the quota is full: a repeat, not a refusal.
    stored, refused = store.inbox_insert_within_quota([msg(1), msg(2), msg(1)], quota)
    assert (stored, refused) == ([], [])
    assert usage(store, A) == (2 * CHARGE, 2)


def test_a_message_larger_than_the_quota_never_fits(store: Store) -> None:
    stored, refused = store.inbox_insert_within_quota([msg(1, body=b"x" * 1000)], Quota(500, 10**6))
    assert stored == [] and len(refused) == 1
    assert usage(store, A) == (0, 0) and store.inbox_list() == []


def test_ack_and_delete_free_space(store: Store) -> None:
    quota = Quota(per_sender=2 * CHARGE, total=10 * CHARGE)
    store.inbox_insert_within_quota([msg(1), msg(2), msg(3, sender=B)], quota)
    assert store.inbox_insert_within_quota([msg(4)], quota)[1]  # full
    assert store.inbox_ack([msg(1).message_id]) == 1
    assert usage(store, A) == (CHARGE, 1)
    assert store.inbox_ack([msg(1).message_id]) == 0  # acking twice frees nothing more
    assert usage(store, A) == (CHARGE, 1)
    assert ids(store.inbox_insert_within_quota([msg(4)], quota)[0]) == [4]
    # Deleting an unread message frees it; deleting a read one frees nothing (it no longer counted).
    assert store.inbox_delete([msg(2).message_id, msg(1).message_id]) == 2
    assert usage(store, A) == (CHARGE, 1)
    assert usage(store) == (2 * CHARGE, 2)
    assert store.inbox_ack_all() == 2
    assert usage(store) == (0, 0) and usage(store, B) == (0, 0)
    assert store.inbox_delete_acked() == 2
    assert store.inbox_list() == [] and usage(store) == (0, 0)


def test_delete_unknown_id_changes_nothing(store: Store) -> None:
    store.inbox_insert_within_quota([msg(1), msg(2)], Quota(10**6, 10**6))
    with pytest.raises(NotFound, match=(99).to_bytes(16, "big").hex()):
        store.inbox_delete([msg(1).message_id, (99).to_bytes(16, "big")])
    assert ids(store.inbox_list()) == [1, 2]
    assert usage(store) == (2 * CHARGE, 2)
    assert store.inbox_delete([]) == 0
    assert store.inbox_delete([msg(1).message_id, msg(1).message_id]) == 1


def test_migration_from_v1_counts_the_unread_messages(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    rows = [(1, A, 0), (2, A, 0), (3, A, 1), (4, B, 0)]  # message 3 is read already
    for n, sender, acked in rows:
        conn.execute(
            "INSERT INTO inbox (message_id, from_node_id, sent_at_ms, received_at_ms, scope, content_type, "
            "body, acked) VALUES (?, ?, 1, 2, 'message', 'text/plain', ?, ?)",
            (n.to_bytes(16, "big"), sender, BODY, acked),
        )
    conn.close()

    with closing(Store.open(path)) as store:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        assert usage(store, A) == (2 * CHARGE, 2)
        assert usage(store, B) == (CHARGE, 1)
        assert usage(store) == (3 * CHARGE, 3)
        # The triggers run from now on.
        store.inbox_ack([(1).to_bytes(16, "big")])
        assert usage(store) == (2 * CHARGE, 2)
    with closing(Store.open(path)) as store:  # opening again migrates nothing twice
        assert usage(store) == (2 * CHARGE, 2)


def test_migration_of_an_empty_v1_database(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    with closing(Store.open(path)) as store:
        assert usage(store) == (0, 0)
        stored, _ = store.inbox_insert_within_quota([msg(1)], Quota(10**6, 10**6))
        assert len(stored) == 1 and usage(store) == (CHARGE, 1)
