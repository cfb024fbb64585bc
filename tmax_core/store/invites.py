"""The ``issued_invites`` table: invites this node created, and first contact
(a stranger presenting one becomes a friend, consuming one use, atomically)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from tmax_core.clock import now_ms as clock_ms
from tmax_core.errors import MeshError, NotFound, Reason
from tmax_core.model import Friend, IssuedInvite
from tmax_core.sqlitedb import Database
from tmax_core.store.friends import alias_owner, get_friend, insert_friend, require_same_key
from tmax_core.store.rows import dump_list, load_rate, rate_columns

# Used/expired invites are remembered so a replayed token is reported as
# used/expired rather than unknown; bounded by these two limits.
INVITE_RETENTION_MS = 30 * 24 * 3600 * 1000
INVITE_MAX_ROWS = 10_000

_INVITE_COLS = (
    "token_id, created_at_ms, expires_at_ms, max_uses, uses_left, scopes, rate_per_s, rate_burst, revoked"
)


def _invite(row: Sequence[Any]) -> IssuedInvite:
    return IssuedInvite(
        token_id=row[0],
        created_at_ms=row[1],
        expires_at_ms=row[2],
        max_uses=row[3],
        uses_left=row[4],
        scopes=json.loads(row[5]),
        rate_limit=load_rate(row[6], row[7]),
        revoked=bool(row[8]),
    )


def _prune_invites(conn: sqlite3.Connection, now_ms: int) -> None:
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


def _consume_use(conn: sqlite3.Connection, token_id: bytes, now_ms: int) -> IssuedInvite:
    """Take one use of the invite ``token_id``; MeshError with the reason it cannot be used."""
    row = conn.execute(
        f"SELECT {_INVITE_COLS} FROM issued_invites WHERE token_id = ?", (token_id,)
    ).fetchone()
    if row is None:
        raise MeshError(f"invite {token_id.hex()} was not issued by this node", code=Reason.INVITE_UNKNOWN)
    inv = _invite(row)
    if inv.revoked:
        raise MeshError(f"invite {token_id.hex()} was revoked", code=Reason.INVITE_REVOKED)
    if now_ms >= inv.expires_at_ms:
        raise MeshError(f"invite {token_id.hex()} has expired", code=Reason.INVITE_EXPIRED)
    if inv.uses_left is not None:
        if inv.uses_left <= 0:
            raise MeshError(f"invite {token_id.hex()} has already been used", code=Reason.INVITE_USED)
        conn.execute("UPDATE issued_invites SET uses_left = uses_left - 1 WHERE token_id = ?", (token_id,))
    return inv


class InvitesTable(Database):
    """The invite methods of :class:`~tmax_core.store.Store`."""

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
                        dump_list(inv.scopes),
                        *rate_columns(inv.rate_limit),
                        int(inv.revoked),
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise MeshError(f"invite {inv.token_id.hex()} is already recorded") from exc
            _prune_invites(conn, inv.created_at_ms)

    def list_issued_invites(
        self, include_inactive: bool = False, now_ms: int | None = None
    ) -> list[IssuedInvite]:
        """Issued invites, oldest first. Active = not revoked, not expired, uses left."""
        if include_inactive:
            rows = self.conn.execute(
                f"SELECT {_INVITE_COLS} FROM issued_invites ORDER BY created_at_ms, rowid"
            )
        else:
            rows = self.conn.execute(
                f"SELECT {_INVITE_COLS} FROM issued_invites WHERE revoked = 0 AND expires_at_ms > ? "
                "AND (uses_left IS NULL OR uses_left > 0) ORDER BY created_at_ms, rowid",
                (clock_ms() if now_ms is None else now_ms,),
            )
        return [_invite(r) for r in rows]

    def issued_invite_tokens(self) -> dict[bytes, tuple[IssuedInvite, str]]:
        """``{token_id: (invite, token text)}`` for every invite remembered (at
        most ``INVITE_MAX_ROWS``): what ingress checks a stranger's first
        contact against before any crypto."""
        rows = self.conn.execute(f"SELECT {_INVITE_COLS}, token FROM issued_invites")
        return {row[0]: (_invite(row[:-1]), row[-1]) for row in rows}

    def revoke_invite(self, token_id: bytes) -> None:
        cur = self.conn.execute("UPDATE issued_invites SET revoked = 1 WHERE token_id = ?", (token_id,))
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
            existing = get_friend(conn, friend.node_id)
            require_same_key(existing, friend)
            if existing is not None:
                return existing
            inv = _consume_use(conn, token_id, now_ms)
            alias = friend.alias or None
            if alias is not None and alias_owner(conn, alias) is not None:
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
            insert_friend(conn, stored)
            return stored
