"""The ``friends`` table: who this node talks to, with their scopes, contact
details and rate limit. Aliases are unique among friends, case-insensitive
(``COLLATE NOCASE``)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from tmax_core.errors import MeshError, NotFound, Reason
from tmax_core.model import Friend
from tmax_core.sqlitedb import Database
from tmax_core.store.rows import dump_list, load_rate, nid, rate_columns

ALIAS_TAKEN = "alias_taken"

FRIEND_COLS = (
    "node_id, public_key, alias, blocked, scopes, relay_hosts, endpoints, "
    "rate_per_s, rate_burst, added_at_ms, last_seen_ms, invite_token"
)


def _friend(row: Sequence[Any]) -> Friend:
    return Friend(
        node_id=row[0],
        public_key=row[1],
        alias=row[2],
        blocked=bool(row[3]),
        scopes=json.loads(row[4]),
        relay_hosts=json.loads(row[5]),
        endpoints=json.loads(row[6]),
        rate_limit=load_rate(row[7], row[8]),
        added_at_ms=row[9],
        last_seen_ms=row[10],
        invite_token=row[11],
    )


def _no_friend(node_id: bytes) -> NotFound:
    return NotFound(f"no friend with id {nid(node_id)}")


def get_friend(conn: sqlite3.Connection, node_id: bytes) -> Friend | None:
    row = conn.execute(f"SELECT {FRIEND_COLS} FROM friends WHERE node_id = ?", (node_id,)).fetchone()
    return _friend(row) if row else None


def alias_owner(conn: sqlite3.Connection, alias: str) -> bytes | None:
    """The node id of the friend called ``alias`` (any case), if any."""
    row = conn.execute("SELECT node_id FROM friends WHERE alias = ?", (alias,)).fetchone()
    return row[0] if row else None


def require_same_key(existing: Friend | None, friend: Friend) -> None:
    """``MeshError(code="key_changed")`` if ``existing`` has another public key than ``friend``."""
    if existing is not None and existing.public_key != friend.public_key:
        raise MeshError(
            f"friend {nid(friend.node_id)} is already known with a different public key",
            code=Reason.KEY_CHANGED,
        )


def insert_friend(conn: sqlite3.Connection, f: Friend) -> None:
    conn.execute(
        f"INSERT INTO friends ({FRIEND_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            f.node_id,
            f.public_key,
            f.alias,
            int(f.blocked),
            dump_list(f.scopes),
            dump_list(f.relay_hosts),
            dump_list(f.endpoints),
            *rate_columns(f.rate_limit),
            f.added_at_ms,
            f.last_seen_ms,
            f.invite_token,
        ),
    )


def _write_friend(conn: sqlite3.Connection, f: Friend) -> None:
    conn.execute(
        "UPDATE friends SET alias=?, blocked=?, scopes=?, relay_hosts=?, endpoints=?, rate_per_s=?, "
        "rate_burst=?, last_seen_ms=?, invite_token=? WHERE node_id=?",
        (
            f.alias,
            int(f.blocked),
            dump_list(f.scopes),
            dump_list(f.relay_hosts),
            dump_list(f.endpoints),
            *rate_columns(f.rate_limit),
            f.last_seen_ms,
            f.invite_token,
            f.node_id,
        ),
    )


def _merge(stored: Friend, friend: Friend) -> Friend:
    """``stored`` with what ``friend`` adds (see :meth:`FriendsTable.add_friend`)."""
    stored.scopes = list(dict.fromkeys([*stored.scopes, *friend.scopes]))
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
        stored.last_seen_ms = max(friend.last_seen_ms, stored.last_seen_ms or 0)
    return stored


class FriendsTable(Database):
    """The friend methods of :class:`~tmax_core.store.Store`."""

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
            existing = get_friend(conn, friend.node_id)
            require_same_key(existing, friend)
            if friend.alias:
                owner = alias_owner(conn, friend.alias)
                if owner is not None and owner != friend.node_id:
                    raise MeshError(
                        f"alias {friend.alias!r} is already used by friend {nid(owner)}",
                        code=ALIAS_TAKEN,
                    )
            if existing is not None:
                stored = _merge(existing, friend)
                _write_friend(conn, stored)
                return stored
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
            insert_friend(conn, stored)
            return stored

    def get_friend(self, node_id: bytes) -> Friend | None:
        return get_friend(self.conn, node_id)

    def list_friends(self) -> list[Friend]:
        rows = self.conn.execute(f"SELECT {FRIEND_COLS} FROM friends ORDER BY added_at_ms, rowid")
        return [_friend(r) for r in rows]

    def set_blocked(self, node_id: bytes, blocked: bool) -> Friend:
        with self._tx() as conn:
            friend = get_friend(conn, node_id)
            if friend is None:
                raise _no_friend(node_id)
            conn.execute("UPDATE friends SET blocked = ? WHERE node_id = ?", (int(blocked), node_id))
        friend.blocked = blocked
        return friend

    def remove_friend(self, node_id: bytes) -> None:
        cur = self.conn.execute("DELETE FROM friends WHERE node_id = ?", (node_id,))
        if cur.rowcount == 0:
            raise _no_friend(node_id)

    def update_friend_contact(self, node_id: bytes, relay_hosts: list[str], endpoints: list[str]) -> None:
        """Replace a friend's relay hosts and direct endpoints (NotFound if absent)."""
        cur = self.conn.execute(
            "UPDATE friends SET relay_hosts = ?, endpoints = ? WHERE node_id = ?",
            (dump_list(relay_hosts), dump_list(endpoints), node_id),
        )
        if cur.rowcount == 0:
            raise _no_friend(node_id)

    def clear_friend_invite_token(self, node_id: bytes) -> None:
        """Forget the invite token we send on first contact; no-op if absent."""
        self.conn.execute(
            "UPDATE friends SET invite_token = NULL WHERE node_id = ? AND invite_token IS NOT NULL",
            (node_id,),
        )
