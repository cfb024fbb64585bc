"""The ``outbox`` table: messages to send, persisted until delivered, failed
or expired; retried when due."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from typing import Any

from tmax_core.errors import NotFound
from tmax_core.model import OutboxEntry
from tmax_core.sqlitedb import Database
from tmax_core.store.rows import chunks, marks

OUTBOX_STATUSES = ("queued", "sent", "delivered", "failed")
EXPIRED_ERROR = "expired: ttl passed before delivery"

# The fields an update may set.
_OUTBOX_FIELDS = frozenset(
    ("status", "path", "attempts", "next_attempt_ms", "error", "delivered_at_ms", "sent_hashes")
)
# The columns are OutboxEntry's fields, in order: a row is an entry's fields.
_FIELDS = tuple(f.name for f in dataclasses.fields(OutboxEntry))
_OUTBOX_COLS = ", ".join(_FIELDS)
_OUTBOX_UPSERT = (
    f"INSERT INTO outbox ({_OUTBOX_COLS}) VALUES ({','.join('?' * len(_FIELDS))}) "
    "ON CONFLICT(message_id) DO UPDATE SET to_node_id=excluded.to_node_id, scope=excluded.scope, "
    "content_type=excluded.content_type, body=excluded.body, created_at_ms=excluded.created_at_ms, "
    "expires_at_ms=excluded.expires_at_ms, status=excluded.status, path=excluded.path, "
    "attempts=excluded.attempts, next_attempt_ms=excluded.next_attempt_ms, error=excluded.error, "
    "reply_to=excluded.reply_to, delivered_at_ms=excluded.delivered_at_ms, "
    "sent_hashes=excluded.sent_hashes"
)


def expired_error(last_error: str | None) -> str:
    """The error of an entry whose TTL passed, keeping the last attempt's error
    (e.g. ``rejected: rate_limited ...``) so the sender still sees why."""
    return f"{EXPIRED_ERROR} (last error: {last_error})" if last_error else EXPIRED_ERROR


def _params(e: OutboxEntry) -> tuple[Any, ...]:
    return tuple(getattr(e, name) for name in _FIELDS)


def _outbox(row: Sequence[Any]) -> OutboxEntry:
    return OutboxEntry(*row)


def _assignments(fields: dict[str, Any]) -> tuple[tuple[str, ...], str]:
    """The sorted field names and their ``a = ?, b = ?`` (ValueError for an unknown field)."""
    keys = tuple(sorted(fields))
    bad = [k for k in keys if k not in _OUTBOX_FIELDS]
    if bad:
        raise ValueError(f"unknown outbox field(s): {', '.join(bad)}")
    return keys, ", ".join(f"{k} = ?" for k in keys)


class OutboxTable(Database):
    """The outbox methods of :class:`~tmax_core.store.Store`."""

    def outbox_put_many(self, entries: Sequence[OutboxEntry]) -> None:
        """Insert outbox entries in one transaction (replacing every field of an
        entry whose id exists)."""
        with self._tx() as conn:
            conn.executemany(_OUTBOX_UPSERT, [_params(e) for e in entries])

    def outbox_get(self, message_id: bytes) -> OutboxEntry | None:
        row = self.conn.execute(
            f"SELECT {_OUTBOX_COLS} FROM outbox WHERE message_id = ?", (message_id,)
        ).fetchone()
        return _outbox(row) if row else None

    def outbox_due(self, now_ms: int, limit: int, skip: Collection[bytes] = ()) -> list[OutboxEntry]:
        """Queued/sent entries whose next attempt is due, oldest first, leaving
        out the ids in ``skip`` (entries already on their way). Due ids are read
        first, so a skipped entry costs no body read."""
        due = self.conn.execute(
            "SELECT message_id FROM outbox WHERE status IN ('queued', 'sent') AND next_attempt_ms <= ? "
            "ORDER BY created_at_ms, rowid",
            (now_ms,),
        )
        ids: list[bytes] = []
        for (message_id,) in due:
            if len(ids) == limit:
                break
            if message_id not in skip:
                ids.append(message_id)
        due.close()
        found: dict[bytes, OutboxEntry] = {}
        for chunk in chunks(ids):
            for row in self.conn.execute(
                f"SELECT {_OUTBOX_COLS} FROM outbox WHERE message_id IN ({marks(chunk)})", tuple(chunk)
            ):
                found[row[0]] = _outbox(row)
        return [found[i] for i in ids if i in found]

    def outbox_update_many(self, updates: Sequence[tuple[bytes, dict[str, Any]]]) -> None:
        """Set the given fields of entries (an explicit ``None`` clears a
        nullable field such as ``error``), in one transaction, all or nothing:
        NotFound if an entry does not exist, ValueError for an unknown field.
        An entry already ``delivered`` or ``failed`` is left as it is."""
        groups: dict[tuple[str, ...], tuple[str, list[tuple[Any, ...]]]] = {}
        ids: list[bytes] = []
        for message_id, fields in updates:
            keys, assign = _assignments(fields)
            ids.append(message_id)
            if not keys:
                continue
            groups.setdefault(keys, (assign, []))[1].append((*(fields[k] for k in keys), message_id))
        if not ids:
            return
        with self._tx() as conn:
            for chunk in chunks(ids):
                known = {
                    r[0]
                    for r in conn.execute(
                        f"SELECT message_id FROM outbox WHERE message_id IN ({marks(chunk)})", chunk
                    )
                }
                for mid in chunk:
                    if mid not in known:
                        raise NotFound(f"no outbox entry with id {bytes(mid).hex()}")
            for assign, rows in groups.values():
                # A final outcome stays final: an attempt that was still in
                # flight when an ack arrived on its own cannot undo it.
                conn.executemany(
                    f"UPDATE outbox SET {assign} "
                    "WHERE message_id = ? AND status NOT IN ('delivered', 'failed')",
                    rows,
                )

    def outbox_due_again(self, path: str, now_ms: int) -> int:
        """Make entries handed off to ``path`` (status ``sent``) due now; returns how many."""
        cur = self.conn.execute(
            "UPDATE outbox SET next_attempt_ms = ? "
            "WHERE status = 'sent' AND path = ? AND next_attempt_ms > ?",
            (now_ms, path, now_ms),
        )
        return cur.rowcount

    def outbox_expire(self, now_ms: int) -> list[bytes]:
        """Fail queued/sent entries whose TTL has passed; returns their ids."""
        rows = self.conn.execute(
            # error: the same text as expired_error(error)
            "UPDATE outbox SET status = 'failed', error = CASE WHEN error IS NULL OR error = '' "
            "THEN ? ELSE ? || ' (last error: ' || error || ')' END "
            "WHERE status IN ('queued', 'sent') AND expires_at_ms <= ? RETURNING message_id",
            (EXPIRED_ERROR, EXPIRED_ERROR, now_ms),
        ).fetchall()
        return [r[0] for r in rows]

    def outbox_counts(self) -> dict[str, int]:
        """Entries per status (every known status present, possibly 0)."""
        counts = dict.fromkeys(OUTBOX_STATUSES, 0)
        for status, n in self.conn.execute("SELECT status, count(*) FROM outbox GROUP BY status"):
            counts[status] = n
        return counts

    def outbox_counts_by_friend(self) -> dict[bytes, dict[str, int]]:
        """Entries per recipient and status (only recipients with entries; every status present)."""
        counts: dict[bytes, dict[str, int]] = {}
        query = "SELECT to_node_id, status, count(*) FROM outbox GROUP BY to_node_id, status"
        for to, status, n in self.conn.execute(query):
            counts.setdefault(bytes(to), dict.fromkeys(OUTBOX_STATUSES, 0))[status] = n
        return counts
