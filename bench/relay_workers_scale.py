"""Relay scale with ``tmax-host --workers N`` (issue 15): as many registered nodes
as N worker processes hold, against one ``tmax-host`` process holding its share
(N-th) of them, in the same invocation.

Run from the checkout (see bench/README.md)::

    .venv/bin/python bench/relay_workers_scale.py                  # --workers 2, 39,000 nodes
    .venv/bin/python bench/relay_workers_scale.py --nodes 4000     # smaller

Reuses ``bench/relay_scale.py``'s swarm processes (``--swarm``: one channel and
one signed Register with a full lookup allow list per node) and host flags.
Two rounds, the single process first:

1. the host starts: ``tmax-host`` (one process) with N/workers nodes, then
   ``tmax-host --workers N`` (a supervisor, a local nats-server, N workers
   sharing the port) with N nodes; the bench waits on its ready file, which
   lists the worker pids;
2. after 1 s, every worker's VmRSS is its idle baseline;
3. swarm processes (at most ``--per-process`` nodes each) register on one
   common signal; then, after a settle time, every worker's VmRSS again:
   RSS per connection = (sum of the workers' RSS - sum of their baselines) /
   registered nodes, the ratio --workers / single (target <= 1.2x);
4. probe nodes register from the bench process one at a time; each worker's
   ``tmax_host_registered_nodes`` metric tells which worker took it; random
   pairs on different workers then exchange one sealed envelope each way
   (through the cluster), each must arrive within 10 s.

One client address can open at most ~28,000 connections to one host port
(the ephemeral port range, 32768-60999 here): above 25,000 nodes the host
listens on 0.0.0.0 (a free port chosen by the bench, ``--public-url`` for
both addresses) and the swarm processes alternate between 127.0.0.1 and
127.0.0.2 (both loopback), which doubles the client-side port space.

Prints a table and writes ``bench/results/relay_workers_scale.json``
(``relay_workers_scale-<N>.json`` with ``--nodes``). Every wait is bounded,
the whole run has a hard limit, and every child process is stopped on every
exit path.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from common import (  # noqa: E402
    BIN,
    Child,
    Worker,
    fmt,
    open_fds,
    proc_status,
    ratio,
    run_and_report,
)
from relay import HOST_FLAGS  # noqa: E402
from relay_cluster import Receiver, frames_for  # noqa: E402
from relay_scale import FD_LIMIT, scrape_registered, stop_all  # noqa: E402

from tmax_mesh_relay.workers import free_port  # noqa: E402

TARGET_RSS_RATIO = 1.2  # --workers RSS per connection / one process's, at most
ONE_ADDRESS_MAX = 25_000  # client connections to one host address:port (ephemeral ports: ~28,000)
SWARM = str(BENCH_DIR / "relay_scale.py")


@dataclass(frozen=True)
class Params:
    workers: int
    nodes: int  # registered nodes on the --workers host; the single process holds nodes / workers
    per_process: int
    concurrency: int
    allow: int
    probes: int  # nodes registered one by one to find pairs on different workers
    pairs: int
    settle_s: float
    register_timeout_s: float
    hard_limit_s: float


def worker_pids(ready: dict[str, Any]) -> list[int]:
    return list(ready.get("workers") or [ready["pid"]])


def metrics_of(ready: dict[str, Any]) -> list[str]:
    m = ready.get("metrics")
    return list(m) if isinstance(m, list) else [m]


def children_of(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


async def registered_by_worker(metrics: list[str]) -> list[float]:
    return [await asyncio.to_thread(scrape_registered, m) or 0.0 for m in metrics]


async def probe_pairs(p: Params, target: str, metrics: list[str]) -> dict[str, Any]:
    """Register probe nodes one at a time, see which worker took each, then let random
    pairs on different workers (or any pairs, with one worker) exchange one envelope each way."""
    from tmax_core.identity import NodeIdentity
    from tmax_mesh_relay.client import HostSession

    probes: list[tuple[NodeIdentity, Any, Receiver, int]] = []
    before = await registered_by_worker(metrics)
    try:
        for _ in range(p.probes):
            identity = NodeIdentity.generate()
            session = await HostSession.open(target, timeout=30)
            await session.register(identity, [], [], timeout=30)
            receiver = Receiver(session)
            where = -1
            deadline = time.monotonic() + 10
            while where < 0 and time.monotonic() < deadline:
                now = await registered_by_worker(metrics)
                grew = [i for i, (a, b) in enumerate(zip(before, now, strict=True)) if b > a]
                if len(grew) == 1:
                    where = grew[0]
                else:
                    await asyncio.sleep(0.1)
                before = now
            probes.append((identity, session, receiver, where))
        by_worker = Counter(w for *_, w in probes)
        candidates = [
            (a, b) for a in probes for b in probes if a is not b and (len(metrics) == 1 or a[3] != b[3])
        ]
        chosen = random.sample(candidates, min(p.pairs, len(candidates)))
        results = []
        for a, b in chosen:
            pair: dict[str, Any] = {"workers": [a[3], b[3]]}
            for src, dst, key in ((a, b, "a_to_b_ms"), (b, a, "b_to_a_ms")):
                mid, frame = frames_for(src[0], dst[0], 1)[0]
                t0 = time.monotonic_ns()
                await src[1].write(frame)
                deadline = time.monotonic() + 10
                while mid not in dst[2].arrived and time.monotonic() < deadline:
                    await asyncio.sleep(0.005)
                pair[key] = (dst[2].arrived[mid] - t0) / 1e6 if mid in dst[2].arrived else None
            results.append(pair)
        ok = sum(1 for r in results if r["a_to_b_ms"] is not None and r["b_to_a_ms"] is not None)
        return {
            "probes_by_worker": {str(k): v for k, v in sorted(by_worker.items())},
            "pairs": results,
            "pairs_ok": ok,
        }
    finally:
        for _, session, receiver, _ in probes:
            receiver.task.cancel()
            await session.close()


async def run_round(name: str, workers: int, nodes: int, p: Params, workdir: Path) -> dict[str, Any]:
    rdir = workdir / name
    rdir.mkdir()
    children: list[Child] = []
    swarm: list[Worker] = []
    out: dict[str, Any] = {"workers": workers, "nodes": nodes}
    two_addresses = nodes > ONE_ADDRESS_MAX
    try:
        argv = [str(BIN / "tmax-host"), "--metrics-listen", "127.0.0.1:0"]
        if two_addresses:  # one port for both addresses, and both signed-for URLs accepted
            port = free_port()
            argv += ["--listen", f"0.0.0.0:{port}"]
            argv += ["--public-url", f"grpc://127.0.0.1:{port}", "--public-url", f"grpc://127.0.0.2:{port}"]
        else:
            argv += ["--listen", "127.0.0.1:0"]
        if workers > 1:
            argv += ["--workers", str(workers)]
        cap = str(nodes + p.probes + 100)
        argv += [*HOST_FLAGS, "--max-connections", cap, "--max-connections-per-ip", cap]
        argv += [
            "--register-rate",
            "1000000",
            "--register-burst",
            cap,
            "--max-lookup-allow",
            str(max(p.allow, 1)),
        ]
        out["host_flags"] = argv[1:]
        host = Child("host", argv, rdir)
        children.append(host)
        host.spawn()
        ready = await host.wait_ready(60)
        pids, metrics = worker_pids(ready), metrics_of(ready)
        port = ready["listen"].rpartition(":")[2]
        targets = [f"127.0.0.1:{port}", f"127.0.0.2:{port}"] if two_addresses else [f"127.0.0.1:{port}"]
        others = [c for c in children_of(ready["pid"]) if c not in pids] if workers > 1 else []
        out["targets"] = targets
        await asyncio.sleep(1.0)
        out["baseline"] = {str(pid): proc_status(pid) for pid in pids}

        procs = max(2, math.ceil(nodes / p.per_process))
        shares = [nodes // procs + (1 if i < nodes % procs else 0) for i in range(procs)]
        for i, count in enumerate(shares):
            a = [sys.executable, SWARM, "--swarm", "--relay", "host", "--target", targets[i % len(targets)]]
            a += ["--count", str(count), "--concurrency", str(p.concurrency), "--allow", str(p.allow)]
            swarm.append(Worker(f"swarm-{i}", a, rdir))
        for w in swarm:
            await w.start()
        for w in swarm:
            await w.reply(120)
        print(f"  {name}: registering {nodes:,} nodes from {procs} processes ...", flush=True)
        for w in swarm:
            w.send({"op": "register"})
        results = await asyncio.gather(*(w.reply(p.register_timeout_s) for w in swarm))
        go = min(r["go_ns"] for r in results)
        done = max((r["done_ns"] for r in results if r["ok"]), default=go)
        ok = sum(r["ok"] for r in results)
        errors: Counter[str] = Counter()
        for r in results:
            errors.update(r["errors"])
        out["registration"] = {
            "registered": ok,
            "failed": sum(r["failed"] for r in results),
            "errors": dict(errors.most_common(5)),
            "seconds": (done - go) / 1e9,
            "swarm_processes": procs,
        }
        await asyncio.sleep(p.settle_s)
        loaded = {str(pid): proc_status(pid) for pid in pids}
        out["loaded"] = loaded
        out["fds"] = {str(pid): open_fds(pid) for pid in pids}
        out["registered_by_worker"] = await registered_by_worker(metrics)
        out["other_rss_kib"] = {str(pid): proc_status(pid).get("VmRSS") for pid in [ready["pid"], *others]}
        base = [out["baseline"][k].get("VmRSS") or 0 for k in out["baseline"]]
        rss = [loaded[k].get("VmRSS") or 0 for k in loaded]
        out["rss_kib_sum"], out["baseline_kib_sum"] = sum(rss), sum(base)
        out["rss_per_connection_kib"] = (sum(rss) - sum(base)) / ok if ok else None
        print(f"  {name}: {ok:,} registered; probes and pairs ...", flush=True)
        out["exchange"] = await probe_pairs(p, targets[0], metrics)
        return out
    finally:
        out["stop_s"] = await stop_all(swarm, children)


async def run(p: Params, workdir: Path) -> dict[str, Any]:
    t0 = time.monotonic()
    single = await run_round("single", 1, p.nodes // p.workers, p, workdir)
    multi = await run_round(f"workers-{p.workers}", p.workers, p.nodes, p, workdir)
    return {"single": single, "multi": multi, "wall_seconds": time.monotonic() - t0}


def assess(res: dict[str, Any], p: Params) -> dict[str, Any]:
    s, m = res["single"], res["multi"]
    r = ratio(m["rss_per_connection_kib"], s["rss_per_connection_kib"])
    complete = all(x["registration"]["registered"] == x["nodes"] for x in (s, m))
    pairs_ok = m["exchange"]["pairs_ok"] == len(m["exchange"]["pairs"]) > 0
    return {
        "rss_per_connection_ratio": r,
        "complete": complete,
        "targets": {
            "nodes": {"target": p.nodes, "reached": m["registration"]["registered"], "met": complete},
            "rss_per_connection": {
                "target": f"<= {TARGET_RSS_RATIO}x",
                "met": bool(r and r <= TARGET_RSS_RATIO),
            },
            "cross_worker_pairs": {"met": pairs_ok},
        },
    }


def print_table(out: dict[str, Any]) -> None:
    res, a, env_ = out["results"], out["assessment"], out["environment"]
    s, m = res["single"], res["multi"]
    w, line = 46, "-" * 96
    n = m["workers"]

    def row(label: str, sv: Any, mv: Any, note: str = "", nd: int = 2) -> None:
        rr = ratio(mv, sv) if isinstance(sv, (int, float)) and isinstance(mv, (int, float)) else None
        rs = f"{fmt(rr, 2)}x" if rr is not None else ""
        print(f"{label:{w}}{fmt(sv, nd):>14}{fmt(mv, nd):>14}{rs:>10}   {note}")

    print()
    print(
        f"tmax-host --workers {n} scale benchmark - {env_['cpus']} CPUs, Python {env_['python']}, "
        f"loadavg {env_['loadavg_at_start']}"
    )
    print(line)
    print(f"{'':{w}}{'1 process':>14}{f'--workers {n}':>14}{'ratio':>10}")
    print(line)
    print(f"{'nodes asked':{w}}{s['nodes']:>14,}{m['nodes']:>14,}")
    row("nodes registered", s["registration"]["registered"], m["registration"]["registered"], nd=0)
    row("  failed", s["registration"]["failed"], m["registration"]["failed"], nd=0)
    row("time to register all (s)", s["registration"]["seconds"], m["registration"]["seconds"], nd=1)
    by = "/".join(f"{x:,.0f}" for x in m["registered_by_worker"])
    print(f"{'registered per worker (metric)':{w}}{s['registered_by_worker'][0]:>14,.0f}{by:>14}")
    row("workers' RSS, idle (MiB, sum)", s["baseline_kib_sum"] / 1024, m["baseline_kib_sum"] / 1024, nd=1)
    row("workers' RSS, all registered (MiB, sum)", s["rss_kib_sum"] / 1024, m["rss_kib_sum"] / 1024, nd=1)
    t = a["targets"]["rss_per_connection"]
    row(
        "RSS per connection (KiB)",
        s["rss_per_connection_kib"],
        m["rss_per_connection_kib"],
        f"target <= {TARGET_RSS_RATIO}x: {'MET' if t['met'] else 'NOT MET'}",
        nd=1,
    )
    fds = "/".join(str(x) for x in m["fds"].values())
    print(f"{'open fds per worker':{w}}{next(iter(s['fds'].values())):>14}{fds:>14}")
    other = sum(v or 0 for v in m["other_rss_kib"].values()) / 1024
    print(f"{'supervisor + nats-server RSS (MiB)':{w}}{'-':>14}{other:>14.1f}")
    print(line)
    ex = m["exchange"]
    print(f"probes per worker: {ex['probes_by_worker']}; pairs on different workers, one envelope each way:")
    for pr in ex["pairs"]:
        ab, ba = fmt(pr["a_to_b_ms"]), fmt(pr["b_to_a_ms"])
        print(f"  worker {pr['workers'][0]} -> {pr['workers'][1]}: {ab} ms; back: {ba} ms")
    print(f"  {ex['pairs_ok']} of {len(ex['pairs'])} pairs exchanged both ways")
    reached = a["targets"]["nodes"]
    print(
        f"target {reached['target']:,} nodes on --workers {n}: {'MET' if reached['met'] else 'NOT MET'} "
        f"({reached['reached']:,}); errors: {m['registration']['errors'] or 'none'}"
    )
    if len(m["targets"]) > 1:
        print(f"clients connected to {' and '.join(m['targets'])} (host listening on 0.0.0.0)")
    print(f"wall time {res['wall_seconds']:.1f}s; JSON: {out['json_path']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument(
        "--nodes", type=int, help="registered nodes on the --workers host (default 19,500 per worker)"
    )
    ap.add_argument("--per-process", type=int, default=2500, help="swarm connections per client process")
    ap.add_argument("--concurrency", type=int, default=64, help="registrations in flight per swarm process")
    ap.add_argument("--allow", type=int, default=1000, help="lookup allow-list ids per node (0 = none)")
    ap.add_argument("--pairs", type=int, default=4, help="random cross-worker pairs that exchange a message")
    ap.add_argument("--name", help="results name (default relay_workers_scale or relay_workers_scale-<N>)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir with the process logs")
    args = ap.parse_args(argv)
    if args.workers < 2:
        ap.error("--workers must be at least 2 (the single-process round is always measured)")
    nodes = args.nodes or 19_500 * args.workers
    if nodes // args.workers + 300 > FD_LIMIT:
        ap.error(f"each worker holds one fd per node: at most {FD_LIMIT - 300:,} nodes per worker here")
    if nodes > 2 * ONE_ADDRESS_MAX:
        ap.error(
            f"at most {2 * ONE_ADDRESS_MAX:,} nodes: two client addresses of ~28,000 ephemeral ports each"
        )
    reg_timeout = max(60.0, 100.0 * nodes / 10_000)
    p = Params(
        workers=args.workers,
        nodes=nodes,
        per_process=args.per_process,
        concurrency=args.concurrency,
        allow=args.allow,
        probes=max(6, 2 * args.pairs),
        pairs=args.pairs,
        settle_s=3.0,
        register_timeout_s=reg_timeout,
        hard_limit_s=2.5 * reg_timeout + 240,
    )
    name = args.name or ("relay_workers_scale" if not args.nodes else f"relay_workers_scale-{nodes}")
    return run_and_report(
        name,
        {"benchmark": "relay_workers_scale", "params": asdict(p)},
        lambda workdir: run(p, workdir),
        p.hard_limit_s,
        lambda results: assess(results, p),
        print_table,
        workdir_prefix="tmax-bench-workers-",
        keep=args.keep,
    )


if __name__ == "__main__":
    sys.exit(main())
