"""Direct vs relay benchmark: one-way latency of A→B messages through a relay
host, and over a direct connection found through the host's rendezvous
lookup, measured in the same invocation.

Run from the checkout (see bench/README.md)::

    .venv/bin/python bench/direct_vs_relay.py            # 10 s per path, < 2 minutes
    .venv/bin/python bench/direct_vs_relay.py --quick    # 3 s per path, < 50 s
    .venv/bin/python bench/direct_vs_relay.py --sweep    # every topology below, < 12 minutes

One ``tmax-host`` (127.0.0.1, its frame rate limit lifted so the relay path is
measured, not its pacing) and two pairs of real ``tmax-node`` processes with
temp state dirs, friends through the real invite flow:

* **relay**: the ``direct`` plugin disabled (``TMAX_MESH_DISABLE_PLUGINS=direct``)
  and no peer listeners: every message goes A → host → B;
* **direct**: both nodes listen on a wildcard (in no invite or contact card)
  and use the host; A learns B's endpoint only from the host's lookup, and the
  bench waits until A's ``node status`` shows the direct path before measuring.

Topology: by default everything is on loopback, one machine. ``--host-rtt-ms``
puts a delaying TCP proxy between every node and the host, ``--peer-rtt-ms``
one in front of the direct pair's B (which advertises it as a forwarded port,
``--peer-advertise``), so the machines can be placed apart; ``--sweep`` runs a
fixed list of topologies (:data:`SWEEP`) one after the other.

Each path gets the same open-loop load, 100 msg/s, in interleaved blocks.
Latency is judged node A → node B (A's outbox accepted the message → B
committed it to its inbox, from the nodes' debug log timestamps); the client
→ watcher figure (A's ``msg_send`` call → B's ``inbox_watch``) is printed next
to it. After each run every measured message's delivery path is read back
(``msg_status``) and the host's relayed-envelope counter is compared.

Prints a table (the ratio direct/relay, target p50 ratio ≤ 0.7) and writes
``bench/results/direct_vs_relay*.json``. Every wait is bounded, the whole run
has a hard limit, and the child processes are stopped on every exit path."""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import queue
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    BIN,
    TRACED,
    Child,
    CpuWindow,
    environment,
    node_env,
    node_to_node_ms,
    open_loop,
    ratio,
    run_bounded,
    serve_until_signalled,
    summarize_ms,
    write_results,
)
from messaging import Watcher, arrive_all, befriend

OFFERED_RATE = 100.0  # msg/s
TARGET_P50_RATIO = 0.7  # direct p50 / relay p50
PATHS = ("relay", "direct")


@dataclass(frozen=True)
class Params:
    blocks: int  # blocks of load per path (interleaved between the paths)
    block_s: float  # seconds of offered load per block
    warmup_n: int  # messages per path before measuring
    warmup_timeout_s: float
    grace_s: float  # wait for stragglers after each phase
    upgrade_timeout_s: float  # the direct pair must upgrade within this
    hard_limit_s: float  # the whole run is cancelled (children stopped) after this


FULL = Params(
    blocks=5,
    block_s=2.0,
    warmup_n=20,
    warmup_timeout_s=15.0,
    grace_s=5.0,
    upgrade_timeout_s=30.0,
    hard_limit_s=115.0,
)
QUICK = Params(
    blocks=3,
    block_s=1.0,
    warmup_n=10,
    warmup_timeout_s=10.0,
    grace_s=3.0,
    upgrade_timeout_s=20.0,
    hard_limit_s=50.0,
)


@dataclass(frozen=True)
class Topology:
    """Where the machines are: added round-trip times through delay proxies
    (0 = loopback, no proxy)."""

    host_rtt_ms: float = 0.0  # node <-> host, for every node (relay and direct pairs)
    peer_rtt_ms: float = 0.0  # node A -> node B of the direct pair

    @property
    def label(self) -> str:
        if not (self.host_rtt_ms or self.peer_rtt_ms):
            return "one machine: host and nodes on loopback"
        return f"host +{self.host_rtt_ms:g} ms RTT, peer +{self.peer_rtt_ms:g} ms RTT"


# One machine; three machines equally far apart (the peer as far as the host);
# two machines on one LAN with the host in a data centre.
SWEEP = [
    Topology(),
    Topology(host_rtt_ms=1, peer_rtt_ms=1),
    Topology(host_rtt_ms=2, peer_rtt_ms=2),
    Topology(host_rtt_ms=5, peer_rtt_ms=5),
    Topology(host_rtt_ms=20, peer_rtt_ms=20),
    Topology(host_rtt_ms=20, peer_rtt_ms=0.5),
]


# --------------------------------------------------------------------------- helpers


def scrape(metrics: str) -> str:
    return urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5).read().decode()


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


async def host_relayed(metrics: str) -> float:
    return metric(await asyncio.to_thread(scrape, metrics), "tmax_host_relayed_total")


def transport(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in status["transports"] if t["name"] == name)


async def wait_until(what: str, timeout: float, check: Any) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.05)


async def registered(client: Any) -> bool:
    return transport(await client.node_status(), "relay")["state"] == "connected"


# --------------------------------------------------------------------------- one path


class PathRun:
    """Open-loop blocks of load on one pair, and what they measured."""

    def __init__(
        self, label: str, a: Any, b_node_id: str, watcher: Watcher, metrics: str, pids: dict[str, int]
    ) -> None:
        self.label = label
        self.a = a
        self.b_node_id = b_node_id
        self.watcher = watcher
        self.metrics = metrics
        self.pids = pids
        self.starts: dict[str, float] = {}
        self.starts_wall_ms: dict[str, float] = {}
        self.ids: dict[str, str] = {}
        self.errors: list[str] = []
        self.bodies: list[str] = []
        self.relayed = 0.0
        self.cpu_s: collections.Counter[str] = collections.Counter()
        self.seconds = 0.0

    async def warm_up(self, p: Params) -> None:
        warm = [f"{self.label}-warm-{i}" for i in range(p.warmup_n)]
        for body in warm:
            await self.a.msg_send(self.b_node_id, body.encode())
        await arrive_all(self.a, self.b_node_id, self.watcher, warm, p.warmup_timeout_s)
        self.watcher.nudges = 0

    async def block(self, k: int, seconds: float, grace_s: float) -> None:
        """OFFERED_RATE msg/s for ``seconds``, then wait (bounded) until they all arrived."""

        async def send_timed(i: int) -> None:
            body = f"{self.label}-{k}-{i}"
            self.starts_wall_ms[body] = time.time_ns() / 1e6
            self.starts[body] = time.perf_counter()
            try:
                self.ids[body] = (await self.a.msg_send(self.b_node_id, body.encode()))["message_id"]
            except Exception as err:  # counted, not fatal
                self.errors.append(str(err))

        relayed = await host_relayed(self.metrics)
        cpu = CpuWindow(self.pids)
        t0 = time.perf_counter()
        n = await open_loop(OFFERED_RATE, seconds, send_timed)
        bodies = [f"{self.label}-{k}-{i}" for i in range(n)]
        self.bodies += bodies
        with contextlib.suppress(RuntimeError):
            await arrive_all(self.a, self.b_node_id, self.watcher, bodies, grace_s)
        self.seconds += time.perf_counter() - t0
        self.cpu_s.update(cpu.spent())
        self.relayed += await host_relayed(self.metrics) - relayed

    async def result(self) -> dict[str, Any]:
        one_way = [
            self.watcher.arrivals[x] - self.starts[x] for x in self.bodies if x in self.watcher.arrivals
        ]
        # B's received_at_ms is taken when its ingress starts (wall clock, 1 ms resolution).
        received = self.watcher.received_at_ms
        to_ingress = [(received[x] - self.starts_wall_ms[x]) / 1000 for x in self.bodies if x in received]
        paths: collections.Counter[str] = collections.Counter()
        for body in self.bodies:
            if body in self.ids:
                st = await self.a.msg_status(self.ids[body])
                paths[st["path"] if st["status"] == "delivered" else st["status"]] += 1
        n = len(self.bodies)
        return {
            "offered_rate": OFFERED_RATE,
            "sent": n,
            "errors": len(self.errors),
            "first_error": self.errors[0] if self.errors else None,
            "arrived": len(one_way),
            **summarize_ms(one_way),
            "to_b_ingress_start_1ms": summarize_ms(to_ingress),
            "paths": dict(paths),
            "host_relayed_envelopes": self.relayed,
            "watch_nudges": self.watcher.nudges,
            "cpu_us_per_msg": {name: sec / n * 1e6 for name, sec in self.cpu_s.items()} if n else {},
        }


# --------------------------------------------------------------------------- orchestration


def delay_proxy_main(target: str, one_way_ms: float, ready_file: str) -> None:
    """Child-process mode (``--host-rtt-ms``, ``--peer-rtt-ms``): a TCP proxy on
    127.0.0.1 that forwards to ``target`` and holds every chunk ``one_way_ms`` in
    each direction (order kept, throughput not limited): a machine farther away.

    Plain threads and blocking sockets, one reader and one writer per direction
    of a connection, the writer sleeping until each chunk is due: the proxy
    adds about 0.2 ms per crossing of its own on top of the delay asked for
    (an asyncio proxy added about 1 ms: a loop wake-up per chunk each way, and
    timers rounded up to whole milliseconds by ``epoll``)."""
    delay = one_way_ms / 1000
    host, _, port = target.rpartition(":")

    def forward(src: socket.socket, dst: socket.socket) -> None:
        chunks: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

        def write() -> None:
            while True:
                due, data = chunks.get()
                if not data:
                    break
                if (wait := due - time.monotonic()) > 0:
                    time.sleep(wait)
                try:
                    dst.sendall(data)
                except OSError:
                    break
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

        threading.Thread(target=write, daemon=True).start()
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            chunks.put((time.monotonic() + delay, data))
            if not data:
                return

    def connect(client: socket.socket) -> None:
        try:
            upstream = socket.create_connection((host, int(port)))
        except OSError:
            client.close()
            return
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=forward, args=(client, upstream), daemon=True).start()
        threading.Thread(target=forward, args=(upstream, client), daemon=True).start()

    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            client, _ = listener.accept()
            connect(client)

    threading.Thread(target=accept, daemon=True).start()
    ready = {"pid": os.getpid(), "listen": f"127.0.0.1:{listener.getsockname()[1]}"}
    asyncio.run(serve_until_signalled(ready_file, ready))


async def start_delay_proxy(name: str, target: str, rtt_ms: float, workdir: Path) -> Child:
    """A delay proxy child (see :func:`delay_proxy_main`) in front of ``target``."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--delay-proxy", target, f"{rtt_ms / 2:g}"]
    proxy = Child(name, argv, workdir)
    proxy.spawn()
    await proxy.wait_ready()
    return proxy


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


async def run(p: Params, mode: str, workdir: Path, topo: Topology) -> dict[str, Any]:
    from tmax_core.client import AsyncJsonNodeClient

    children: list[Child] = []
    watchers: list[Watcher] = []
    try:
        t_run = time.monotonic()
        host = Child(
            "host",
            [
                str(BIN / "tmax-host"),
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                # Lift the per-connection frame rate: measure the relay path, not its pacing.
                "--rate",
                "100000",
                "--burst",
                "100000",
            ],
            workdir,
        )
        children.append(host)
        host.spawn(env=node_env())
        await host.wait_ready()
        url = f"grpc://{host.ready['listen']}"
        if topo.host_rtt_ms:
            proxy = await start_delay_proxy("host-proxy", host.ready["listen"], topo.host_rtt_ms, workdir)
            children.append(proxy)
            url = f"grpc://{proxy.ready['listen']}"  # the nodes reach the host through it
        metrics = host.ready["metrics"]
        # B of the direct pair: its listener reached through a delay proxy, which
        # it advertises as a forwarded port (a wildcard: the host pairs the port
        # with the address it sees B at, so A finds it only by lookup).
        b_listen, b_advertise = "0.0.0.0:0", []
        if topo.peer_rtt_ms:
            port = free_port()
            b_listen = f"0.0.0.0:{port}"
            proxy = await start_delay_proxy("peer-proxy", f"127.0.0.1:{port}", topo.peer_rtt_ms, workdir)
            children.append(proxy)
            b_advertise = ["--peer-advertise", f"0.0.0.0:{proxy.ready['listen'].rpartition(':')[2]}"]

        nodes: dict[str, Child] = {}
        for path in PATHS:
            for side in ("a", "b"):
                name = f"{path}-{side}"
                state = workdir / name
                state.mkdir()
                argv = [str(BIN / "tmax-node"), "--state-dir", str(state), "--relay", url]
                env = node_env() | TRACED
                if path == "direct" and side == "b":
                    argv += ["--peer-listen", b_listen, *b_advertise]  # a wildcard: found only by lookup
                elif path == "direct":
                    argv += ["--peer-listen", "0.0.0.0:0"]
                else:
                    env["TMAX_MESH_DISABLE_PLUGINS"] = "direct"
                nodes[name] = Child(name, argv, workdir)
                nodes[name].spawn(env=env)
                children.append(nodes[name])
        for child in nodes.values():
            await child.wait_ready()

        results: dict[str, Any] = {}
        async with contextlib.AsyncExitStack() as stack:
            clients = {
                name: await stack.enter_async_context(AsyncJsonNodeClient(child.ready["socket"]))
                for name, child in nodes.items()
            }
            for name, client in clients.items():
                await wait_until(f"{name} to register at the host", 20, lambda c=client: registered(c))
            t_upgrade = time.monotonic()
            for path in PATHS:
                a, b = clients[f"{path}-a"], clients[f"{path}-b"]
                await befriend(a, b, nodes[f"{path}-b"].ready["node_id"], nodes[f"{path}-a"].ready["node_id"])

            async def upgraded() -> bool:
                view = transport(await clients["direct-a"].node_status(), "direct")["friends"].get("bench-b")
                return bool(view) and view["path"] == "direct"

            print(
                f"[{mode}] waiting for the direct pair to upgrade through the host's lookup ...", flush=True
            )
            await wait_until("the direct pair to upgrade", p.upgrade_timeout_s, upgraded)
            upgrade_s = time.monotonic() - t_upgrade
            relay_view = transport(await clients["relay-a"].node_status(), "direct")["friends"]
            if relay_view:
                raise RuntimeError(f"the relay-only pair knows a direct endpoint: {relay_view}")

            runs = {}
            for path in PATHS:
                watcher = Watcher(clients[f"{path}-b"])
                watcher.start()
                watchers.append(watcher)
                pids = {
                    "node_a": nodes[f"{path}-a"].ready["pid"],
                    "node_b": nodes[f"{path}-b"].ready["pid"],
                    "host": host.ready["pid"],
                }
                b_id = nodes[f"{path}-b"].ready["node_id"]
                runs[path] = PathRun(path, clients[f"{path}-a"], b_id, watcher, metrics, pids)
                await runs[path].warm_up(p)
            # Interleaved blocks (relay, direct, direct, relay, ...): both paths see
            # the same machine conditions, whatever else runs on it meanwhile.
            print(
                f"[{mode}] {OFFERED_RATE:g} msg/s, {p.blocks} blocks of {p.block_s:g} s per path, "
                "interleaved ...",
                flush=True,
            )
            for k in range(p.blocks):
                for path in PATHS if k % 2 == 0 else PATHS[::-1]:
                    await runs[path].block(k, p.block_s, p.grace_s)
            for path in PATHS:
                results[path] = await runs[path].result()
                logs = (nodes[f"{path}-a"].log_path, nodes[f"{path}-b"].log_path)
                measured = [runs[path].ids[x] for x in runs[path].bodies if x in runs[path].ids]
                results[path]["node_to_node"] = node_to_node_ms(*logs, measured)
            results["direct"]["upgrade_seconds_after_befriend_start"] = upgrade_s
        results["wall_seconds"] = time.monotonic() - t_run
        return results
    finally:
        for watcher in watchers:
            await watcher.stop()
        for child in reversed(children):
            child.stop()


def assess(res: dict[str, Any]) -> dict[str, Any]:
    relay, direct = res["relay"], res["direct"]
    n2n = {path: res[path]["node_to_node"] for path in PATHS}
    p50 = ratio(n2n["direct"].get("p50_ms"), n2n["relay"].get("p50_ms"))
    clean = (
        relay["paths"] == {"relay": relay["sent"]}
        and direct["paths"] == {"direct": direct["sent"]}
        and direct["host_relayed_envelopes"] == 0
        and relay["arrived"] == relay["sent"]
        and direct["arrived"] == direct["sent"]
    )
    return {
        "ratios": {
            "node_to_node_p50": p50,
            "node_to_node_p99": ratio(n2n["direct"].get("p99_ms"), n2n["relay"].get("p99_ms")),
            "client_to_watcher_p50": ratio(direct.get("p50_ms"), relay.get("p50_ms")),
            "client_to_watcher_p90": ratio(direct.get("p90_ms"), relay.get("p90_ms")),
            "client_to_watcher_p99": ratio(direct.get("p99_ms"), relay.get("p99_ms")),
        },
        "checks": {"every_message_on_its_path_and_arrived": clean},
        "targets": {
            "direct_vs_relay_p50_ratio": {
                "target": TARGET_P50_RATIO,
                "value": p50,
                "measured": "node A accepted -> node B stored",
                "met": p50 is not None and p50 <= TARGET_P50_RATIO and clean,
            }
        },
    }


def fmt(x: float | None, nd: int = 2) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def print_table(out: dict[str, Any]) -> None:
    res, params = out["results"], out["params"]
    print()
    print(
        f"direct vs relay: one-way latency at {OFFERED_RATE:g} msg/s, "
        f"{params['blocks']} x {params['block_s']:g} s per path, interleaved "
        f"(send call start -> B's inbox watch), {out['environment']['cpus']} CPUs"
    )
    print(f"{out['topology']}")
    print()
    print(
        "node A -> node B (A's outbox accepted it -> B committed it to its inbox; the nodes' log timestamps):"
    )
    print()
    print("| path | measured | p50 ms | p90 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|")
    for path in PATHS:
        n = res[path]["node_to_node"]
        print(
            f"| {path} | {n.get('n', 0)} | {fmt(n.get('p50_ms'))} | {fmt(n.get('p90_ms'))} | "
            f"{fmt(n.get('p99_ms'))} |"
        )
    ratios = out["ratios"]
    n2n_p50, n2n_p99 = fmt(ratios["node_to_node_p50"]), fmt(ratios["node_to_node_p99"])
    print(f"| **direct / relay** | | **{n2n_p50}x** | | {n2n_p99}x |")
    print()
    print("client -> watcher (msg_send call start -> arrival on B's inbox watch; adds 2 local API hops):")
    print()
    print(
        "| path | sent | arrived | p50 ms | p90 ms | p99 ms | max ms | to B ingress p50 ms | delivered via "
        "| host relayed | CPU µs/msg A, B, host |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|")
    for path in PATHS:
        r = res[path]
        via = ", ".join(f"{k} {v}" for k, v in sorted(r["paths"].items())) or "-"
        cpu = ", ".join(
            f"{r['cpu_us_per_msg'][k]:.0f}" if k in r["cpu_us_per_msg"] else "-"
            for k in ("node_a", "node_b", "host")
        )
        print(
            f"| {path} | {r['sent']} | {r['arrived']} | {fmt(r.get('p50_ms'))} | "
            f"{fmt(r.get('p90_ms'))} | {fmt(r.get('p99_ms'))} | {fmt(r.get('max_ms'))} | "
            f"{fmt(r['to_b_ingress_start_1ms'].get('p50_ms'), 1)} | {via} | "
            f"{r['host_relayed_envelopes']:.0f} | {cpu} |"
        )
    target = out["targets"]["direct_vs_relay_p50_ratio"]
    print(
        f"| **direct / relay** | | | **{fmt(ratios['client_to_watcher_p50'])}x** | "
        f"{fmt(ratios['client_to_watcher_p90'])}x | {fmt(ratios['client_to_watcher_p99'])}x | | | | | |"
    )
    print()
    verdict = "MET" if target["met"] else "NOT MET"
    print(
        f"target: direct p50 ≤ {TARGET_P50_RATIO:g} x relay p50 (node A -> node B) -> "
        f"{fmt(target['value'])}x: **{verdict}** (client -> watcher: {fmt(ratios['client_to_watcher_p50'])}x)"
    )
    if not out["checks"]["every_message_on_its_path_and_arrived"]:
        print("WARNING: some messages did not arrive, or did not take the path of their phase (see the JSON)")
    print(
        f"direct pair upgraded {res['direct']['upgrade_seconds_after_befriend_start']:.1f} s after the "
        f"invites; run took {res['wall_seconds']:.0f} s; JSON: {out['json_path']}"
    )


def print_sweep(out: dict[str, Any]) -> None:
    print()
    print(
        f"direct vs relay by topology: node A -> node B p50/p99 at {OFFERED_RATE:g} msg/s, "
        f"{out['params']['blocks']} x {out['params']['block_s']:g} s per path and topology, "
        f"{out['environment']['cpus']} CPUs"
    )
    print()
    print(
        "| topology | relay p50 ms | direct p50 ms | direct / relay p50 | relay p99 ms | direct p99 ms "
        "| target |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for row in out["sweep"]:
        relay, direct = (row["results"][path]["node_to_node"] for path in PATHS)
        target = row["targets"]["direct_vs_relay_p50_ratio"]
        print(
            f"| {row['topology']} | {fmt(relay.get('p50_ms'))} | {fmt(direct.get('p50_ms'))} | "
            f"**{fmt(target['value'])}x** | {fmt(relay.get('p99_ms'))} | {fmt(direct.get('p99_ms'))} | "
            f"{'MET' if target['met'] else 'NOT MET'} |"
        )
    print()
    print(f"target: direct p50 ≤ {TARGET_P50_RATIO:g} x relay p50; JSON: {out['json_path']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 s per path instead of 10 s (< 50 s)")
    ap.add_argument("--name", help="results name (default: direct_vs_relay or direct_vs_relay-quick)")
    ap.add_argument("--keep", action="store_true", help="keep the temp state dirs and logs")
    ap.add_argument(
        "--host-rtt-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="nodes reach the host through a TCP proxy adding this round-trip time "
        "(a host farther away than the peer)",
    )
    ap.add_argument(
        "--peer-rtt-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="node A of the direct pair reaches B's listener through a TCP proxy adding this "
        "round-trip time (B advertises the proxy as a forwarded port)",
    )
    ap.add_argument(
        "--sweep",
        action="store_true",
        help=f"run every topology of {len(SWEEP)} in turn (one machine, equally distant machines, "
        "a LAN pair with a distant host) and print one row each",
    )
    ap.add_argument("--delay-proxy", nargs=2, metavar=("TARGET", "ONE_WAY_MS"), help=argparse.SUPPRESS)
    ap.add_argument("--ready-file", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.delay_proxy:
        delay_proxy_main(args.delay_proxy[0], float(args.delay_proxy[1]), args.ready_file)
        return 0
    if min(args.host_rtt_ms, args.peer_rtt_ms) < 0:
        ap.error("round-trip times cannot be negative")
    if args.sweep and (args.host_rtt_ms or args.peer_rtt_ms):
        ap.error("--sweep runs its own topologies: drop --host-rtt-ms and --peer-rtt-ms")
    mode = "quick" if args.quick else "full"
    p = QUICK if args.quick else FULL
    topologies = SWEEP if args.sweep else [Topology(args.host_rtt_ms, args.peer_rtt_ms)]
    name = args.name
    if name is None:
        name = "direct_vs_relay" + ("-quick" if args.quick else "")
        if args.sweep:
            name += "-sweep"
        else:
            name += f"-rtt{args.host_rtt_ms:g}ms" if args.host_rtt_ms else ""
            name += f"-peer{args.peer_rtt_ms:g}ms" if args.peer_rtt_ms else ""
    workdir = Path(tempfile.mkdtemp(prefix="tmax-bench-dvr-"))
    env_info = environment()

    async def run_all() -> list[dict[str, Any]]:
        done = []
        for i, topo in enumerate(topologies):
            if args.sweep:
                print(f"[{mode}] topology {i + 1}/{len(topologies)}: {topo.label}", flush=True)
            (workdir / f"t{i}").mkdir()
            done.append(await run(p, mode, workdir / f"t{i}", topo))
        return done

    results = run_bounded(run_all(), p.hard_limit_s * len(topologies), workdir, "state dirs and logs")
    if isinstance(results, int):
        return results
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)

    rows = [
        {"topology": topo.label, **asdict(topo), "results": res, **assess(res)}
        for topo, res in zip(topologies, results, strict=True)
    ]
    out = {"benchmark": "direct_vs_relay", "mode": mode, "params": asdict(p), "environment": env_info}
    if args.sweep:
        print_sweep(write_results(name, {**out, "sweep": rows}))
    else:
        print_table(write_results(name, {**out, **rows[0]}))
    if args.keep:
        print(f"state dirs and logs kept in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
