"""Durable session mailboxes: one SQLite file, ``<state_dir>/sessions.db``.

The plugin keeps its own database (not a table in the core's ``state.db``) so
that it can be installed, removed or wiped without touching the core's
schema. Like the core store it runs in WAL mode with ``synchronous=NORMAL``:
a committed message survives the process being killed at any point; a power
loss may lose the last few commits but never corrupts the file.

:class:`SessionStore` is synchronous and not thread-safe; the plugin calls it
from one dedicated worker thread (see :class:`~tmax_mesh_session_mailbox.mailbox.SessionMailbox`).
Message ids are 16-byte BLOBs, unique across all sessions: delivering the
same remote message twice (after a crash, or a sender's retry) stores it once.

Remote messages are bounded by byte quotas on the unread ones, per sending
node and over all of them (:meth:`SessionStore.insert_remote_many`), counted
like the core inbox's (:class:`tmax_core.store.UsageTable`) in the table
``remote_usage``, which triggers keep in step with ``messages`` (schema v2).
Local sessions' messages are not counted: they come from the node's owner.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tmax_core.errors import NotFound, UsageError
from tmax_core.plugin.helpers import (
    Database,
    Migration,
    Quota,
    UsageTable,
    keep_rowid_counter,
    lastrowid_if_new,
    open_database,
)

DB_NAME = "sessions.db"
MAX_SESSION_LEN = 128
LOCAL = "local"
REMOTE = "remote"

_SESSION_INDEX = "CREATE INDEX messages_session ON messages(session, acked, id)"


def _messages_table(name: str, message_id: str) -> str:
    """The messages table as versions 1 and 3 create it: they differ only in its
    name and ``message_id``'s constraint. Frozen: a later version that changes
    the columns writes its own statement."""
    return f"""CREATE TABLE {name} (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id {message_id},
        session TEXT NOT NULL,
        origin TEXT NOT NULL,
        from_session TEXT,
        from_node_id BLOB,
        from_alias TEXT,
        sent_at_ms INTEGER NOT NULL,
        received_at_ms INTEGER NOT NULL,
        scope TEXT,
        content_type TEXT NOT NULL,
        body BLOB NOT NULL,
        acked INTEGER NOT NULL DEFAULT 0,
        reply_to BLOB
    )"""


_SCHEMA_V1 = (_messages_table("messages", "BLOB NOT NULL UNIQUE"), _SESSION_INDEX)

# Unread bytes and messages of remote origin per sending node, as in the
# core's inbox_usage (a migration that rebuilds ``messages`` creates its
# triggers again).
REMOTE_USAGE = UsageTable("remote_usage", "messages", counted="origin = 'remote'")
_SCHEMA_V2 = REMOTE_USAGE.create()

_COLS_V1 = (
    "id, message_id, session, origin, from_session, from_node_id, from_alias, sent_at_ms, "
    "received_at_ms, scope, content_type, body, acked, reply_to"
)

# Version 3: a message is (sending node, message_id), as in the core's inbox:
# two friends may pick the same id, and neither may shadow the other. Local
# messages (no sending node) are unique by message_id among themselves.
_SCHEMA_V3 = (
    _messages_table("messages_v3", "BLOB NOT NULL"),
    f"INSERT INTO messages_v3 ({_COLS_V1}) SELECT {_COLS_V1} FROM messages",
    *keep_rowid_counter(old="messages", new="messages_v3"),
    "DROP TABLE messages",
    "ALTER TABLE messages_v3 RENAME TO messages",
    _SESSION_INDEX,
    "CREATE UNIQUE INDEX messages_identity ON messages(coalesce(from_node_id, x''), message_id)",
    "CREATE INDEX messages_message ON messages(message_id)",
    *REMOTE_USAGE.triggers(),
)

MIGRATIONS: tuple[Migration, ...] = (_SCHEMA_V1, _SCHEMA_V2, _SCHEMA_V3)
SCHEMA_VERSION = len(MIGRATIONS)

# Narrows a statement to one sending node when its two parameters are a node id.
_FROM = "AND (? IS NULL OR from_node_id = ?)"

_COLS = (
    "message_id, session, origin, from_session, from_node_id, from_alias, sent_at_ms, "
    "received_at_ms, scope, content_type, body, acked, reply_to"
)
_INSERT = f"INSERT OR IGNORE INTO messages ({_COLS}) VALUES ({', '.join('?' * 13)})"


@dataclass
class SessionMessage:
    """One message in a session's mailbox.

    ``origin`` is ``local`` (sent by another local session, named in
    ``from_session``) or ``remote`` (delivered from a friend node: tagged with
    ``from_node_id``, ``from_alias`` and ``scope``).
    """

    message_id: bytes
    session: str
    origin: str
    from_session: str | None
    from_node_id: bytes | None
    from_alias: str | None
    sent_at_ms: int
    received_at_ms: int
    scope: str | None
    content_type: str
    body: bytes
    acked: bool = False
    reply_to: bytes | None = None

    def params(self) -> tuple[Any, ...]:
        return (
            self.message_id,
            self.session,
            self.origin,
            self.from_session,
            self.from_node_id,
            self.from_alias,
            self.sent_at_ms,
            self.received_at_ms,
            self.scope,
            self.content_type,
            self.body,
            int(self.acked),
            self.reply_to,
        )


def _row(row: Sequence[Any]) -> SessionMessage:
    return SessionMessage(
        message_id=bytes(row[0]),
        session=row[1],
        origin=row[2],
        from_session=row[3],
        from_node_id=bytes(row[4]) if row[4] is not None else None,
        from_alias=row[5],
        sent_at_ms=row[6],
        received_at_ms=row[7],
        scope=row[8],
        content_type=row[9],
        body=bytes(row[10]),
        acked=bool(row[11]),
        reply_to=bytes(row[12]) if row[12] is not None else None,
    )


def validate_session_name(name: str) -> None:
    """Raise ``ValueError`` (one line) unless ``name`` can name a session.

    Names are case-sensitive, 1-128 characters, without control characters or
    leading/trailing whitespace (so that what a person types is what is stored).
    """
    if not isinstance(name, str) or not name:
        raise ValueError("a session name must not be empty")
    if len(name) > MAX_SESSION_LEN:
        raise ValueError(f"a session name is at most {MAX_SESSION_LEN} characters")
    if name != name.strip():
        raise ValueError(f"session name {name!r} has leading or trailing whitespace")
    if any(not ch.isprintable() for ch in name):
        raise ValueError(f"session name {name!r} contains control characters")


def check_session(name: str) -> str:
    """:func:`validate_session_name` as a :class:`UsageError` (for API callers)."""
    try:
        validate_session_name(name)
    except ValueError as err:
        raise UsageError(str(err)) from None
    return name


class SessionStore(Database):
    """Synchronous access to ``sessions.db``; see the module docstring."""

    @classmethod
    def open(cls, path: Path) -> SessionStore:
        """Open (creating if needed, mode 0600) the database file ``path``."""
        path = Path(path)
        conn = open_database(path, MIGRATIONS, what="session database", package="tmax-mesh-session-mailbox")
        return cls(conn, path)

    # ------------------------------------------------------------------ writes

    def insert(self, message: SessionMessage) -> bool:
        """Store ``message`` unless its id is already there; True if it is new."""
        check_session(message.session)
        return self.conn.execute(_INSERT, message.params()).rowcount == 1

    def insert_remote_many(self, messages: Sequence[SessionMessage], quota: Quota) -> list[SessionMessage]:
        """Store remote messages within ``quota``, in one transaction; returns
        the ones refused (see :meth:`tmax_core.store.UsageTable.insert_within`)."""
        for m in messages:
            check_session(m.session)
        with self._tx() as conn:
            _stored, refused = REMOTE_USAGE.insert_within(
                conn, messages, quota, lambda m: lastrowid_if_new(conn.execute(_INSERT, m.params()))
            )
        return refused

    def delete(self, session: str, message_ids: Sequence[bytes], sender: bytes | None = None) -> int:
        """Delete messages of ``session`` (from node ``sender`` if given), read
        or not; returns how many.

        An id that is not in that session raises :class:`NotFound` naming it,
        one that several senders used (without ``sender``) UsageError, and
        nothing changes.
        """
        ids = list(dict.fromkeys(message_ids))
        with self._tx() as conn:
            self._require_in_session(conn, session, ids, sender)
            return conn.executemany(
                f"DELETE FROM messages WHERE message_id = ? AND session = ? {_FROM}",
                [(m, session, sender, sender) for m in ids],
            ).rowcount

    def delete_acked(self, session: str) -> int:
        """Delete every message of ``session`` already read; returns how many."""
        return self.conn.execute("DELETE FROM messages WHERE session = ? AND acked != 0", (session,)).rowcount

    @staticmethod
    def _require_in_session(
        conn: sqlite3.Connection, session: str, ids: Sequence[bytes], sender: bytes | None
    ) -> None:
        for mid in ids:
            senders = conn.execute(
                "SELECT DISTINCT coalesce(from_node_id, x'') FROM messages "
                f"WHERE message_id = ? AND session = ? {_FROM}",
                (mid, session, sender, sender),
            ).fetchall()
            if not senders:
                raise NotFound(f"no message with id {bytes(mid).hex()} in session {session!r}")
            if len(senders) > 1:
                raise UsageError(
                    f"message id {bytes(mid).hex()} is used by {len(senders)} senders "
                    f"in session {session!r}; say which with --from"
                )

    def ack(self, session: str, message_ids: Sequence[bytes], sender: bytes | None = None) -> int:
        """Mark messages of ``session`` (from node ``sender`` if given) read;
        returns how many were unread.

        An id that is not in that session raises :class:`NotFound` naming it,
        and nothing changes.
        """
        ids = list(dict.fromkeys(message_ids))
        if not ids:
            return 0
        with self._tx() as conn:
            self._require_in_session(conn, session, ids, sender)
            cur = conn.executemany(
                f"UPDATE messages SET acked = 1 WHERE message_id = ? AND session = ? {_FROM} AND acked = 0",
                [(m, session, sender, sender) for m in ids],
            )
            return cur.rowcount

    def ack_all(self, session: str) -> int:
        """Mark every message of ``session`` read; returns how many were unread."""
        return self.conn.execute(
            "UPDATE messages SET acked = 1 WHERE session = ? AND acked = 0", (session,)
        ).rowcount

    # ------------------------------------------------------------------ reads

    def list_messages(
        self, session: str, unread_only: bool = False, limit: int | None = None
    ) -> list[SessionMessage]:
        """Messages of ``session``, oldest first."""
        where = "session = ? AND acked = 0" if unread_only else "session = ?"
        rows = self.conn.execute(
            f"SELECT {_COLS} FROM messages WHERE {where} ORDER BY id LIMIT ?",
            (session, limit or -1),
        )
        return [_row(r) for r in rows]

    def unread(self, session: str) -> int:
        return self.conn.execute(
            "SELECT count(*) FROM messages WHERE session = ? AND acked = 0", (session,)
        ).fetchone()[0]
