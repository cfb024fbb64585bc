"""The ``inbox`` table: messages received, keyed by (sender, message id), read
by row id (watchers resume from one), within the quotas of ``inbox_usage``."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from tmax_core.errors import NotFound, UsageError
from tmax_core.model import InboxMessage
from tmax_core.sqlitedb import Database, lastrowid_if_new
from tmax_core.store.quota import Quota
from tmax_core.store.rows import chunks, marks, nid
from tmax_core.store.schema import INBOX_COLS_V1, INBOX_USAGE

_INBOX_COLS = INBOX_COLS_V1

# ``from_alias`` None is filled with the sender's current friend alias.
_INBOX_INSERT = (
    "INSERT OR IGNORE INTO inbox (message_id, from_node_id, from_alias, sent_at_ms, received_at_ms, "
    "scope, content_type, body, acked, reply_to) VALUES "
    "(?, ?, coalesce(?, (SELECT alias FROM friends WHERE node_id = ?)), ?, ?, ?, ?, ?, ?, ?)"
)


def insert_message(conn: sqlite3.Connection, m: InboxMessage) -> int | None:
    """Store ``m`` unless it is there already; its row id if new."""
    params = (
        m.message_id,
        m.from_node_id,
        m.from_alias,
        m.from_node_id,
        m.sent_at_ms,
        m.received_at_ms,
        m.scope,
        m.content_type,
        m.body,
        int(m.acked),
        m.reply_to,
    )
    return lastrowid_if_new(conn.execute(_INBOX_INSERT, params))


def _inbox(row: Sequence[Any]) -> tuple[int, InboxMessage]:
    return row[0], InboxMessage(
        message_id=row[1],
        from_node_id=row[2],
        from_alias=row[3],
        sent_at_ms=row[4],
        received_at_ms=row[5],
        scope=row[6],
        content_type=row[7],
        body=row[8],
        acked=bool(row[9]),
        reply_to=row[10],
    )


def _require_inbox_ids(conn: sqlite3.Connection, ids: Sequence[bytes], sender: bytes | None) -> None:
    """NotFound naming the first of ``ids`` that no inbox message has (from
    ``sender``, when given); UsageError for an id that, without a sender,
    names messages from several senders (a message is sender + id)."""
    senders: dict[bytes, set[bytes]] = {}
    for chunk in chunks(ids):
        query = f"SELECT message_id, from_node_id FROM inbox WHERE message_id IN ({marks(chunk)})"
        params: tuple[Any, ...] = tuple(chunk)
        if sender is not None:
            query, params = query + " AND from_node_id = ?", (*params, sender)
        for message_id, from_node_id in conn.execute(query, params):
            senders.setdefault(message_id, set()).add(from_node_id)
    for mid in ids:
        found = senders.get(mid)
        if not found:
            raise NotFound(
                f"no inbox message with id {bytes(mid).hex()}" + (f" from {nid(sender)}" if sender else "")
            )
        if len(found) > 1:
            names = ", ".join(sorted(nid(f) for f in found))
            raise UsageError(
                f"message id {bytes(mid).hex()} is used by {len(found)} senders ({names}); "
                "say which with --from"
            )


class InboxTable(Database):
    """The inbox methods of :class:`~tmax_core.store.Store`."""

    def inbox_insert_many(self, msgs: Sequence[InboxMessage]) -> list[tuple[int, InboxMessage]]:
        """Store messages in one transaction, unless already there; returns the
        ``(rowid, message)`` pairs actually stored (repeats are left out), in
        rowid order, for the watchers."""
        stored = []
        with self._tx() as conn:
            for m in msgs:
                rowid = insert_message(conn, m)
                if rowid is not None:
                    stored.append((rowid, m))
        return stored

    def inbox_insert_within_quota(
        self, msgs: Sequence[InboxMessage], quota: Quota
    ) -> tuple[list[tuple[int, InboxMessage]], list[InboxMessage]]:
        """:meth:`inbox_insert_many` within ``quota``: ``(stored, refused)``
        (see :meth:`~tmax_core.store.quota.UsageTable.insert_within`)."""
        with self._tx() as conn:
            return INBOX_USAGE.insert_within(conn, msgs, quota, lambda m: insert_message(conn, m))

    def inbox_delete(self, message_ids: Sequence[bytes], sender: bytes | None = None) -> int:
        """Delete messages (read or not), of ``sender`` if given; returns how
        many rows went.

        An unknown id raises NotFound naming the first one, an id several
        senders used (without ``sender``) UsageError; nothing changes.
        """
        ids = list(dict.fromkeys(message_ids))
        if not ids:
            return 0
        with self._tx() as conn:
            _require_inbox_ids(conn, ids, sender)
            return conn.executemany(
                "DELETE FROM inbox WHERE message_id = ? AND (? IS NULL OR from_node_id = ?)",
                [(m, sender, sender) for m in ids],
            ).rowcount

    def inbox_delete_acked(self) -> int:
        """Delete every message already read; returns how many."""
        return self.conn.execute("DELETE FROM inbox WHERE acked != 0").rowcount

    def inbox_list(
        self, unread_only: bool = False, limit: int | None = None, after_rowid: int = 0
    ) -> list[tuple[int, InboxMessage]]:
        """``(rowid, message)`` pairs with rowid > ``after_rowid``, oldest first."""
        where = "id > ? AND acked = 0" if unread_only else "id > ?"
        rows = self.conn.execute(
            f"SELECT {_INBOX_COLS} FROM inbox WHERE {where} ORDER BY id LIMIT ?",
            (after_rowid, -1 if limit is None else limit),
        )
        return [_inbox(r) for r in rows]

    def inbox_ack(self, message_ids: list[bytes], sender: bytes | None = None) -> int:
        """Mark messages read (of ``sender`` if given); returns how many were
        unread before.

        An unknown id raises NotFound naming the first one, an id several
        senders used (without ``sender``) UsageError; nothing changes.
        """
        ids = list(message_ids)
        if not ids:
            return 0
        with self._tx() as conn:
            _require_inbox_ids(conn, ids, sender)
            cur = conn.executemany(
                "UPDATE inbox SET acked = 1 "
                "WHERE message_id = ? AND (? IS NULL OR from_node_id = ?) AND acked = 0",
                [(m, sender, sender) for m in ids],
            )
            return cur.rowcount

    def inbox_ack_all(self) -> int:
        """Mark every message read; returns how many were unread."""
        return self.conn.execute("UPDATE inbox SET acked = 1 WHERE acked = 0").rowcount

    def inbox_unread(self) -> int:
        return self.conn.execute("SELECT count(*) FROM inbox WHERE acked = 0").fetchone()[0]

    def inbox_max_rowid(self) -> int:
        """The rowid of the newest inbox message (0 when empty): where a watcher starts."""
        return self.conn.execute("SELECT coalesce(max(id), 0) FROM inbox").fetchone()[0]
