"""Durable node state: one SQLite database, ``<state_dir>/state.db``.

Tables: ``friends``, ``issued_invites``, ``inbox``, ``seen`` (replay
protection), ``outbox`` and a small ``meta`` key/value table. Keeping them in
one database makes every multi-step change (for example "consume an invite use
and add the sender as a friend") a single transaction.

Durability: the database runs in WAL mode with ``synchronous=NORMAL``. A
committed transaction survives the process being killed at any point
(including ``SIGKILL``); a power loss or OS crash may lose the last few
committed transactions, but never corrupts the database. ``busy_timeout`` lets
several connections (another process, a CLI run, a test) wait for each other
instead of failing at once; write transactions start with ``BEGIN IMMEDIATE``
so check-then-write sequences (invite consumption) are serialized.

Threading: :class:`Store` is synchronous and not thread-safe by itself. The
node serializes its calls with a lock: they run on one dedicated worker
thread, and small ones on the event loop when the database is idle (see
:meth:`tmax_core.node.Node.db_batch`); the connection is opened with
``check_same_thread=False`` for that.

Schema versions live in ``PRAGMA user_version`` and are upgraded by
:func:`_migrate` (v2 keys received messages by sender and message id, v3
adds the inbox quota accounting, ``inbox_usage``). Node ids and message ids
are BLOBs, lists (scopes, relay hosts, endpoints) are JSON text, times are ms
ints.

Failures to open the database (unwritable directory, not a database,
corrupted header, schema from a newer version) raise
:class:`~tmax_core.errors.StateDirError` with one line naming the file. Open
does not scan the whole file; use :meth:`Store.integrity_check` for that.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tmax_core.errors import MeshError, NotFound, Reason, StateDirError, UsageError
from tmax_core.model import Friend, InboxMessage, IssuedInvite, OutboxEntry, RateLimit

DB_NAME = "state.db"
SCHEMA_VERSION = 3
BUSY_TIMEOUT_MS = 10_000

# Used/expired invites are remembered so a replayed token is reported as
# used/expired rather than unknown; bounded by these two limits.
INVITE_RETENTION_MS = 30 * 24 * 3600 * 1000
INVITE_MAX_ROWS = 10_000

ALIAS_TAKEN = "alias_taken"
OUTBOX_STATUSES = ("queued", "sent", "delivered", "failed")
EXPIRED_ERROR = "expired: ttl passed before delivery"


def expired_error(last_error: str | None) -> str:
    """The error of an entry whose TTL passed, keeping the last attempt's error
    (e.g. ``rejected: rate_limited ...``) so the sender still sees why."""
    return f"{EXPIRED_ERROR} (last error: {last_error})" if last_error else EXPIRED_ERROR


_CHUNK = 500  # ids per "IN (...)" query

_UNSET: Any = object()
_OUTBOX_FIELDS = (
    "status",
    "path",
    "attempts",
    "next_attempt_ms",
    "error",
    "delivered_at_ms",
    "sent_hashes",
)

_INBOX_COLS_V1 = (
    "id, message_id, from_node_id, from_alias, sent_at_ms, received_at_ms, scope, "
    "content_type, body, acked, reply_to"
)
_SCHEMA_V1 = (
    """CREATE TABLE friends (
        node_id BLOB PRIMARY KEY,
        public_key BLOB NOT NULL,
        alias TEXT COLLATE NOCASE UNIQUE,
        blocked INTEGER NOT NULL DEFAULT 0,
        scopes TEXT NOT NULL,
        relay_hosts TEXT NOT NULL,
        endpoints TEXT NOT NULL,
        rate_per_s REAL,
        rate_burst INTEGER,
        added_at_ms INTEGER NOT NULL,
        last_seen_ms INTEGER,
        invite_token BLOB
    )""",
    "CREATE INDEX friends_added ON friends(added_at_ms)",
    """CREATE TABLE issued_invites (
        token_id BLOB PRIMARY KEY,
        token TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        max_uses INTEGER NOT NULL,
        uses_left INTEGER,
        scopes TEXT NOT NULL,
        rate_per_s REAL,
        rate_burst INTEGER,
        revoked INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX issued_invites_expires ON issued_invites(expires_at_ms)",
    """CREATE TABLE inbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id BLOB NOT NULL UNIQUE,
        from_node_id BLOB NOT NULL,
        from_alias TEXT,
        sent_at_ms INTEGER NOT NULL,
        received_at_ms INTEGER NOT NULL,
        scope TEXT NOT NULL,
        content_type TEXT NOT NULL,
        body BLOB NOT NULL,
        acked INTEGER NOT NULL DEFAULT 0,
        reply_to BLOB
    )""",
    "CREATE INDEX inbox_acked ON inbox(acked, id)",
    """CREATE TABLE seen (
        message_id BLOB PRIMARY KEY,
        from_node_id BLOB NOT NULL,
        status TEXT NOT NULL,
        seen_at_ms INTEGER NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX seen_at ON seen(seen_at_ms)",
    """CREATE TABLE outbox (
        message_id BLOB NOT NULL UNIQUE,
        to_node_id BLOB NOT NULL,
        scope TEXT NOT NULL,
        content_type TEXT NOT NULL,
        body BLOB NOT NULL,
        created_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        status TEXT NOT NULL,
        path TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        reply_to BLOB,
        delivered_at_ms INTEGER
    )""",
    "CREATE INDEX outbox_due ON outbox(status, next_attempt_ms)",
    "CREATE INDEX outbox_to ON outbox(to_node_id, status)",
    "CREATE INDEX outbox_created ON outbox(created_at_ms)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
)

# Version 2: a received message is (sender, message_id), not message_id alone
# (DESIGN §7): two senders may pick the same id, and neither may shadow the
# other. ``seen`` also keeps the hash of the envelope it accepted, so an exact
# repeat is answered "duplicate" without a signature check.
# A rebuilt AUTOINCREMENT table keeps the old one's counter, so a row id is
# never handed out twice (inbox watchers resume from a row id).
KEEP_ROWID_COUNTER = (
    "DELETE FROM sqlite_sequence WHERE name = '{new}';"
    "INSERT INTO sqlite_sequence (name, seq) SELECT '{new}', seq FROM sqlite_sequence WHERE name = '{old}'"
)
_SCHEMA_V2 = (
    """CREATE TABLE seen_v2 (
        from_node_id BLOB NOT NULL,
        message_id BLOB NOT NULL,
        envelope_hash BLOB,
        status TEXT NOT NULL,
        seen_at_ms INTEGER NOT NULL,
        PRIMARY KEY (from_node_id, message_id)
    ) WITHOUT ROWID""",
    "INSERT INTO seen_v2 (from_node_id, message_id, status, seen_at_ms) "
    "SELECT from_node_id, message_id, status, seen_at_ms FROM seen",
    "DROP TABLE seen",
    "ALTER TABLE seen_v2 RENAME TO seen",
    "CREATE INDEX seen_at ON seen(seen_at_ms)",
    """CREATE TABLE inbox_v2 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id BLOB NOT NULL,
        from_node_id BLOB NOT NULL,
        from_alias TEXT,
        sent_at_ms INTEGER NOT NULL,
        received_at_ms INTEGER NOT NULL,
        scope TEXT NOT NULL,
        content_type TEXT NOT NULL,
        body BLOB NOT NULL,
        acked INTEGER NOT NULL DEFAULT 0,
        reply_to BLOB,
        UNIQUE (from_node_id, message_id)
    )""",
    f"INSERT INTO inbox_v2 ({_INBOX_COLS_V1}) SELECT {_INBOX_COLS_V1} FROM inbox",
    *KEEP_ROWID_COUNTER.format(old="inbox", new="inbox_v2").split(";"),
    "DROP TABLE inbox",
    "ALTER TABLE inbox_v2 RENAME TO inbox",
    "CREATE INDEX inbox_acked ON inbox(acked, id)",
    "CREATE INDEX inbox_message ON inbox(message_id)",
    # The hashes of the envelopes sent for a message (32 bytes each, newest
    # last): an ack counts only if it names one of them.
    "ALTER TABLE outbox ADD COLUMN sent_hashes BLOB NOT NULL DEFAULT x''",
)

# -- storage quotas (inbox here; the session_mailbox plugin uses the same helpers)
#
# A message is charged what its sender controls (body, content type, scope,
# reply-to) plus a fixed allowance for the rest of its row and index entries,
# so that empty messages are not free. Only unread messages count: acking or
# deleting one gives its bytes back.
MESSAGE_OVERHEAD = 128


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


ALL_SENDERS = b""
"""The ``inbox_usage`` row that sums every sender's (an id no node has)."""

# inbox_usage holds the unread bytes and messages per sender, and their sum
# under ALL_SENDERS, kept by these triggers in the transaction that changes
# the inbox: checking a quota is two primary-key reads, whatever the inbox
# size. A migration that rebuilds the inbox table must create them again.
INBOX_USAGE_TRIGGERS = (
    f"""CREATE TRIGGER inbox_usage_insert AFTER INSERT ON inbox WHEN new.acked = 0 BEGIN
        INSERT INTO inbox_usage (from_node_id, bytes, messages)
        VALUES (new.from_node_id, {charge_sql("new")}, 1), (x'', {charge_sql("new")}, 1)
        ON CONFLICT(from_node_id) DO UPDATE SET bytes = bytes + excluded.bytes, messages = messages + 1;
    END""",
    f"""CREATE TRIGGER inbox_usage_ack AFTER UPDATE OF acked ON inbox
        WHEN old.acked = 0 AND new.acked != 0 BEGIN
        UPDATE inbox_usage SET bytes = bytes - {charge_sql("old")}, messages = messages - 1
        WHERE from_node_id IN (old.from_node_id, x'');
    END""",
    f"""CREATE TRIGGER inbox_usage_delete AFTER DELETE ON inbox WHEN old.acked = 0 BEGIN
        UPDATE inbox_usage SET bytes = bytes - {charge_sql("old")}, messages = messages - 1
        WHERE from_node_id IN (old.from_node_id, x'');
    END""",
)

# Version 3: unread bytes per sender, for the quotas (after version 2 rebuilt the inbox).
_SCHEMA_V3 = (
    """CREATE TABLE inbox_usage (
        from_node_id BLOB PRIMARY KEY,
        bytes INTEGER NOT NULL,
        messages INTEGER NOT NULL
    ) WITHOUT ROWID""",
    *INBOX_USAGE_TRIGGERS,
    # The unread messages of an existing database, counted once.
    f"INSERT INTO inbox_usage (from_node_id, bytes, messages) "
    f"SELECT from_node_id, sum({charge_sql('inbox')}), count(*) FROM inbox WHERE acked = 0 "
    "GROUP BY from_node_id",
    f"INSERT INTO inbox_usage (from_node_id, bytes, messages) "
    f"SELECT x'', coalesce(sum({charge_sql('inbox')}), 0), count(*) FROM inbox WHERE acked = 0",
)

_MIGRATIONS: dict[int, Sequence[str]] = {1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3}

_FRIEND_COLS = (
    "node_id, public_key, alias, blocked, scopes, relay_hosts, endpoints, "
    "rate_per_s, rate_burst, added_at_ms, last_seen_ms, invite_token"
)
_INVITE_COLS = (
    "token_id, created_at_ms, expires_at_ms, max_uses, uses_left, scopes, rate_per_s, rate_burst, revoked"
)
_INBOX_COLS = _INBOX_COLS_V1
_OUTBOX_COLS = (
    "message_id, to_node_id, scope, content_type, body, created_at_ms, expires_at_ms, "
    "status, path, attempts, next_attempt_ms, error, reply_to, delivered_at_ms, sent_hashes"
)


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction (``BEGIN IMMEDIATE``: the write lock up front, so a
    check-then-write cannot race another connection); rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _nid(node_id: bytes) -> str:
    return "0x" + bytes(node_id).hex()


def _dump(items: Iterable[str]) -> str:
    return json.dumps(list(items))


def _rate(rl: RateLimit | None) -> tuple[float | None, int | None]:
    return (rl.rate_per_s, rl.burst) if rl is not None else (None, None)


def _load_rate(rate: float | None, burst: int | None) -> RateLimit | None:
    return RateLimit(rate_per_s=rate, burst=burst) if rate is not None and burst is not None else None


def _friend(row: Sequence[Any]) -> Friend:
    return Friend(
        node_id=row[0],
        public_key=row[1],
        alias=row[2],
        blocked=bool(row[3]),
        scopes=json.loads(row[4]),
        relay_hosts=json.loads(row[5]),
        endpoints=json.loads(row[6]),
        rate_limit=_load_rate(row[7], row[8]),
        added_at_ms=row[9],
        last_seen_ms=row[10],
        invite_token=row[11],
    )


def _invite(row: Sequence[Any]) -> IssuedInvite:
    return IssuedInvite(
        token_id=row[0],
        created_at_ms=row[1],
        expires_at_ms=row[2],
        max_uses=row[3],
        uses_left=row[4],
        scopes=json.loads(row[5]),
        rate_limit=_load_rate(row[6], row[7]),
        revoked=bool(row[8]),
    )


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


def _outbox(row: Sequence[Any]) -> OutboxEntry:
    return OutboxEntry(
        message_id=row[0],
        to_node_id=row[1],
        scope=row[2],
        content_type=row[3],
        body=row[4],
        created_at_ms=row[5],
        expires_at_ms=row[6],
        status=row[7],
        path=row[8],
        attempts=row[9],
        next_attempt_ms=row[10],
        error=row[11],
        reply_to=row[12],
        delivered_at_ms=row[13],
        sent_hashes=row[14],
    )


def _require_inbox_ids(conn: sqlite3.Connection, ids: Sequence[bytes], sender: bytes | None) -> None:
    """NotFound naming the first of ``ids`` that no inbox message has (from
    ``sender``, when given); UsageError for an id that, without a sender,
    names messages from several senders (a message is sender + id)."""
    senders: dict[bytes, set[bytes]] = {}
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        query = f"SELECT message_id, from_node_id FROM inbox WHERE message_id IN ({marks})"
        params: tuple[Any, ...] = tuple(chunk)
        if sender is not None:
            query, params = query + " AND from_node_id = ?", (*params, sender)
        for message_id, from_node_id in conn.execute(query, params):
            senders.setdefault(message_id, set()).add(from_node_id)
    for mid in ids:
        found = senders.get(mid)
        if not found:
            raise NotFound(
                f"no inbox message with id {bytes(mid).hex()}" + (f" from {_nid(sender)}" if sender else "")
            )
        if len(found) > 1:
            names = ", ".join(sorted(_nid(f) for f in found))
            raise UsageError(
                f"message id {bytes(mid).hex()} is used by {len(found)} senders ({names}); "
                "say which with --from"
            )


def _chunks(items: Sequence[bytes]) -> Iterator[Sequence[bytes]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _parse_node_ref(ref: str) -> bytes | None:
    """``0x`` + 40 hex digits (any case) -> 20 bytes, else None."""
    if len(ref) == 42 and ref[:2].lower() == "0x":
        try:
            return bytes.fromhex(ref[2:])
        except ValueError:
            return None
    return None


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION` inside one transaction."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise StateDirError(
            f"state database {path} has schema version {version}, newer than this tmax-mesh "
            f"supports ({SCHEMA_VERSION}); upgrade tmax-mesh"
        )
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Re-read under the write lock: another connection may have migrated.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        while version < SCHEMA_VERSION:
            version += 1
            for stmt in _MIGRATIONS[version]:
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {int(version)}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class Store:
    """Synchronous access to ``state.db``; see the module docstring."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    # ------------------------------------------------------------------ open/close

    @classmethod
    def open(cls, path: Path) -> Store:
        """Open (creating if needed) the database file ``path``.

        If ``path`` is an existing directory, ``path / "state.db"`` is used.
        Missing parent directories are created (mode 0700); a new database file
        is created with mode 0600.
        """
        path = Path(path)
        if path.is_dir():
            path = path / DB_NAME
        conn: sqlite3.Connection | None = None
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not path.exists():
                fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
            conn = sqlite3.connect(
                str(path),
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=256,
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StateDirError(f"state database {path}: cannot enable WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = OFF")
            _migrate(conn, path)
        except StateDirError:
            if conn is not None:
                conn.close()
            raise
        except (sqlite3.Error, OSError) as exc:
            if conn is not None:
                conn.close()
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StateDirError(f"cannot open state database {path}: {detail}") from exc
        return cls(conn, path)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        conn, self._conn = self._conn, None  # type: ignore[assignment]
        if conn is not None:
            conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._conn)

    # ------------------------------------------------------------------ friends

    def _get_friend(self, conn: sqlite3.Connection, node_id: bytes) -> Friend | None:
        row = conn.execute(f"SELECT {_FRIEND_COLS} FROM friends WHERE node_id = ?", (node_id,)).fetchone()
        return _friend(row) if row else None

    def _require_friend(self, conn: sqlite3.Connection, node_id: bytes) -> Friend:
        friend = self._get_friend(conn, node_id)
        if friend is None:
            raise NotFound(f"no friend with id {_nid(node_id)}")
        return friend

    def _alias_owner(self, conn: sqlite3.Connection, alias: str) -> bytes | None:
        row = conn.execute("SELECT node_id FROM friends WHERE alias = ?", (alias,)).fetchone()
        return row[0] if row else None

    def _insert_friend(self, conn: sqlite3.Connection, f: Friend) -> None:
        conn.execute(
            f"INSERT INTO friends ({_FRIEND_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                f.node_id,
                f.public_key,
                f.alias,
                int(f.blocked),
                _dump(f.scopes),
                _dump(f.relay_hosts),
                _dump(f.endpoints),
                *_rate(f.rate_limit),
                f.added_at_ms,
                f.last_seen_ms,
                f.invite_token,
            ),
        )

    def _write_friend(self, conn: sqlite3.Connection, f: Friend) -> None:
        conn.execute(
            "UPDATE friends SET alias=?, blocked=?, scopes=?, relay_hosts=?, endpoints=?, rate_per_s=?, "
            "rate_burst=?, last_seen_ms=?, invite_token=? WHERE node_id=?",
            (
                f.alias,
                int(f.blocked),
                _dump(f.scopes),
                _dump(f.relay_hosts),
                _dump(f.endpoints),
                *_rate(f.rate_limit),
                f.last_seen_ms,
                f.invite_token,
                f.node_id,
            ),
        )

    def add_friend(self, friend: Friend) -> Friend:
        """Add or merge a friend (by ``node_id``); returns the stored friend.

        An existing friend with a different public key raises
        ``MeshError(code="key_changed")``. Otherwise scopes are united,
        relay hosts/endpoints replaced when the new lists are non-empty, the
        alias / rate limit / invite token set when given; ``blocked`` and
        ``added_at_ms`` are kept. Aliases are unique (case-insensitive) among
        friends: ``MeshError(code="alias_taken")``.
        """
        with self._tx() as conn:
            existing = self._get_friend(conn, friend.node_id)
            if existing is not None and existing.public_key != friend.public_key:
                raise MeshError(
                    f"friend {_nid(friend.node_id)} is already known with a different public key",
                    code=Reason.KEY_CHANGED,
                )
            if friend.alias:
                owner = self._alias_owner(conn, friend.alias)
                if owner is not None and owner != friend.node_id:
                    raise MeshError(
                        f"alias {friend.alias!r} is already used by friend {_nid(owner)}",
                        code=ALIAS_TAKEN,
                    )
            if existing is None:
                stored = Friend(
                    node_id=friend.node_id,
                    public_key=friend.public_key,
                    alias=friend.alias or None,
                    blocked=friend.blocked,
                    scopes=list(dict.fromkeys(friend.scopes)),
                    relay_hosts=list(friend.relay_hosts),
                    endpoints=list(friend.endpoints),
                    rate_limit=friend.rate_limit,
                    added_at_ms=friend.added_at_ms,
                    last_seen_ms=friend.last_seen_ms,
                    invite_token=friend.invite_token,
                )
                self._insert_friend(conn, stored)
                return stored
            stored = existing
            stored.scopes = list(dict.fromkeys([*existing.scopes, *friend.scopes]))
            if friend.relay_hosts:
                stored.relay_hosts = list(friend.relay_hosts)
            if friend.endpoints:
                stored.endpoints = list(friend.endpoints)
            if friend.alias:
                stored.alias = friend.alias
            if friend.rate_limit is not None:
                stored.rate_limit = friend.rate_limit
            if friend.invite_token is not None:
                stored.invite_token = friend.invite_token
            if friend.last_seen_ms is not None:
                stored.last_seen_ms = max(friend.last_seen_ms, existing.last_seen_ms or 0)
            self._write_friend(conn, stored)
            return stored

    def get_friend(self, node_id: bytes) -> Friend | None:
        return self._get_friend(self._conn, node_id)

    def find_friend(self, ref: str) -> Friend:
        """Find a friend by alias (case-insensitive) or ``0x`` node id (any case)."""
        ref = ref.strip()
        node_id = _parse_node_ref(ref)
        friend = self._get_friend(self._conn, node_id) if node_id is not None else None
        if friend is None and ref:
            row = self._conn.execute(f"SELECT {_FRIEND_COLS} FROM friends WHERE alias = ?", (ref,)).fetchone()
            friend = _friend(row) if row else None
        if friend is None:
            raise NotFound(f"no friend named {ref}")
        return friend

    def list_friends(self) -> list[Friend]:
        rows = self._conn.execute(f"SELECT {_FRIEND_COLS} FROM friends ORDER BY added_at_ms, rowid")
        return [_friend(r) for r in rows]

    def set_blocked(self, node_id: bytes, blocked: bool) -> Friend:
        with self._tx() as conn:
            friend = self._require_friend(conn, node_id)
            conn.execute("UPDATE friends SET blocked = ? WHERE node_id = ?", (int(blocked), node_id))
        friend.blocked = blocked
        return friend

    def remove_friend(self, node_id: bytes) -> None:
        cur = self._conn.execute("DELETE FROM friends WHERE node_id = ?", (node_id,))
        if cur.rowcount == 0:
            raise NotFound(f"no friend with id {_nid(node_id)}")

    def update_friend_contact(self, node_id: bytes, relay_hosts: list[str], endpoints: list[str]) -> None:
        """Replace a friend's relay hosts and direct endpoints (NotFound if absent)."""
        cur = self._conn.execute(
            "UPDATE friends SET relay_hosts = ?, endpoints = ? WHERE node_id = ?",
            (_dump(relay_hosts), _dump(endpoints), node_id),
        )
        if cur.rowcount == 0:
            raise NotFound(f"no friend with id {_nid(node_id)}")

    def touch_friend(self, node_id: bytes, now_ms: int) -> None:
        """Set last_seen (never moves backwards); no-op for an unknown node."""
        self._conn.execute(
            "UPDATE friends SET last_seen_ms = max(coalesce(last_seen_ms, 0), ?) WHERE node_id = ?",
            (now_ms, node_id),
        )

    def clear_friend_invite_token(self, node_id: bytes) -> None:
        """Forget the invite token we send on first contact; no-op if absent."""
        self._conn.execute(
            "UPDATE friends SET invite_token = NULL WHERE node_id = ? AND invite_token IS NOT NULL",
            (node_id,),
        )

    # ------------------------------------------------------------------ issued invites

    def _prune_invites(self, conn: sqlite3.Connection, now_ms: int) -> None:
        conn.execute("DELETE FROM issued_invites WHERE expires_at_ms < ?", (now_ms - INVITE_RETENTION_MS,))
        (count,) = conn.execute("SELECT count(*) FROM issued_invites").fetchone()
        if count > INVITE_MAX_ROWS:
            # Drop inactive invites first, then the oldest.
            conn.execute(
                "DELETE FROM issued_invites WHERE token_id IN (SELECT token_id FROM issued_invites ORDER BY "
                "(revoked = 0 AND expires_at_ms > ? AND (uses_left IS NULL OR uses_left > 0)), "
                "created_at_ms LIMIT ?)",
                (now_ms, count - INVITE_MAX_ROWS),
            )

    def record_issued_invite(self, inv: IssuedInvite, token: str) -> None:
        """Remember an invite this node created (and prune old ones)."""
        with self._tx() as conn:
            try:
                conn.execute(
                    "INSERT INTO issued_invites (token, token_id, created_at_ms, expires_at_ms, max_uses, "
                    "uses_left, scopes, rate_per_s, rate_burst, revoked) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        token,
                        inv.token_id,
                        inv.created_at_ms,
                        inv.expires_at_ms,
                        inv.max_uses,
                        inv.uses_left,
                        _dump(inv.scopes),
                        *_rate(inv.rate_limit),
                        int(inv.revoked),
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise MeshError(f"invite {inv.token_id.hex()} is already recorded") from exc
            self._prune_invites(conn, inv.created_at_ms)

    def list_issued_invites(
        self, include_inactive: bool = False, now_ms: int | None = None
    ) -> list[IssuedInvite]:
        """Issued invites, oldest first. Active = not revoked, not expired, uses left."""
        if include_inactive:
            rows = self._conn.execute(
                f"SELECT {_INVITE_COLS} FROM issued_invites ORDER BY created_at_ms, rowid"
            )
        else:
            rows = self._conn.execute(
                f"SELECT {_INVITE_COLS} FROM issued_invites WHERE revoked = 0 AND expires_at_ms > ? "
                "AND (uses_left IS NULL OR uses_left > 0) ORDER BY created_at_ms, rowid",
                (_now_ms() if now_ms is None else now_ms,),
            )
        return [_invite(r) for r in rows]

    def issued_invite_tokens(self) -> dict[bytes, tuple[IssuedInvite, str]]:
        """``{token_id: (invite, token text)}`` for every invite remembered (at
        most ``INVITE_MAX_ROWS``): what ingress checks a stranger's first
        contact against before any crypto."""
        rows = self._conn.execute(f"SELECT {_INVITE_COLS}, token FROM issued_invites")
        return {row[0]: (_invite(row[:-1]), row[-1]) for row in rows}

    def get_issued_invite(self, token_id: bytes) -> IssuedInvite | None:
        row = self._conn.execute(
            f"SELECT {_INVITE_COLS} FROM issued_invites WHERE token_id = ?", (token_id,)
        ).fetchone()
        return _invite(row) if row else None

    def revoke_invite(self, token_id: bytes) -> None:
        cur = self._conn.execute("UPDATE issued_invites SET revoked = 1 WHERE token_id = ?", (token_id,))
        if cur.rowcount == 0:
            raise NotFound(f"no invite with id {token_id.hex()}")

    def accept_first_contact(self, token_id: bytes, friend: Friend, now_ms: int) -> Friend:
        """Consume one use of invite ``token_id`` and add ``friend``, atomically.

        The new friend gets the invite's scopes and rate limit. If the friend
        already exists with the same key it is returned and no use is consumed
        (a different key raises ``key_changed``). Invite problems raise
        ``MeshError`` with code ``Reason.INVITE_UNKNOWN`` / ``INVITE_REVOKED`` /
        ``INVITE_EXPIRED`` / ``INVITE_USED``. A proposed alias already taken by
        another friend is dropped rather than failing first contact.
        """
        with self._tx() as conn:
            existing = self._get_friend(conn, friend.node_id)
            if existing is not None:
                if existing.public_key != friend.public_key:
                    raise MeshError(
                        f"friend {_nid(friend.node_id)} is already known with a different public key",
                        code=Reason.KEY_CHANGED,
                    )
                return existing
            row = conn.execute(
                f"SELECT {_INVITE_COLS} FROM issued_invites WHERE token_id = ?", (token_id,)
            ).fetchone()
            if row is None:
                raise MeshError(
                    f"invite {token_id.hex()} was not issued by this node", code=Reason.INVITE_UNKNOWN
                )
            inv = _invite(row)
            if inv.revoked:
                raise MeshError(f"invite {token_id.hex()} was revoked", code=Reason.INVITE_REVOKED)
            if now_ms >= inv.expires_at_ms:
                raise MeshError(f"invite {token_id.hex()} has expired", code=Reason.INVITE_EXPIRED)
            if inv.uses_left is not None:
                if inv.uses_left <= 0:
                    raise MeshError(f"invite {token_id.hex()} has already been used", code=Reason.INVITE_USED)
                conn.execute(
                    "UPDATE issued_invites SET uses_left = uses_left - 1 WHERE token_id = ?", (token_id,)
                )
            alias = friend.alias or None
            if alias is not None and self._alias_owner(conn, alias) is not None:
                alias = None
            stored = Friend(
                node_id=friend.node_id,
                public_key=friend.public_key,
                alias=alias,
                blocked=False,
                scopes=list(inv.scopes),
                relay_hosts=list(friend.relay_hosts),
                endpoints=list(friend.endpoints),
                rate_limit=inv.rate_limit,
                added_at_ms=friend.added_at_ms or now_ms,
                last_seen_ms=now_ms,
                invite_token=friend.invite_token,
            )
            self._insert_friend(conn, stored)
            return stored

    # ------------------------------------------------------------------ inbox

    _INBOX_INSERT = (
        "INSERT OR IGNORE INTO inbox (message_id, from_node_id, from_alias, sent_at_ms, received_at_ms, "
        "scope, content_type, body, acked, reply_to) VALUES "
        "(?, ?, coalesce(?, (SELECT alias FROM friends WHERE node_id = ?)), ?, ?, ?, ?, ?, ?, ?)"
    )

    @staticmethod
    def _inbox_params(m: InboxMessage) -> tuple[Any, ...]:
        return (
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

    def inbox_insert(self, msg: InboxMessage) -> bool:
        """Store a message unless its id is already there; True if new.

        ``from_alias`` None is filled with the sender's current friend alias.
        """
        cur = self._conn.execute(self._INBOX_INSERT, self._inbox_params(msg))
        return cur.rowcount == 1

    def inbox_insert_many(self, msgs: Sequence[InboxMessage]) -> list[tuple[int, InboxMessage]]:
        """:meth:`inbox_insert` for many messages in one transaction; returns the
        ``(rowid, message)`` pairs actually stored (repeats are left out), in
        rowid order, for the watchers."""
        stored = []
        with self._tx() as conn:
            for m in msgs:
                cur = conn.execute(self._INBOX_INSERT, self._inbox_params(m))
                if cur.rowcount == 1:
                    stored.append((cur.lastrowid, m))
        return stored

    def inbox_insert_within_quota(
        self, msgs: Sequence[InboxMessage], quota: Quota
    ) -> tuple[list[tuple[int, InboxMessage]], list[InboxMessage]]:
        """:meth:`inbox_insert_many` within ``quota``: ``(stored, refused)``.

        Messages are taken in order; one that would bring its sender's unread
        bytes past ``quota.per_sender``, or everyone's past ``quota.total``, is
        not stored but returned in ``refused``, and the next ones still get
        their chance. A refused message that is already in the inbox (stored
        before a crash, delivered again) is a repeat, not refused.
        """
        stored: list[tuple[int, InboxMessage]] = []
        refused: list[InboxMessage] = []
        with self._tx() as conn:
            total = self._inbox_usage(conn, ALL_SENDERS)
            used: dict[bytes, int] = {}
            for m in msgs:
                mine = used.get(m.from_node_id)
                if mine is None:
                    mine = self._inbox_usage(conn, m.from_node_id)
                size = message_charge(m.body, m.content_type, m.scope, m.reply_to)
                if mine + size > quota.per_sender or total + size > quota.total:
                    there = conn.execute(
                        "SELECT 1 FROM inbox WHERE message_id = ? AND from_node_id = ?",
                        (m.message_id, m.from_node_id),
                    ).fetchone()
                    if there is None:
                        refused.append(m)
                else:
                    cur = conn.execute(self._INBOX_INSERT, self._inbox_params(m))
                    if cur.rowcount == 1:
                        stored.append((cur.lastrowid, m))
                        mine += size
                        total += size
                used[m.from_node_id] = mine
        return stored, refused

    @staticmethod
    def _inbox_usage(conn: sqlite3.Connection, sender: bytes) -> int:
        row = conn.execute("SELECT bytes FROM inbox_usage WHERE from_node_id = ?", (sender,)).fetchone()
        return row[0] if row else 0

    def inbox_usage(self, sender: bytes = ALL_SENDERS) -> tuple[int, int]:
        """``(bytes, messages)`` unread from ``sender`` (default: from everyone)."""
        row = self._conn.execute(
            "SELECT bytes, messages FROM inbox_usage WHERE from_node_id = ?", (sender,)
        ).fetchone()
        return (row[0], row[1]) if row else (0, 0)

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
        return self._conn.execute("DELETE FROM inbox WHERE acked != 0").rowcount

    def inbox_list(
        self, unread_only: bool = False, limit: int | None = None, after_rowid: int = 0
    ) -> list[tuple[int, InboxMessage]]:
        """``(rowid, message)`` pairs with rowid > ``after_rowid``, oldest first."""
        where = "id > ? AND acked = 0" if unread_only else "id > ?"
        rows = self._conn.execute(
            f"SELECT {_INBOX_COLS} FROM inbox WHERE {where} ORDER BY id LIMIT ?",
            (after_rowid, -1 if limit is None else limit),
        )
        return [_inbox(r) for r in rows]

    def inbox_get(self, message_id: bytes) -> InboxMessage | None:
        row = self._conn.execute(
            f"SELECT {_INBOX_COLS} FROM inbox WHERE message_id = ?", (message_id,)
        ).fetchone()
        return _inbox(row)[1] if row else None

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
        return self._conn.execute("UPDATE inbox SET acked = 1 WHERE acked = 0").rowcount

    def inbox_unread(self) -> int:
        return self._conn.execute("SELECT count(*) FROM inbox WHERE acked = 0").fetchone()[0]

    def inbox_max_rowid(self) -> int:
        """The rowid of the newest inbox message (0 when empty): where a watcher starts."""
        return self._conn.execute("SELECT coalesce(max(id), 0) FROM inbox").fetchone()[0]

    # ------------------------------------------------------------------ seen ids

    _SEEN_UPSERT = (
        "INSERT INTO seen (from_node_id, message_id, envelope_hash, status, seen_at_ms) "
        "VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(from_node_id, message_id) DO UPDATE SET envelope_hash = excluded.envelope_hash, "
        "status = excluded.status, seen_at_ms = excluded.seen_at_ms"
    )

    def seen_check_many(self, keys: Sequence[tuple[bytes, bytes]]) -> dict[tuple[bytes, bytes], bytes | None]:
        """``{(from_node_id, message_id): envelope_hash}`` for the messages already
        seen (the hash is None for rows from before it was kept); one query per
        sender and 500 ids."""
        by_sender: dict[bytes, list[bytes]] = {}
        for sender, message_id in keys:
            by_sender.setdefault(sender, []).append(message_id)
        found: dict[tuple[bytes, bytes], bytes | None] = {}
        for sender, message_ids in by_sender.items():
            for chunk in _chunks(message_ids):
                marks = ",".join("?" * len(chunk))
                for message_id, digest in self._conn.execute(
                    f"SELECT message_id, envelope_hash FROM seen WHERE from_node_id = ? "
                    f"AND message_id IN ({marks})",
                    (sender, *chunk),
                ):
                    found[(sender, message_id)] = digest
        return found

    def record_received_many(self, records: Sequence[tuple[bytes, bytes, bytes, str, int]]) -> None:
        """After delivery: remember ``(from_node_id, message_id, envelope_hash,
        status, now_ms)`` records and move each sender's last_seen forward, all
        in one transaction."""
        if not records:
            return
        last_seen: dict[bytes, int] = {}
        for sender, _message_id, _digest, _status, at_ms in records:
            last_seen[sender] = max(at_ms, last_seen.get(sender, 0))
        with self._tx() as conn:
            conn.executemany(self._SEEN_UPSERT, records)
            conn.executemany(
                "UPDATE friends SET last_seen_ms = max(coalesce(last_seen_ms, 0), ?) WHERE node_id = ?",
                [(at_ms, sender) for sender, at_ms in last_seen.items()],
            )

    def seen_prune(self, older_than_ms: int, max_rows: int) -> int:
        """Drop ids seen before the timestamp ``older_than_ms``, then the oldest
        beyond ``max_rows``; returns how many rows were deleted."""
        with self._tx() as conn:
            deleted = conn.execute("DELETE FROM seen WHERE seen_at_ms < ?", (older_than_ms,)).rowcount
            (count,) = conn.execute("SELECT count(*) FROM seen").fetchone()
            if count > max_rows:
                deleted += conn.execute(
                    "DELETE FROM seen WHERE (from_node_id, message_id) IN "
                    "(SELECT from_node_id, message_id FROM seen ORDER BY seen_at_ms LIMIT ?)",
                    (count - max(max_rows, 0),),
                ).rowcount
            return deleted

    # ------------------------------------------------------------------ outbox

    _OUTBOX_UPSERT = (
        f"INSERT INTO outbox ({_OUTBOX_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
        "ON CONFLICT(message_id) DO UPDATE SET to_node_id=excluded.to_node_id, scope=excluded.scope, "
        "content_type=excluded.content_type, body=excluded.body, created_at_ms=excluded.created_at_ms, "
        "expires_at_ms=excluded.expires_at_ms, status=excluded.status, path=excluded.path, "
        "attempts=excluded.attempts, next_attempt_ms=excluded.next_attempt_ms, error=excluded.error, "
        "reply_to=excluded.reply_to, delivered_at_ms=excluded.delivered_at_ms, "
        "sent_hashes=excluded.sent_hashes"
    )

    @staticmethod
    def _outbox_params(e: OutboxEntry) -> tuple[Any, ...]:
        return (
            e.message_id,
            e.to_node_id,
            e.scope,
            e.content_type,
            e.body,
            e.created_at_ms,
            e.expires_at_ms,
            e.status,
            e.path,
            e.attempts,
            e.next_attempt_ms,
            e.error,
            e.reply_to,
            e.delivered_at_ms,
            e.sent_hashes,
        )

    def outbox_put_many(self, entries: Sequence[OutboxEntry]) -> None:
        """Insert outbox entries in one transaction (replacing every field of an
        entry whose id exists)."""
        with self._tx() as conn:
            conn.executemany(self._OUTBOX_UPSERT, [self._outbox_params(e) for e in entries])

    def outbox_get(self, message_id: bytes) -> OutboxEntry | None:
        row = self._conn.execute(
            f"SELECT {_OUTBOX_COLS} FROM outbox WHERE message_id = ?", (message_id,)
        ).fetchone()
        return _outbox(row) if row else None

    def outbox_due(self, now_ms: int, limit: int, skip: Collection[bytes] = ()) -> list[OutboxEntry]:
        """Queued/sent entries whose next attempt is due, oldest first, leaving
        out the ids in ``skip`` (entries already on their way). Due ids are read
        first, so a skipped entry costs no body read."""
        due = self._conn.execute(
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
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            for row in self._conn.execute(
                f"SELECT {_OUTBOX_COLS} FROM outbox WHERE message_id IN ({marks})", tuple(chunk)
            ):
                found[row[0]] = _outbox(row)
        return [found[i] for i in ids if i in found]

    def outbox_pending_for(self, to_node_id: bytes) -> list[OutboxEntry]:
        """Queued/sent entries addressed to ``to_node_id``, oldest first."""
        rows = self._conn.execute(
            f"SELECT {_OUTBOX_COLS} FROM outbox WHERE to_node_id = ? AND status IN ('queued', 'sent') "
            "ORDER BY created_at_ms, rowid",
            (to_node_id,),
        )
        return [_outbox(r) for r in rows]

    @staticmethod
    def _outbox_set(fields: dict[str, Any]) -> tuple[tuple[str, ...], str]:
        keys = tuple(sorted(fields))
        bad = [k for k in keys if k not in _OUTBOX_FIELDS]
        if bad:
            raise ValueError(f"unknown outbox field(s): {', '.join(bad)}")
        return keys, ", ".join(f"{k} = ?" for k in keys)

    def outbox_update(
        self,
        message_id: bytes,
        *,
        status: str | None = _UNSET,
        path: str | None = _UNSET,
        attempts: int | None = _UNSET,
        next_attempt_ms: int | None = _UNSET,
        error: str | None = _UNSET,
        delivered_at_ms: int | None = _UNSET,
    ) -> None:
        """Update only the fields passed (an explicit ``None`` clears a nullable
        field such as ``error``). NotFound if the entry does not exist."""
        given = {
            k: v
            for k, v in (
                ("status", status),
                ("path", path),
                ("attempts", attempts),
                ("next_attempt_ms", next_attempt_ms),
                ("error", error),
                ("delivered_at_ms", delivered_at_ms),
            )
            if v is not _UNSET
        }
        self.outbox_update_many([(message_id, given)])

    def outbox_update_many(self, updates: Sequence[tuple[bytes, dict[str, Any]]]) -> None:
        """Many :meth:`outbox_update` calls in one transaction (all or nothing).
        An entry already ``delivered`` or ``failed`` is left as it is."""
        groups: dict[tuple[str, ...], tuple[str, list[tuple[Any, ...]]]] = {}
        ids: list[bytes] = []
        for message_id, fields in updates:
            keys, assign = self._outbox_set(fields)
            ids.append(message_id)
            if not keys:
                continue
            groups.setdefault(keys, (assign, []))[1].append((*(fields[k] for k in keys), message_id))
        if not ids:
            return
        with self._tx() as conn:
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                known = {
                    r[0]
                    for r in conn.execute(
                        f"SELECT message_id FROM outbox WHERE message_id IN ({marks})", chunk
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
        cur = self._conn.execute(
            "UPDATE outbox SET next_attempt_ms = ? "
            "WHERE status = 'sent' AND path = ? AND next_attempt_ms > ?",
            (now_ms, path, now_ms),
        )
        return cur.rowcount

    def outbox_expire(self, now_ms: int) -> list[bytes]:
        """Fail queued/sent entries whose TTL has passed; returns their ids."""
        rows = self._conn.execute(
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
        for status, n in self._conn.execute("SELECT status, count(*) FROM outbox GROUP BY status"):
            counts[status] = n
        return counts

    # ------------------------------------------------------------------ misc

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check`` output (``"ok"`` when healthy)."""
        return "\n".join(str(r[0]) for r in self._conn.execute("PRAGMA integrity_check"))

    def meta_get(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def meta_set(self, key: str, value: str) -> None:
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
