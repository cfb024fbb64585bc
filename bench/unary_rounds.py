"""Unary ``msg_send`` rounds, interleaved between pairs of nodes on different code.

A ``--quick`` messaging bench sends 1,000 unary messages in about a second,
and on a shared 2-core machine node A's CPU per message moves by ±100 µs
from run to run: a change worth 10-20 % does not show. Here each variant gets
its own pair of ``tmax-node`` processes (friends through the invite flow), all
started at once, and the pairs take turns: one round of ``--n`` closed-loop
``msg_send`` calls from ``--concurrency`` callers per variant, then the next
variant, ``--rounds`` times (after one unmeasured warm-up round each). So
whatever else the machine runs lands on every variant alike, and the medians
compare.

A round ends when all its messages are committed to B's inbox (read from B's
``state.db``, as in bench/messaging.py). Per round and variant: node A's and
node B's CPU per message (from ``/proc``), node A's split into its main
thread (the event loop, with gRPC's call handling) and its other threads (the
database and crypto threads, gRPC's poller), messages/s and the ``msg_send``
reply p50.

    .venv/bin/python bench/unary_rounds.py base=/path/to/other/checkout this=
    .venv/bin/python bench/unary_rounds.py --concurrency 4 --n 1000 base=/path this=

``NAME=DIR`` puts ``DIR`` first on that pair's ``PYTHONPATH`` (a checkout, or
any directory holding a ``tmax_core`` package); ``NAME=`` runs this checkout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import BIN, Child, closed_loop, cpu_seconds, node_env, run_bounded
from messaging import StoredCount, befriend

DELIVERY_TIMEOUT_S = 60.0  # a round's messages must all be stored within this


def thread_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of ``pid``'s main thread and of all its other threads."""
    main = other = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that just ended
            fields = (task / "stat").read_text().rpartition(")")[2].split()
            seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            if int(task.name) == pid:
                main += seconds
            else:
                other += seconds
    return main, other


class Pair:
    """Node A and node B of one variant, friends, with A's client open."""

    def __init__(self, name: str, code: str, workdir: Path) -> None:
        self.name = name
        self.env = node_env() | ({"PYTHONPATH": code} if code else {})
        self.children: list[Child] = []
        self.states = [workdir / f"{name}-{side}" for side in ("a", "b")]
        for state in self.states:
            state.mkdir()
            argv = [str(BIN / "tmax-node"), "--state-dir", str(state), "--peer-listen", "127.0.0.1:0"]
            self.children.append(Child(state.name, argv, workdir))
        self.inbox: StoredCount | None = None
        self.client: Any = None

    async def start(self, stack: contextlib.AsyncExitStack) -> None:
        from tmax_core.client import AsyncJsonNodeClient

        for child in self.children:
            child.spawn(env=self.env)
        self.a, self.b = [await child.wait_ready() for child in self.children]
        self.client = await stack.enter_async_context(AsyncJsonNodeClient(self.a["socket"]))
        b_client = await stack.enter_async_context(AsyncJsonNodeClient(self.b["socket"]))
        await befriend(self.client, b_client, self.b["node_id"], self.a["node_id"])
        self.inbox = StoredCount(self.states[1] / "state.db")

    async def round(self, tag: str, n: int, concurrency: int) -> dict[str, float]:
        assert self.inbox is not None
        base = self.inbox.newest_rowid()
        a_pid, b_pid = self.a["pid"], self.b["pid"]
        a0, b0, threads0 = cpu_seconds(a_pid), cpu_seconds(b_pid), thread_cpu(a_pid)
        replies: list[float] = []

        async def send(i: int) -> None:
            t0 = time.perf_counter()
            await self.client.msg_send(self.b["node_id"], f"{tag}-{i}".encode())
            replies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await closed_loop(n, concurrency, send)
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while self.inbox.stored_after(base) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: round {tag} not delivered within {DELIVERY_TIMEOUT_S:g} s")
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - t0
        a1, b1, threads1 = cpu_seconds(a_pid), cpu_seconds(b_pid), thread_cpu(a_pid)
        assert a0 is not None and a1 is not None and b0 is not None and b1 is not None
        per_msg = 1e6 / n
        return {
            "a_us": (a1 - a0) * per_msg,
            "a_main_us": (threads1[0] - threads0[0]) * per_msg,
            "a_other_us": (threads1[1] - threads0[1]) * per_msg,
            "b_us": (b1 - b0) * per_msg,
            "msgs_per_s": n / elapsed,
            "reply_p50_ms": statistics.median(replies) * 1e3,
        }

    def stop(self) -> None:
        if self.inbox is not None:
            self.inbox.close()
        for child in self.children:
            child.stop()


def show(name: str, label: str, r: dict[str, float]) -> None:
    print(
        f"{name:>10} {label:>6}  A {r['a_us']:6.0f} µs/msg (main {r['a_main_us']:4.0f}, other "
        f"{r['a_other_us']:4.0f})  B {r['b_us']:5.0f}  {r['msgs_per_s']:6.0f} msg/s  "
        f"reply p50 {r['reply_p50_ms']:5.1f} ms",
        flush=True,
    )


async def run(variants: list[tuple[str, str]], args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    pairs = [Pair(name, code, workdir) for name, code in variants]
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in variants}
    try:
        async with contextlib.AsyncExitStack() as stack:
            for pair in pairs:
                await pair.start(stack)
            for r in range(args.rounds + 1):  # round 0 warms up, unmeasured
                for pair in pairs:
                    res = await pair.round(f"r{r}", args.n, args.concurrency)
                    if r:
                        results[pair.name].append(res)
                        show(pair.name, str(r), res)
    finally:
        for pair in pairs:
            pair.stop()
    medians = {
        name: {key: statistics.median(x[key] for x in rounds) for key in rounds[0]}
        for name, rounds in results.items()
    }
    for name, med in medians.items():
        show(name, "median", med)
    return medians


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variants", nargs="+", metavar="NAME=DIR", help="DIR empty: this checkout")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--n", type=int, default=3000, help="messages per round")
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args(argv)
    variants = [tuple(v.split("=", 1)) for v in args.variants]
    if any(len(v) != 2 or not v[0] for v in variants):
        ap.error("each variant is NAME=DIR (DIR may be empty)")
    workdir = Path(tempfile.mkdtemp(prefix="tmax-unary-rounds-"))
    # About 1 ms of wall time per message per variant on a busy 2-core machine, twice over.
    limit = 120 + 2 * (args.rounds + 1) * len(variants) * args.n * 0.001 * max(1, 64 // args.concurrency)
    result = run_bounded(run(variants, args, workdir), limit, workdir, "state dirs and node logs")
    if isinstance(result, int):
        return result
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
