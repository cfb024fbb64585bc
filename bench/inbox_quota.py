"""Inbox quota accounting: what storing a message within the quotas costs,
with an empty inbox and with a full one.

In process, one thread, temp ``state.db`` files. Each row stores the same
batches of messages (100 messages of 1 KiB from one sender per transaction)
into an inbox that already holds ``--prefill`` unread messages from 100
senders, three ways:

* **v1 baseline**: ``inbox_insert_many`` with the accounting triggers
  dropped (what storing cost before the quotas);
* **quota (running totals)**: ``inbox_insert_within_quota``: the triggers
  keep ``inbox_usage`` and each message's check reads two rows of it;
* **quota (SUM per message)**: the naive alternative, the sender's and the
  total's unread bytes summed over the inbox for every message.

Read the ratios to the baseline: the running totals should cost the same
whatever the inbox size, the SUM grows with it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from common import environment, fmt, ratio, write_results  # type: ignore[import-not-found]

from tmax_core.model import InboxMessage
from tmax_core.store import INBOX_USAGE, Quota, Store, charge_sql, message_charge
from tmax_core.store.inbox import insert_message

BATCH = 100
BODY = b"x" * 1024
SENDERS = [bytes([i + 1]) * 20 for i in range(100)]
NO_LIMIT = Quota(per_sender=1 << 62, total=1 << 62)


def message(n: int, sender: bytes) -> InboxMessage:
    return InboxMessage(
        message_id=n.to_bytes(16, "big"),
        from_node_id=sender,
        from_alias=None,
        sent_at_ms=n,
        received_at_ms=n,
        scope="message",
        content_type="text/plain",
        body=BODY,
    )


def open_store(path: Path, prefill: int, triggers: bool) -> Store:
    store = Store.open(path)
    if not triggers:
        for stmt in INBOX_USAGE.triggers():
            store.conn.execute("DROP TRIGGER " + stmt.split()[2])
    for start in range(0, prefill, 1000):
        ns = range(start, min(prefill, start + 1000))
        store.inbox_insert_many([message(n, SENDERS[n % 100]) for n in ns])
    return store


def sum_quota_insert(store: Store, msgs: list[InboxMessage], quota: Quota) -> None:
    """The naive check: two SUMs over the inbox per message, then the plain insert."""
    conn = store.conn
    with conn:
        for m in msgs:
            mine = conn.execute(
                f"SELECT coalesce(sum({charge_sql('inbox')}), 0) FROM inbox "
                "WHERE acked = 0 AND from_node_id = ?",
                (m.from_node_id,),
            ).fetchone()[0]
            total = conn.execute(
                f"SELECT coalesce(sum({charge_sql('inbox')}), 0) FROM inbox WHERE acked = 0"
            ).fetchone()[0]
            size = message_charge(m.body, m.content_type, m.scope, m.reply_to)
            if mine + size <= quota.per_sender and total + size <= quota.total:
                insert_message(conn, m)


def run(way: str, root: Path, prefill: int, batches: int) -> float:
    """µs per message stored."""
    store = open_store(root / f"{way}-{prefill}.db", prefill, triggers=way == "quota")
    try:
        n0 = 10_000_000
        elapsed = 0.0
        for b in range(batches):
            msgs = [message(n0 + b * BATCH + i, SENDERS[0]) for i in range(BATCH)]
            t0 = time.perf_counter()
            if way == "v1":
                store.inbox_insert_many(msgs)
            elif way == "quota":
                store.inbox_insert_within_quota(msgs, NO_LIMIT)
            else:
                sum_quota_insert(store, msgs, NO_LIMIT)
            elapsed += time.perf_counter() - t0
        return elapsed / (batches * BATCH) * 1e6
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prefill", type=int, default=100_000, help="unread messages already in the inbox")
    ap.add_argument("--batches", type=int, default=20, help="batches of 100 messages per row")
    ap.add_argument("--sum-batches", type=int, default=2, help="batches for the (slow) SUM row")
    args = ap.parse_args(argv)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tmax-bench-quota-") as tmp:
        for prefill in (0, args.prefill):
            results[str(prefill)] = {
                "v1_us": run("v1", Path(tmp), prefill, args.batches),
                "quota_us": run("quota", Path(tmp), prefill, args.batches),
                "sum_us": run("sum", Path(tmp), prefill, args.sum_batches),
            }
    head = ("unread in inbox", "v1 µs/msg", "quota µs/msg", "ratio", "SUM µs/msg", "ratio")
    print("{:>16}  {:>10}  {:>13}  {:>6}  {:>11}  {}".format(*head))
    for prefill, r in results.items():
        print(
            f"{prefill:>16}  {fmt(r['v1_us'], 1):>10}  {fmt(r['quota_us'], 1):>13}  "
            f"{fmt(ratio(r['quota_us'], r['v1_us'])):>6}  {fmt(r['sum_us'], 1):>11}  "
            f"{fmt(ratio(r['sum_us'], r['v1_us']))}"
        )
    out = write_results("inbox_quota", {"environment": environment(), "args": vars(args), "results": results})
    print(f"results: {out['json_path']}")
    return 0


if __name__ == "__main__":
    os.nice(5)
    raise SystemExit(main())
