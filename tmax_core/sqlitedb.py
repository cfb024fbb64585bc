"""Opening a SQLite database file the way every tmax-mesh database is opened.

The core's ``state.db`` and plugins' own files (``sessions.db``) share the
rules: the file is created with mode 0600 (its directory 0700), the database
runs in WAL mode with ``synchronous=NORMAL`` (a committed transaction
survives the process being killed at any point; a power loss may lose the
last few commits but never corrupts the file), ``busy_timeout`` lets several
connections wait for each other, and the schema version lives in
``PRAGMA user_version``, upgraded by a list of migrations in one transaction.

Connections are opened with ``isolation_level=None`` (no implicit
transactions) and ``check_same_thread=False``: the owner serializes its calls.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from tmax_core.errors import StateDirError

BUSY_TIMEOUT_MS = 10_000

Migration = Sequence[str]
"""The statements that bring a schema from one version to the next."""


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


def keep_rowid_counter(old: str, new: str) -> tuple[str, str]:
    """Statements that give the rebuilt AUTOINCREMENT table ``new`` the counter
    of ``old``, so a row id is never handed out twice (watchers resume from a
    row id). Run them after copying the rows, before dropping ``old``."""
    return (
        f"DELETE FROM sqlite_sequence WHERE name = '{new}'",
        f"INSERT INTO sqlite_sequence (name, seq) "
        f"SELECT '{new}', seq FROM sqlite_sequence WHERE name = '{old}'",
    )


def open_database(
    path: Path, migrations: Sequence[Migration], *, what: str, package: str
) -> sqlite3.Connection:
    """Open (creating if needed) the database file ``path`` and migrate it to
    version ``len(migrations)`` (``migrations[0]`` creates version 1).

    Every failure (unwritable directory, not a database, a schema newer than
    ``migrations`` knows) is a :class:`StateDirError` of one line naming
    ``what`` (``"state database"``) and the file; ``package`` is what to upgrade.
    """
    conn: sqlite3.Connection | None = None
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
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
            raise StateDirError(f"{what} {path}: cannot enable WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = OFF")
        _migrate(conn, migrations, f"{what} {path}", package)
    except StateDirError:
        if conn is not None:
            conn.close()
        raise
    except (sqlite3.Error, OSError) as exc:
        if conn is not None:
            conn.close()
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StateDirError(f"cannot open {what} {path}: {detail}") from exc
    return conn


def _migrate(conn: sqlite3.Connection, migrations: Sequence[Migration], name: str, package: str) -> None:
    latest = len(migrations)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > latest:
        raise StateDirError(
            f"{name} has schema version {version}, newer than this {package} supports ({latest}); "
            f"upgrade {package}"
        )
    if version == latest:
        return
    with write_transaction(conn):
        # Re-read under the write lock: another connection may have migrated.
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        for version in range(current + 1, latest + 1):
            for statement in migrations[version - 1]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")


class Database:
    """An open connection (see :func:`open_database`) and its file; the base
    of the stores. Not thread-safe: the owner serializes its calls."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn: sqlite3.Connection | None = conn
        self.path = path

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection; :class:`StateDirError` once closed."""
        if self._conn is None:
            raise StateDirError(f"database {self.path} is closed")
        return self._conn

    def close(self) -> None:
        """Close the connection (idempotent)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self.conn)


def lastrowid_if_new(cur: sqlite3.Cursor) -> int | None:
    """The row id an ``INSERT OR IGNORE`` made; None if it ignored a repeat."""
    return cur.lastrowid if cur.rowcount == 1 else None
