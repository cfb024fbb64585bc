"""Durable node state: one SQLite database, ``<state_dir>/state.db``.

Tables: ``friends``, ``issued_invites``, ``inbox`` (with ``inbox_usage``),
``seen`` (replay protection), ``outbox`` and a small ``meta`` key/value
table. Keeping them in one database makes every multi-step change (for
example "consume an invite use and add the sender as a friend") a single
transaction. :class:`Store` is the one object callers hold; its methods come
from one module per aggregate (``friends``, ``invites``, ``inbox``, ``seen``,
``outbox``), the schema and its migrations are in ``schema``, the quotas in
``quota``.

Durability and opening are :mod:`tmax_core.sqlitedb`'s: WAL mode with
``synchronous=NORMAL`` (a committed transaction survives ``SIGKILL``; a power
loss may lose the last few, never corrupt the file), ``busy_timeout``, and
write transactions that start with ``BEGIN IMMEDIATE`` so check-then-write
sequences (invite consumption) are serialized. Failures to open the database
(unwritable directory, not a database, corrupted header, schema from a newer
version) raise :class:`~tmax_core.errors.StateDirError` with one line naming
the file. Open does not scan the whole file (``PRAGMA integrity_check`` does).

Threading: :class:`Store` is synchronous and not thread-safe by itself. The
node serializes its calls with a lock: they run on one dedicated worker
thread, and small ones on the event loop when the database is idle (see
:meth:`tmax_core.node.Node.db_batch`); the connection is opened with
``check_same_thread=False`` for that.
"""

from __future__ import annotations

from pathlib import Path

from tmax_core.sqlitedb import open_database, write_transaction
from tmax_core.store.friends import FriendsTable
from tmax_core.store.inbox import InboxTable
from tmax_core.store.invites import InvitesTable
from tmax_core.store.outbox import EXPIRED_ERROR, OutboxTable, expired_error
from tmax_core.store.quota import ALL_SENDERS, MESSAGE_OVERHEAD, Quota, UsageTable, charge_sql, message_charge
from tmax_core.store.schema import DB_NAME, INBOX_USAGE, MIGRATIONS, SCHEMA_VERSION
from tmax_core.store.seen import SeenTable

__all__ = [
    "ALL_SENDERS",
    "EXPIRED_ERROR",
    "INBOX_USAGE",
    "MESSAGE_OVERHEAD",
    "SCHEMA_VERSION",
    "Quota",
    "Store",
    "UsageTable",
    "charge_sql",
    "expired_error",
    "message_charge",
    "write_transaction",
]


class Store(FriendsTable, InvitesTable, InboxTable, SeenTable, OutboxTable):
    """Synchronous access to ``state.db``; see the module docstring."""

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
        return cls(open_database(path, MIGRATIONS, what="state database", package="tmax-mesh"), path)
