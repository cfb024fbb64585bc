"""Relay scale benchmark: N concurrently registered nodes, each on its own
connection, on ``tmax-host`` and on a bare ``grpc.aio`` relay of the same
shape, one after the other in the same invocation.

Run from the checkout (see bench/README.md)::

    .venv/bin/python bench/relay_scale.py              # 10,000 nodes, < 5 minutes
    .venv/bin/python bench/relay_scale.py --quick      # 2,000 nodes
    .venv/bin/python bench/relay_scale.py --nodes 5000
    .venv/bin/python bench/relay_scale.py --allow 0       # without lookup allow lists

For each relay in turn (the bare one first, then tmax-host):

1. the relay starts (tmax-host: the real console script, ``--listen
   127.0.0.1:0 --ready-file``, ``--max-connections`` raised above N; the bare
   relay: ``bench/relay.py --bare-server``, tmax-host's gRPC server options);
2. a sample pair registers (``bench/relay.py`` sender and receiver processes,
   as in the relay benchmark) and measures one-way latency at a fixed rate
   with nothing else connected; then the relay's VmRSS is the idle baseline;
3. "swarm" processes (this file, ``--swarm``; at least 2, at most
   ``--per-process`` connections each, so each stays far below the 20,000
   file descriptors a process may hold here) generate their node identities
   (coincurve keys), then, on a common start signal, each registers its
   share: one channel per node (``grpc.use_local_subchannel_pool=1``, so one
   TCP connection each), on tmax-host through ``HostSession`` (challenge,
   signed Register carrying a full lookup allow list: ``--allow`` ids,
   default 1,000, the host's limit), on the bare relay with its handshake
   (no crypto, no allow list), at most ``--concurrency`` registrations in
   flight per process; tmax-host's per-address caps are lifted (the swarm is
   one address standing for many);
4. measured: time from the start signal until the last node is registered;
   the relay's CPU per registration; after a settle time, its VmRSS minus the
   idle baseline, per connection; its idle CPU with everyone connected
   (HTTP/2 keepalives only); its open file descriptors; the sample pair's
   one-way latency p50/p99 again, with all N nodes connected;
5. every process of that round is stopped before the next relay starts.

Prints a table (tmax-host, bare relay, ratio; target: tmax-host RSS per
connection ≤ 1.5x the bare relay's) and writes
``bench/results/relay_scale.json`` (``relay_scale-quick.json``,
``relay_scale-<N>.json`` for other sizes). Every wait is bounded, the whole
run has a hard limit, and every child process is stopped on every exit path.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from common import (  # noqa: E402 - the benches' shared helpers
    BIN,
    Child,
    CpuWindow,
    Worker,
    cpu_seconds,
    fmt,
    open_fds,
    proc_status,
    ratio,
    run_and_report,
    summarize_ms,
)
from relay import (  # noqa: E402 - the relay bench's clients and bare relay
    HOST_FLAGS,
    LABELS,
    SLOTS,
    BareSession,
    Bench,
    emit,
)
from relay import Params as PairParams  # noqa: E402

TARGET_RSS_RATIO = 1.5  # tmax-host RSS per connection / bare relay's, at most
FD_LIMIT = 20_000  # per process on this machine kind (cannot be raised)
PAIR_SIZE = 256  # envelope bytes of the sample pair
RELAY_ORDER = ("bare", "host")


@dataclass(frozen=True)
class Params:
    nodes: int  # registered nodes in the swarm (the sample pair comes on top)
    per_process: int  # swarm connections per client process, at most
    concurrency: int  # registrations in flight per swarm process
    pair_rate: float  # sample pair msg/s
    pair_s: float  # seconds of sample-pair load per measurement
    settle_s: float  # after the last registration, before reading RSS
    idle_cpu_s: float  # window for the relay's idle CPU with N connected
    register_timeout_s: float  # all registrations must finish within this
    hard_limit_s: float
    allow: int = 1000  # lookup allow-list ids per tmax-host node (1,000: the host's default limit)


FULL = Params(
    nodes=10_000,
    per_process=2_500,
    concurrency=64,
    pair_rate=200.0,
    pair_s=5.0,
    settle_s=3.0,
    idle_cpu_s=3.0,
    register_timeout_s=100.0,
    hard_limit_s=290.0,
)
QUICK = Params(
    nodes=2_000,
    per_process=1_000,
    concurrency=64,
    pair_rate=200.0,
    pair_s=2.0,
    settle_s=2.0,
    idle_cpu_s=2.0,
    register_timeout_s=40.0,
    hard_limit_s=110.0,
)


# --------------------------------------------------------------------------- host metrics


def scrape_registered(metrics: str) -> float | None:
    try:
        text = urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5).read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("tmax_host_registered_nodes "):
            return float(line.split()[1])
    return None


# --------------------------------------------------------------------------- swarm processes


async def swarm_main(args: argparse.Namespace) -> None:
    """Child-process mode: hold ``--count`` registered nodes, one channel each."""
    from tmax_core.identity import NodeIdentity
    from tmax_mesh_relay.client import HostSession

    t0 = time.perf_counter()
    identities = [NodeIdentity.from_secret(os.urandom(32), 0) for _ in range(args.count)]
    # One list object for every node of this process (the host keeps one copy per node).
    allow = [os.urandom(20) for _ in range(args.allow)]
    emit({"ready": True, "pid": os.getpid(), "identities_s": time.perf_counter() - t0, "fds": open_fds()})

    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    line = await stdin.readline()
    if not line:
        os._exit(0)

    sessions: list[Any] = []
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    done_ns = 0
    todo = iter(identities)

    async def worker() -> None:
        nonlocal done_ns
        for identity in todo:
            t = time.perf_counter()
            try:
                if args.relay == "host":
                    session = await HostSession.open(args.target, timeout=args.timeout)
                    sessions.append(session)  # kept even if registration fails, closed at exit
                    await session.register(identity, [], allow, timeout=args.timeout)
                else:
                    sessions.append(await BareSession.open(args.target, identity.node_id, args.timeout))
            except Exception as err:
                errors[f"{type(err).__name__}: {str(err)[:80]}"] += 1
                continue
            latencies.append(time.perf_counter() - t)
            done_ns = max(done_ns, time.monotonic_ns())

    go_ns = time.monotonic_ns()
    cpu0 = time.process_time()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    cpu_s = time.process_time() - cpu0
    gc.freeze()  # many long-lived channel objects: keep the collector off them
    emit(
        {
            "cpu_s": cpu_s,
            "ok": len(latencies),
            "failed": sum(errors.values()),
            "errors": dict(errors.most_common(5)),
            "go_ns": go_ns,
            "done_ns": done_ns,
            "latency": summarize_ms(latencies),
            "fds": open_fds(),
            "status": proc_status(os.getpid()),
        }
    )
    await stdin.readline()  # "stop" or EOF: leave without closing thousands of channels one by one
    sys.stdout.flush()
    os._exit(0)


# --------------------------------------------------------------------------- one relay


async def stop_all(workers: list[Worker], children: list[Child]) -> float:
    """Stop the clients, then the relay; returns the seconds the relay took to exit on SIGTERM."""
    await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
    t0 = time.monotonic()
    for child in children:
        await asyncio.to_thread(child.stop)
    return time.monotonic() - t0


async def pair_latency(bench: Bench, relay: str, seconds: float) -> dict[str, Any]:
    await bench.phase(relay, PAIR_SIZE, "rate", seconds)
    entry = bench.summary()[str(PAIR_SIZE)][relay]["rate"]
    return {
        "rate": bench.rate,
        "sent": entry["sent"],
        "delivered": entry["delivered_matched"],
        "latency": entry["latency"],
        "cpu_us_per_msg": entry["cpu_us_per_msg"],
    }


async def run_relay(relay: str, p: Params, workdir: Path, keys_path: Path, mode: str) -> dict[str, Any]:
    rdir = workdir / relay
    rdir.mkdir()
    children: list[Child] = []
    workers: list[Worker] = []
    me = str(Path(__file__).resolve())
    relay_py = str(BENCH_DIR / "relay.py")
    out: dict[str, Any] = {"relay": relay}
    try:
        if relay == "host":
            argv = [str(BIN / "tmax-host"), "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]
            argv += [*HOST_FLAGS, "--max-connections", str(p.nodes + 100)]
            # Every swarm node comes from 127.0.0.1: lift the per-address caps.
            argv += ["--max-connections-per-ip", str(p.nodes + 100), "--register-rate", "1000000"]
            argv += ["--register-burst", str(p.nodes + 100), "--max-lookup-allow", str(max(p.allow, 1))]
            out["host_flags"] = argv[1:]
        else:
            argv = [sys.executable, relay_py, "--bare-server"]
        server = Child(relay, argv, rdir)
        children.append(server)
        server.spawn()
        ready = await server.wait_ready()
        pid, target = ready["pid"], ready["listen"]

        # The sample pair (bench/relay.py client processes), registered first.
        progress = rdir / "progress.bin"
        progress.write_bytes(bytes(8 * len(SLOTS)))
        pair_argv = [sys.executable, relay_py, "--keys", str(keys_path), f"--{relay}", target]
        pair_argv += ["--sizes", str(PAIR_SIZE), "--pool", "200", "--progress", str(progress)]
        receiver = Worker("receiver", [*pair_argv, "--client", "receiver"], rdir)
        sender = Worker("sender", [*pair_argv, "--client", "sender"], rdir)
        for w in (receiver, sender):
            workers.append(w)
            await w.start()
            await w.reply(60)
        pair_p = PairParams(
            blocks=1,
            rate_s=p.pair_s,
            max_s=0,
            warm_s=0,
            window=1,
            pool=200,
            collect_timeout_s=15.0,
            hard_limit_s=0,
        )
        pids = {relay: pid, "sender": sender.pid, "receiver": receiver.pid}
        await Bench(pair_p, rdir, sender, receiver, pids, rate=p.pair_rate).phase(
            relay, PAIR_SIZE, "rate", 0.5, keep=False
        )  # warm-up
        print(
            f"  {LABELS[relay]}: sample pair, {p.pair_rate:g} msg/s, nothing else connected ...", flush=True
        )
        out["pair_idle"] = await pair_latency(
            Bench(pair_p, rdir, sender, receiver, pids, rate=p.pair_rate), relay, p.pair_s
        )
        await asyncio.sleep(1.0)
        out["baseline"] = {"status": proc_status(pid), "fds": open_fds(pid)}

        # The swarm: identities first, then registration on a common signal.
        procs = max(2, math.ceil(p.nodes / p.per_process))
        shares = [p.nodes // procs + (1 if i < p.nodes % procs else 0) for i in range(procs)]
        swarm = []
        for i, count in enumerate(shares):
            argv = [sys.executable, me, "--swarm", "--relay", relay, "--target", target]
            argv += ["--count", str(count), "--concurrency", str(p.concurrency), "--allow", str(p.allow)]
            swarm.append(Worker(f"swarm-{i}", argv, rdir))
        for w in swarm:
            workers.append(w)
            await w.start()
        swarm_ready = [await w.reply(60) for w in swarm]
        print(
            f"  {LABELS[relay]}: registering {p.nodes:,} nodes from {procs} processes "
            f"({p.concurrency} in flight each) ...",
            flush=True,
        )
        ours = {"relay": pid, "sender": sender.pid, "receiver": receiver.pid} | {w.name: w.pid for w in swarm}
        window = CpuWindow(ours)
        t0 = time.monotonic()
        for w in swarm:
            w.send({"op": "register"})
        results = await asyncio.gather(*(w.reply(p.register_timeout_s) for w in swarm))
        cpu = window.spent()
        others = window.machine() - sum(cpu.values()) - window.own()
        reg_cpu = cpu["relay"]
        go = min(r["go_ns"] for r in results)
        done = max(r["done_ns"] for r in results if r["ok"]) if any(r["ok"] for r in results) else go
        ok = sum(r["ok"] for r in results)
        errors: Counter[str] = Counter()
        for r in results:
            errors.update(r["errors"])
        out["registration"] = {
            "nodes": p.nodes,
            "registered": ok,
            "failed": sum(r["failed"] for r in results),
            "errors": dict(errors.most_common(5)),
            "seconds": (done - go) / 1e9,
            "per_s": ok / ((done - go) / 1e9) if done > go else None,
            "relay_cpu_s": reg_cpu,
            "relay_cpu_us_per_registration": reg_cpu / ok * 1e6 if ok else None,
            "swarm_cpu_us_per_registration": sum(r["cpu_s"] for r in results) / ok * 1e6 if ok else None,
            "other_processes_cores": max(0.0, others) / (time.monotonic() - t0),
            "swarm_processes": procs,
            "per_process": shares,
            "latency_per_process": [r["latency"] for r in results],
            "identities_s_per_process": [r["identities_s"] for r in swarm_ready],
            "swarm_fds": [r["fds"] for r in results],
            "swarm_rss_kib": [r["status"].get("VmRSS") for r in results],
        }

        await asyncio.sleep(p.settle_s)
        after = {"status": proc_status(pid), "fds": open_fds(pid)}
        out["loaded"] = after
        if relay == "host" and ready.get("metrics"):
            out["host_registered_nodes_metric"] = await asyncio.to_thread(scrape_registered, ready["metrics"])
        base_rss, rss = out["baseline"]["status"].get("VmRSS"), after["status"].get("VmRSS")
        out["rss_per_connection_kib"] = (rss - base_rss) / ok if ok and rss and base_rss else None

        cpu1 = cpu_seconds(pid) or 0.0
        await asyncio.sleep(p.idle_cpu_s)
        out["idle_cores_with_n"] = ((cpu_seconds(pid) or 0.0) - cpu1) / p.idle_cpu_s

        print(f"  {LABELS[relay]}: sample pair with {ok:,} nodes connected ...", flush=True)
        out["pair_loaded"] = await pair_latency(
            Bench(pair_p, rdir, sender, receiver, pids, rate=p.pair_rate), relay, p.pair_s
        )
        return out
    finally:
        out["relay_stop_s"] = await stop_all(workers, children)


async def run(p: Params, mode: str, workdir: Path) -> dict[str, Any]:
    from tmax_core.identity import NodeIdentity

    t_run = time.monotonic()
    keys = {role: NodeIdentity.generate().private_key.secret.hex() for role in ("sender", "receiver")}
    keys_path = workdir / "keys.json"
    keys_path.write_text(json.dumps(keys))
    rounds = {}
    for relay in RELAY_ORDER:
        rounds[relay] = await run_relay(relay, p, workdir, keys_path, mode)
    return {"relays": rounds, "wall_seconds": time.monotonic() - t_run}


# --------------------------------------------------------------------------- report


def assess(res: dict[str, Any]) -> dict[str, Any]:
    h, b = res["relays"]["host"], res["relays"]["bare"]
    rss_ratio = ratio(h["rss_per_connection_kib"], b["rss_per_connection_kib"])
    complete = all(r["registration"]["registered"] == r["registration"]["nodes"] for r in (h, b))
    return {
        "ratios": {
            "rss_per_connection": rss_ratio,
            "registration_seconds": ratio(h["registration"]["seconds"], b["registration"]["seconds"]),
            "cpu_per_registration": ratio(
                h["registration"]["relay_cpu_us_per_registration"],
                b["registration"]["relay_cpu_us_per_registration"],
            ),
            "idle_cores": ratio(h["idle_cores_with_n"], b["idle_cores_with_n"]),
            "pair_p50_loaded": ratio(
                h["pair_loaded"]["latency"].get("p50_ms"), b["pair_loaded"]["latency"].get("p50_ms")
            ),
            "pair_p99_loaded": ratio(
                h["pair_loaded"]["latency"].get("p99_ms"), b["pair_loaded"]["latency"].get("p99_ms")
            ),
        },
        "targets": {
            "rss_per_connection": {
                "target": f"<= {TARGET_RSS_RATIO}x bare",
                "ratio": rss_ratio,
                "met": complete and rss_ratio is not None and rss_ratio <= TARGET_RSS_RATIO,
            }
        },
        "complete": complete,
    }


def print_table(out: dict[str, Any]) -> None:
    res, env_, a = out["results"], out["environment"], out["assessment"]
    h, b = res["relays"]["host"], res["relays"]["bare"]
    hr, br = h["registration"], b["registration"]
    w, line = 50, "-" * 104
    rss_t = a["targets"]["rss_per_connection"]

    def mib(r: dict[str, Any], when: str, key: str = "VmRSS") -> float | None:
        kib = r[when]["status"].get(key)
        return kib / 1024 if kib else None

    def row(label: str, hv: float | None, bv: float | None, note: str = "") -> None:
        print(f"{label:{w}}{fmt(hv):>13}{fmt(bv):>13}{fmt(ratio(hv, bv), 2):>9}x   {note}")

    print()
    n = out["params"]["nodes"]
    print(
        f"tmax-host relay scale benchmark ({out['mode']}, N = {n:,}) - {env_['cpus']} CPUs, "
        f"Python {env_['python']}, grpcio {env_['grpcio']}, loadavg {env_['loadavg_at_start']}"
    )
    print(line)
    print(f"{'':{w}}{'tmax-host':>13}{'bare relay':>13}{'ratio':>10}")
    print(line)
    print(f"{'nodes registered (of N)':{w}}{hr['registered']:>13,}{br['registered']:>13,}")
    print(f"{'lookup allow-list ids per node':{w}}{out['params']['allow']:>13,}{0:>13,}")
    row("time to register all N (s)", hr["seconds"], br["seconds"])
    row("  registrations/s", hr["per_s"], br["per_s"])
    row(
        "  relay CPU per registration (us)",
        hr["relay_cpu_us_per_registration"],
        br["relay_cpu_us_per_registration"],
    )
    row(
        "  swarm CPU per registration (us, clients)",
        hr["swarm_cpu_us_per_registration"],
        br["swarm_cpu_us_per_registration"],
    )
    row("relay RSS, idle baseline (MiB)", mib(h, "baseline"), mib(b, "baseline"))
    row("relay RSS, N connected (MiB)", mib(h, "loaded"), mib(b, "loaded"))
    verdict = f"target <= {TARGET_RSS_RATIO}x: {'MET' if rss_t['met'] else 'NOT MET'}"
    row("relay RSS per connection (KiB)", h["rss_per_connection_kib"], b["rss_per_connection_kib"], verdict)
    row("relay peak RSS, VmHWM (MiB)", mib(h, "loaded", "VmHWM"), mib(b, "loaded", "VmHWM"))
    row(
        "relay idle CPU, N connected (% of a core)",
        100 * h["idle_cores_with_n"],
        100 * b["idle_cores_with_n"],
    )
    row("relay open fds, N connected", h["loaded"]["fds"], b["loaded"]["fds"])
    for key, label in (("pair_idle", "alone"), ("pair_loaded", "N connected")):
        hp, bp = h[key], b[key]
        for q in ("p50", "p99"):
            row(
                f"sample pair {q} at {hp['rate']:g} msg/s, {label} (ms)",
                hp["latency"].get(f"{q}_ms"),
                bp["latency"].get(f"{q}_ms"),
            )
    print(line)
    for relay, r in (("tmax-host", h), ("bare relay", b)):
        reg = r["registration"]
        shares = "/".join(str(x) for x in reg["per_process"])
        fds = "/".join(str(x) for x in reg["swarm_fds"])
        p50s = "/".join(fmt(x.get("p50_ms"), 0) for x in reg["latency_per_process"])
        p99s = "/".join(fmt(x.get("p99_ms"), 0) for x in reg["latency_per_process"])
        errors = f" {reg['errors']}" if reg["errors"] else ""
        print(
            f"{relay}: {reg['swarm_processes']} swarm processes x {shares} nodes (fds {fds}); "
            f"one registration p50 {p50s} ms, p99 {p99s} ms; failed {reg['failed']}{errors}"
        )
        print(
            f"{'':{len(relay) + 2}}other processes on the machine during registration: "
            f"{reg['other_processes_cores']:.2f} cores"
        )
    print(
        f"relay exit after SIGTERM (clients already gone): tmax-host {h['relay_stop_s']:.1f} s, "
        f"bare relay {b['relay_stop_s']:.1f} s"
    )
    metric = h.get("host_registered_nodes_metric")
    if metric is not None:
        print(f"tmax-host's own tmax_host_registered_nodes after registration: {metric:,.0f} (N + the pair)")
    print(f"wall time {res['wall_seconds']:.1f}s; JSON: {out['json_path']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"{QUICK.nodes:,} nodes, shorter phases")
    ap.add_argument(
        "--nodes", type=int, help=f"registered nodes (default {FULL.nodes:,}; --quick {QUICK.nodes:,})"
    )
    ap.add_argument(
        "--per-process", type=int, help=f"swarm connections per client process (default {FULL.per_process:,})"
    )
    ap.add_argument(
        "--concurrency", type=int, help=f"registrations in flight per process ({FULL.concurrency})"
    )
    ap.add_argument(
        "--allow",
        type=int,
        help=f"lookup allow-list ids per tmax-host node (default {FULL.allow:,}; 0 = none)",
    )
    ap.add_argument("--name", help="results name (default relay_scale, relay_scale-quick or relay_scale-<N>)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir with the process logs")
    ap.add_argument("--swarm", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--relay", choices=("host", "bare"), help=argparse.SUPPRESS)
    ap.add_argument("--target", help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--timeout", type=float, default=60.0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.swarm:
        asyncio.run(swarm_main(args))
        return 0

    mode = "quick" if args.quick else "full"
    p = QUICK if args.quick else FULL
    changes: dict[str, Any] = {}
    if args.nodes:
        changes["nodes"] = args.nodes
    if args.per_process:
        changes["per_process"] = args.per_process
    if args.concurrency:
        changes["concurrency"] = args.concurrency
    if args.allow is not None:
        changes["allow"] = args.allow
    if changes:
        p = replace(p, **changes)
    if p.per_process > FD_LIMIT - 1000:
        ap.error(f"--per-process must stay well below the {FD_LIMIT:,} file descriptors a process may hold")
    if p.nodes + 200 > FD_LIMIT:
        ap.error(f"each relay holds one fd per node: --nodes must stay below {FD_LIMIT - 200:,} here")
    if args.nodes and args.nodes > FULL.nodes:  # more nodes take longer; scale the limits
        p = replace(
            p,
            register_timeout_s=p.register_timeout_s * args.nodes / FULL.nodes,
            hard_limit_s=p.hard_limit_s * args.nodes / FULL.nodes,
        )
    default_name = {"full": "relay_scale", "quick": "relay_scale-quick"}[mode]
    name = args.name or (default_name if not args.nodes else f"relay_scale-{p.nodes}")
    return run_and_report(
        name,
        {"benchmark": "relay_scale", "mode": mode, "params": asdict(p)},
        lambda workdir: run(p, mode, workdir),
        p.hard_limit_s,
        assess,
        print_table,
        workdir_prefix="tmax-bench-scale-",
        keep=args.keep,
    )


if __name__ == "__main__":
    sys.exit(main())
