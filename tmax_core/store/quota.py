"""Storage quotas on unread messages, for the inbox and for plugins' mailboxes.

A message is charged what its sender controls (body, content type, scope,
reply-to) plus a fixed allowance for the rest of its row and index entries,
so that empty messages are not free. Only unread messages count: acking or
deleting one gives its bytes back.

A :class:`UsageTable` holds the unread bytes and messages per sender, and
their sum under :data:`ALL_SENDERS`, kept by triggers in the transaction that
changes the messages table: checking a quota is two primary-key reads,
whatever the number of messages.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

MESSAGE_OVERHEAD = 128

ALL_SENDERS = b""
"""The usage row that sums every sender's (an id no node has)."""


@dataclass(frozen=True)
class Quota:
    """Byte limits on unread messages: per sender and over all senders."""

    per_sender: int
    total: int


def message_charge(body: bytes, content_type: str, scope: str | None, reply_to: bytes | None) -> int:
    """The bytes one message counts against a quota (:func:`charge_sql` in SQL)."""
    return (
        len(body)
        + len(content_type.encode())
        + len((scope or "").encode())
        + len(reply_to or b"")
        + MESSAGE_OVERHEAD
    )


def charge_sql(row: str) -> str:
    """:func:`message_charge` of the row ``row`` (``new``, ``old``, a table) as an SQL expression."""
    return (
        f"(length({row}.body) + length(CAST({row}.content_type AS BLOB)) "
        f"+ coalesce(length(CAST({row}.scope AS BLOB)), 0) + coalesce(length({row}.reply_to), 0) "
        f"+ {MESSAGE_OVERHEAD})"
    )


class Charged(Protocol):
    """What a quota looks at in a message."""

    @property
    def message_id(self) -> bytes: ...
    @property
    def from_node_id(self) -> bytes | None: ...
    @property
    def body(self) -> bytes: ...
    @property
    def content_type(self) -> str: ...
    @property
    def scope(self) -> str | None: ...
    @property
    def reply_to(self) -> bytes | None: ...


M = TypeVar("M", bound=Charged)


@dataclass(frozen=True)
class UsageTable:
    """The table ``name`` of unread bytes and messages per sender in the
    messages table ``messages``, counting only its rows where ``counted``
    holds (an SQL condition on the row's columns, e.g. ``origin = 'remote'``)."""

    name: str
    messages: str
    counted: str = ""

    def _only(self, row: str) -> str:
        """``counted`` on ``row`` (``new.``, ``old.``, or "" for the table) and an AND."""
        return f"{row}{self.counted} AND " if self.counted else ""

    def triggers(self) -> tuple[str, ...]:
        """The triggers that keep the table in step (a migration that
        rebuilds the messages table must create them again)."""
        return (
            f"""CREATE TRIGGER {self.name}_insert AFTER INSERT ON {self.messages}
        WHEN {self._only("new.")}new.acked = 0 BEGIN
        INSERT INTO {self.name} (from_node_id, bytes, messages)
        VALUES (new.from_node_id, {charge_sql("new")}, 1), (x'', {charge_sql("new")}, 1)
        ON CONFLICT(from_node_id) DO UPDATE SET bytes = bytes + excluded.bytes, messages = messages + 1;
    END""",
            f"""CREATE TRIGGER {self.name}_ack AFTER UPDATE OF acked ON {self.messages}
        WHEN {self._only("new.")}old.acked = 0 AND new.acked != 0 BEGIN
        UPDATE {self.name} SET bytes = bytes - {charge_sql("old")}, messages = messages - 1
        WHERE from_node_id IN (old.from_node_id, x'');
    END""",
            f"""CREATE TRIGGER {self.name}_delete AFTER DELETE ON {self.messages}
        WHEN {self._only("old.")}old.acked = 0 BEGIN
        UPDATE {self.name} SET bytes = bytes - {charge_sql("old")}, messages = messages - 1
        WHERE from_node_id IN (old.from_node_id, x'');
    END""",
        )

    def create(self) -> tuple[str, ...]:
        """The migration that adds the table, its triggers, and the unread
        messages already there (counted once)."""
        where = f"WHERE {self._only('')}acked = 0"
        return (
            f"""CREATE TABLE {self.name} (
        from_node_id BLOB PRIMARY KEY,
        bytes INTEGER NOT NULL,
        messages INTEGER NOT NULL
    ) WITHOUT ROWID""",
            *self.triggers(),
            f"INSERT INTO {self.name} (from_node_id, bytes, messages) "
            f"SELECT from_node_id, sum({charge_sql(self.messages)}), count(*) FROM {self.messages} "
            f"{where} GROUP BY from_node_id",
            f"INSERT INTO {self.name} (from_node_id, bytes, messages) "
            f"SELECT x'', coalesce(sum({charge_sql(self.messages)}), 0), count(*) "
            f"FROM {self.messages} {where}",
        )

    def usage(self, conn: sqlite3.Connection, sender: bytes = ALL_SENDERS) -> tuple[int, int]:
        """``(bytes, messages)`` unread from ``sender`` (default: from everyone)."""
        row = conn.execute(
            f"SELECT bytes, messages FROM {self.name} WHERE from_node_id = ?", (sender,)
        ).fetchone()
        return (row[0], row[1]) if row else (0, 0)

    def insert_within(
        self,
        conn: sqlite3.Connection,
        msgs: Sequence[M],
        quota: Quota,
        insert: Callable[[M], int | None],
    ) -> tuple[list[tuple[int, M]], list[M]]:
        """``insert`` each of ``msgs`` that fits ``quota``: ``(stored, refused)``,
        ``stored`` as ``(rowid, message)`` pairs. Run it in a write transaction.

        Messages are taken in order; one that would bring its sender's unread
        bytes past ``quota.per_sender``, or everyone's past ``quota.total``, is
        not stored but returned in ``refused``, and the next ones still get
        their chance. ``insert`` returns the new row id, or None for a message
        already there (a repeat). A refused message that is already there
        (stored before a crash, delivered again) is a repeat, not refused.
        """
        stored: list[tuple[int, M]] = []
        refused: list[M] = []
        total = self.usage(conn)[0]
        used: dict[bytes, int] = {}
        for m in msgs:
            sender = m.from_node_id or ALL_SENDERS
            mine = used.get(sender)
            if mine is None:
                mine = self.usage(conn, sender)[0]
            size = message_charge(m.body, m.content_type, m.scope, m.reply_to)
            if mine + size > quota.per_sender or total + size > quota.total:
                there = conn.execute(
                    f"SELECT 1 FROM {self.messages} WHERE message_id = ? AND from_node_id = ?",
                    (m.message_id, sender),
                ).fetchone()
                if there is None:
                    refused.append(m)
            else:
                rowid = insert(m)
                if rowid is not None:
                    stored.append((rowid, m))
                    mine += size
                    total += size
            used[sender] = mine
        return stored, refused
