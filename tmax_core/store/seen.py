"""The ``seen`` table: replay protection. A received message is (sender,
message id), remembered with the hash of the envelope accepted, so an exact
repeat is answered "duplicate" without a signature check."""

from __future__ import annotations

from collections.abc import Sequence

from tmax_core.sqlitedb import Database
from tmax_core.store.rows import chunks, marks

_SEEN_UPSERT = (
    "INSERT INTO seen (from_node_id, message_id, envelope_hash, status, seen_at_ms) "
    "VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT(from_node_id, message_id) DO UPDATE SET envelope_hash = excluded.envelope_hash, "
    "status = excluded.status, seen_at_ms = excluded.seen_at_ms"
)


class SeenTable(Database):
    """The replay-protection methods of :class:`~tmax_core.store.Store`."""

    def seen_check_many(self, keys: Sequence[tuple[bytes, bytes]]) -> dict[tuple[bytes, bytes], bytes | None]:
        """``{(from_node_id, message_id): envelope_hash}`` for the messages already
        seen (the hash is None for rows from before it was kept); one query per
        sender and 500 ids."""
        by_sender: dict[bytes, list[bytes]] = {}
        for sender, message_id in keys:
            by_sender.setdefault(sender, []).append(message_id)
        found: dict[tuple[bytes, bytes], bytes | None] = {}
        for sender, message_ids in by_sender.items():
            for chunk in chunks(message_ids):
                for message_id, digest in self.conn.execute(
                    f"SELECT message_id, envelope_hash FROM seen WHERE from_node_id = ? "
                    f"AND message_id IN ({marks(chunk)})",
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
            conn.executemany(_SEEN_UPSERT, records)
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
