"""The schema of ``state.db`` and its migrations (``PRAGMA user_version``).

Version 2 keys received messages by sender and message id; version 3 adds the
inbox quota accounting, ``inbox_usage``. Node ids and message ids are BLOBs,
lists (scopes, relay hosts, endpoints) are JSON text, times are ms ints.
"""

from __future__ import annotations

from tmax_core.sqlitedb import Migration, keep_rowid_counter
from tmax_core.store.quota import UsageTable

DB_NAME = "state.db"

INBOX_COLS_V1 = (
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
# The rebuilt inbox keeps the old one's row id counter.
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
    f"INSERT INTO inbox_v2 ({INBOX_COLS_V1}) SELECT {INBOX_COLS_V1} FROM inbox",
    *keep_rowid_counter(old="inbox", new="inbox_v2"),
    "DROP TABLE inbox",
    "ALTER TABLE inbox_v2 RENAME TO inbox",
    "CREATE INDEX inbox_acked ON inbox(acked, id)",
    "CREATE INDEX inbox_message ON inbox(message_id)",
    # The hashes of the envelopes sent for a message (32 bytes each, newest
    # last): an ack counts only if it names one of them.
    "ALTER TABLE outbox ADD COLUMN sent_hashes BLOB NOT NULL DEFAULT x''",
)

# Unread bytes and messages per sender, for the quotas (see quota.py).
INBOX_USAGE = UsageTable("inbox_usage", "inbox")

# Version 3: the quota accounting (after version 2 rebuilt the inbox).
_SCHEMA_V3 = INBOX_USAGE.create()

MIGRATIONS: tuple[Migration, ...] = (_SCHEMA_V1, _SCHEMA_V2, _SCHEMA_V3)
SCHEMA_VERSION = len(MIGRATIONS)
