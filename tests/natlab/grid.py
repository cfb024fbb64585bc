"""The NAT grid (root): every pair of router NAT types (public, cone,
symmetric) x (public, cone, symmetric), two nodes behind them with no peer
listener, one relay host; for each pair the final path, the time from
friendship to the first message delivered direct, and the punch attempts.

    sudo .venv/bin/python -m tests.natlab.grid [--deadline 15] [--json FILE]

From the moment the friendship is made, A sends B a message, waits for its
delivery, and sends the next, until one is delivered direct or the deadline
passes (then the path is the relay's). Prints a Markdown table (the one in
docs/direct.md) and, with ``--json``, writes the rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.harness import ProcGroup
from tests.natlab.lab import NAT_TYPES, NatLab, NatLabUnavailable, probe_lab
from tests.natlab.punching import direct_view, start_pair
from tmax_core.client import JsonNodeClient

SEND_TIMEOUT_S = 30.0


def run_cell(lab: NatLab, ra: str, rb: str, workdir: Path, deadline_s: float) -> dict[str, Any]:
    lab.reset()
    lab.set_nat_type(ra, router="ra")
    lab.set_nat_type(rb, router="rb")
    procs = ProcGroup(workdir)
    try:
        pair = start_pair(lab, procs, workdir)
        first_direct = None
        sent = 0
        path = None
        with JsonNodeClient(Path(pair.a.ready["socket"])) as api:
            while True:
                message_id = api.msg_send(pair.b.node_id, f"m{sent}".encode())["message_id"]
                state = api.msg_wait(message_id, SEND_TIMEOUT_S)
                sent += 1
                path = state["path"]
                if state["status"] != "delivered":
                    raise RuntimeError(f"{ra}/{rb}: message {message_id} not delivered: {state}")
                if path == "direct":
                    first_direct = time.monotonic() - pair.friends_at
                    break
                if time.monotonic() - pair.friends_at > deadline_s:
                    break
        delivered = len(pair.b.inbox_bodies())
        if delivered != sent:
            raise RuntimeError(f"{ra}/{rb}: sent {sent}, B's inbox holds {delivered}")
        return {
            "a": ra,
            "b": rb,
            "path": path,
            "via": direct_view(pair.a).get("via"),
            "first_direct_s": first_direct,
            "punch_attempts": [direct_view(n).get("punch", {}).get("attempts", 0) for n in (pair.a, pair.b)],
            "messages": sent,
        }
    finally:
        procs.stop_all()


def table(rows: list[dict[str, Any]]) -> str:
    header = (
        "A behind",
        "B behind",
        "final path",
        "reached",
        "friendship → first direct",
        "punches A / B",
        "sent",
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        first = f"{r['first_direct_s']:.1f} s" if r["first_direct_s"] is not None else "—"
        attempts = " / ".join(str(n) for n in r["punch_attempts"])
        cells = (r["a"], r["b"], r["path"], r["via"] or "—", first, attempts, str(r["messages"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--deadline", type=float, default=15.0, help="seconds to wait for a direct delivery per pair"
    )
    p.add_argument("--json", metavar="FILE", help="also write the rows here")
    args = p.parse_args()
    reason = probe_lab()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="natgrid-") as tmp, NatLab() as lab:
            for ra in NAT_TYPES:
                for rb in NAT_TYPES:
                    rows.append(run_cell(lab, ra, rb, Path(tmp) / f"{ra}-{rb}", args.deadline))
                    print(f"{ra:>9} / {rb:<9} {rows[-1]['path']}", file=sys.stderr, flush=True)
    except (NatLabUnavailable, RuntimeError) as err:
        print(f"grid failed: {err}", file=sys.stderr)
        return 1
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
