"""Soak / chaos runner: a relay host and several nodes exchange messages
continuously while the runner SIGKILLs and restarts the host and random nodes
(and, in the NAT lab, drops packets on the routers' WAN side). At the end it
checks that every message sent was delivered exactly once.

One command::

    python -m tests.soak.soak --duration 60 [--natlab] [--nodes 4] [--loss 10] --json out.json

What runs: one ``tmax-host`` and ``--nodes`` ``tmax-node`` processes, every
node a friend of every other (invites through the local API), no peer
listeners, so every message goes through the relay. In ``--natlab`` mode
(root) the host sits on the lab's public segment and the nodes are spread over
the ``a``/``b`` (behind masquerading routers) and ``c`` namespaces.

Traffic: one sender thread per node calls ``msg_send`` (the real local API
client) to a random friend at ``--rate`` messages/s in total. A send whose call
fails (the node was just killed) is *unconfirmed*: it may or may not have been
persisted, so it is neither required nor forbidden to arrive, but it must not
arrive twice.

Chaos: every ``--kill-every`` seconds (jittered) the runner SIGKILLs the host
(``--host-share`` of the kills) or a random node, keeps it down for a moment,
and restarts it (the host on the same port, a node on the same state dir). In
the NAT lab it also adds short loss spikes on top of ``--loss``.

Verdict (after traffic stops, the runner waits up to ``--settle`` seconds for
every outbox to drain): ``sent`` confirmed messages; ``delivered`` found in
the recipient's inbox; ``duplicates`` (a body found more than once); ``lost``
(confirmed, not in the inbox, and not legitimately queued within its TTL);
``pending`` (still queued within TTL); ``crashes`` (a process that exited on
its own); ``tracebacks`` in any log; the delivery delay (sender outbox
``created_at_ms`` to the recipient's ``received_at_ms``). Exit status 0 only
when there is no loss, duplicate, pending message, crash or traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.harness import Host, Node, Proc, ProcGroup, wait_for
from tests.polling import poll
from tmax_core.client import AsyncJsonNodeClient, JsonNodeClient
from tmax_core.errors import MeshError

NODE_ENV = {
    # Quick recovery: a lost frame or a dead host costs seconds, not a minute.
    "TMAX_MESH_MESSAGES_RETRY_INITIAL": "200ms",
    "TMAX_MESH_MESSAGES_RETRY_MAX": "2s",
    "TMAX_MESH_RELAY_RECONNECT_MAX": "1s",
    # The ratelimit plugin stays on, with room for the backlog a restart releases.
    "TMAX_MESH_RATELIMIT_RATE": "1000",
    "TMAX_MESH_RATELIMIT_BURST": "5000",
    "TMAX_MESH_RATELIMIT_SOURCE_RATE": "1000",
    "TMAX_MESH_RATELIMIT_SOURCE_BURST": "5000",
}
INVITE_RATE = (1000.0, 5000)
BODY_RE = re.compile(r"^soak (\d+) (\d+)$")
NATLAB_SPOTS = ("a", "b", "c")


@dataclass
class SoakConfig:
    duration: float = 60.0
    natlab: bool = False
    nodes: int = 4
    loss: int = 0
    rate: float = 20.0
    kill_every: float = 6.0
    host_share: float = 0.34
    settle: float = 120.0
    seed: int | None = None
    workdir: str | None = None
    keep: bool = False
    json: str | None = None


@dataclass
class SentRecord:
    message_id: str
    sender: int
    recipient: int
    body: str
    created_at_ms: int


@dataclass
class State:
    """Everything the threads record; guarded by ``lock``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: list[SentRecord] = field(default_factory=list)
    unconfirmed: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # body -> (from, to, error)
    kills: Counter[str] = field(default_factory=Counter)
    restarts_ok: int = 0
    restart_failures: list[str] = field(default_factory=list)
    loss_spikes: int = 0
    expected_down: set[int] = field(default_factory=set)  # id() of procs the chaos thread stopped
    crashes: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


class Soak:
    def __init__(self, cfg: SoakConfig) -> None:
        if cfg.nodes < 2:
            raise SystemExit("soak: --nodes must be at least 2")
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.own_workdir = cfg.workdir is None
        self.root = Path(cfg.workdir or tempfile.mkdtemp(prefix="tmax-soak-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.procs = ProcGroup(self.root)
        self.lab: Any = None
        self.drops_before = 0  # packets the loss rules dropped before the last loss change
        self.host: Host | None = None
        self.nodes: list[Node] = []
        self.node_ids: list[str] = []
        self.state = State()
        self.stop_traffic = threading.Event()
        self.stop_chaos = threading.Event()
        self.stop_monitor = threading.Event()
        self.t0 = time.monotonic()

    # -- output ------------------------------------------------------------------------

    def say(self, text: str) -> None:
        line = f"[soak {time.monotonic() - self.t0:7.1f}s] {text}"
        print(line, flush=True)
        with self.state.lock:
            self.state.events.append(line)

    # -- set-up ------------------------------------------------------------------------

    def setup(self) -> None:
        cfg = self.cfg
        prefix_host = None
        if cfg.natlab:
            from tests.natlab.lab import PUB, NatLab, probe_lab

            reason = probe_lab()
            if reason:
                raise SystemExit(f"soak: --natlab: {reason}")
            self.lab = NatLab(prefix=f"tmnl{os.getpid()}").up()
            prefix_host = self.lab.prefix_for("pub")
            self.host = self.procs.host("host", "--listen", f"{PUB}:0", prefix=prefix_host)
        else:
            self.host = self.procs.host("host")
        url = self.host.url
        self.say(f"host up at {url} (workdir {self.root})")
        for i in range(cfg.nodes):
            prefix = self.lab.prefix_for(NATLAB_SPOTS[i % 3]) if self.lab else None
            node = self.procs.node(f"n{i}", "--relay", url, env=NODE_ENV, prefix=prefix)
            self.nodes.append(node)
            self.node_ids.append(node.node_id)
        where = f" in namespaces {[NATLAB_SPOTS[i % 3] for i in range(cfg.nodes)]}" if self.lab else ""
        self.say(f"{cfg.nodes} nodes up{where}")
        for node in self.nodes:
            wait_for(
                lambda n=node: self.relay_state(n) == "connected",
                30,
                0.1,
                what=f"{node.state_dir.name} on relay",
            )
        # Everyone befriends everyone, through the local API (the CLI would cost a process per call).
        for i in range(cfg.nodes):
            for j in range(i + 1, cfg.nodes):
                with self.client(i) as ci, self.client(j) as cj:
                    token = ci.invite_create(rate_limit=INVITE_RATE)["token"]
                    cj.invite_accept(token, alias=f"n{i}")
                wait_for(
                    lambda i=i, j=j: any(f["node_id"] == self.node_ids[j] for f in self.friends(i)),
                    30,
                    0.1,
                    what=f"n{j}'s first contact to reach n{i}",
                )
        self.say(f"{cfg.nodes * (cfg.nodes - 1) // 2} friendships made")
        if self.lab and cfg.loss:
            self.set_loss(cfg.loss)
            self.say(f"WAN loss {cfg.loss}% on both routers")

    def client(self, i: int, timeout: float = 10.0) -> JsonNodeClient:
        return JsonNodeClient(self.nodes[i].state_dir / "node.sock", timeout=timeout)

    def friends(self, i: int) -> list[dict]:
        with self.client(i) as c:
            return c.friends_list()

    def relay_state(self, node: Node) -> str:
        try:
            with JsonNodeClient(node.state_dir / "node.sock", timeout=5) as c:
                status = c.node_status()
        except MeshError:
            return "unreachable"
        return next((t["state"] for t in status["transports"] if t["name"] == "relay"), "none")

    # -- traffic -----------------------------------------------------------------------

    def sender(self, i: int) -> None:
        rng = random.Random(self.rng.random() + i)
        interval = self.cfg.nodes / self.cfg.rate
        others = [j for j in range(self.cfg.nodes) if j != i]
        client: JsonNodeClient | None = None
        seq = 0
        next_at = time.monotonic()
        try:
            while not self.stop_traffic.is_set():
                next_at += interval * rng.uniform(0.5, 1.5)
                delay = next_at - time.monotonic()
                if delay > 0 and self.stop_traffic.wait(delay):
                    break
                if delay < -5:  # fell far behind (node down): do not burst to catch up
                    next_at = time.monotonic()
                j = rng.choice(others)
                seq += 1
                body = f"soak {i} {seq}"
                try:
                    if client is None:
                        client = self.client(i, timeout=5.0)
                    sent = client.msg_send(self.node_ids[j], body.encode())
                except MeshError as err:
                    with self.state.lock:
                        self.state.unconfirmed[body] = (i, j, f"{err.code}: {err}")
                    if client is not None:
                        client.close()
                        client = None
                    continue
                record = SentRecord(sent["message_id"], i, j, body, sent["created_at_ms"])
                with self.state.lock:
                    self.state.sent.append(record)
        finally:
            if client is not None:
                client.close()

    # -- chaos -------------------------------------------------------------------------

    def chaos(self) -> None:
        cfg = self.cfg
        assert self.host is not None
        while not self.stop_chaos.wait(cfg.kill_every * self.rng.uniform(0.6, 1.4)):
            if self.lab and self.rng.random() < 0.25:
                self.loss_spike()
                continue
            forced = sum(self.state.kills.values()) >= 1 and not self.state.kills["host"]
            if forced or self.rng.random() < cfg.host_share:  # the host dies at least once
                victim: Proc = self.host
                name = "host"
            else:
                k = self.rng.randrange(cfg.nodes)
                victim, name = self.nodes[k], f"n{k}"
            with self.state.lock:
                self.state.expected_down.add(id(victim))
            victim.kill()
            with self.state.lock:
                self.state.kills["host" if victim is self.host else "node"] += 1
            down = self.rng.uniform(0.2, 2.5)
            self.say(f"SIGKILL {name}; down for {down:.1f}s")
            time.sleep(down)
            self.restart(victim, name)

    def restart(self, victim: Proc, name: str) -> None:
        try:
            if isinstance(victim, Host):
                victim.restart_same_port()
            else:
                old = victim.ready.get("node_id")
                victim.start()
                if victim.ready.get("node_id") != old:
                    raise AssertionError(f"{name} came back as {victim.ready.get('node_id')}, was {old}")
        except Exception as err:  # reported, and the run fails
            with self.state.lock:
                self.state.restart_failures.append(f"{name}: {err}")
            self.say(f"RESTART FAILED {name}: {err}")
            return
        finally:
            with self.state.lock:
                self.state.expected_down.discard(id(victim))
        with self.state.lock:
            self.state.restarts_ok += 1

    def set_loss(self, percent: int) -> None:
        """Change the WAN loss, keeping the count of packets dropped so far (a change resets it)."""
        self.drops_before += self.lab.loss_drops()
        self.lab.set_wan_loss(percent)

    def loss_spike(self) -> None:
        base = self.cfg.loss
        spike = min(60, max(base * 3, 30))
        self.set_loss(spike)
        length = self.rng.uniform(1.0, 4.0)
        self.say(f"loss spike {spike}% for {length:.1f}s")
        time.sleep(length)
        self.set_loss(base)
        with self.state.lock:
            self.state.loss_spikes += 1

    def monitor(self) -> None:
        """A process that exits without the chaos thread having killed it is a crash."""
        procs: list[tuple[str, Proc]] = [
            ("host", self.host),
            *((f"n{i}", n) for i, n in enumerate(self.nodes)),
        ]
        while not self.stop_monitor.wait(0.25):
            for name, proc in procs:
                with self.state.lock:
                    if id(proc) in self.state.expected_down:
                        continue
                    code = proc.proc.poll() if proc.proc is not None else None
                    if code is None:
                        continue
                    self.state.expected_down.add(id(proc))
                    self.state.crashes.append(f"{name} exited with {code}")
                self.say(f"CRASH: {name} exited on its own with {code}; log tail:\n{proc.log()[-1500:]}")
                self.restart(proc, name)

    # -- the run -----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        self.setup()
        monitor = threading.Thread(target=self.monitor, name="monitor", daemon=True)
        monitor.start()
        senders = [
            threading.Thread(target=self.sender, args=(i,), name=f"send-n{i}") for i in range(cfg.nodes)
        ]
        chaos = threading.Thread(target=self.chaos, name="chaos")
        traffic_started = time.monotonic()
        self.say(f"traffic for {cfg.duration:.0f}s at ~{cfg.rate:g} msg/s, a kill every ~{cfg.kill_every:g}s")
        for t in [*senders, chaos]:
            t.start()
        deadline = traffic_started + cfg.duration
        while time.monotonic() < deadline:
            time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
            with self.state.lock:
                n, k = len(self.state.sent), sum(self.state.kills.values())
            self.say(f"{n} sent, {k} kills")
        self.stop_chaos.set()
        chaos.join()
        self.stop_traffic.set()
        for t in senders:
            t.join()
        traffic_s = time.monotonic() - traffic_started
        self.say("traffic stopped; waiting for the outboxes to drain")
        settle_started = time.monotonic()
        drained = self.wait_drained(cfg.settle)
        settle_s = time.monotonic() - settle_started
        self.stop_monitor.set()
        monitor.join()
        report = self.verify()
        report.update(traffic_s=round(traffic_s, 1), settle_s=round(settle_s, 1), drained=drained)
        if self.lab is not None:
            report["loss_drops"] = self.drops_before + self.lab.loss_drops()
        report["ok"] = self.ok(report)
        return report

    def outbox_open(self, i: int) -> int:
        try:
            with self.client(i, timeout=5) as c:
                counts = c.node_status()["outbox"]
        except MeshError:
            return -1
        return counts.get("queued", 0) + counts.get("sent", 0)

    def wait_drained(self, timeout: float) -> bool:
        open_counts: list[int] = []
        last_report = 0.0

        def drained() -> bool:
            nonlocal open_counts, last_report
            open_counts = [self.outbox_open(i) for i in range(self.cfg.nodes)]
            if all(c == 0 for c in open_counts):
                return True
            if time.monotonic() - last_report > 5:
                last_report = time.monotonic()
                self.say(f"open outbox entries per node: {open_counts}")
            return False

        if poll(drained, timeout, 0.25):
            return True
        self.say(f"not drained after {timeout:.0f}s: open per node {open_counts}")
        return False

    # -- verdict -----------------------------------------------------------------------

    def verify(self) -> dict[str, Any]:
        cfg = self.cfg
        state = self.state
        inboxes: list[list[dict]] = []
        for i in range(cfg.nodes):
            with self.client(i, timeout=60) as c:
                inboxes.append(c.inbox_list())
        by_body: dict[str, list[dict]] = {}
        unexpected: list[str] = []
        for i, inbox in enumerate(inboxes):
            ids = Counter(m["message_id"] for m in inbox)
            for mid, n in ids.items():
                if n > 1:
                    unexpected.append(f"n{i}: message id {mid} listed {n} times")
            for m in inbox:
                by_body.setdefault(m["body"], []).append({**m, "at": i})
        sent = {r.body: r for r in state.sent}
        duplicates = sum(len(v) - 1 for v in by_body.values() if len(v) > 1)
        delays: list[float] = []
        missing: list[SentRecord] = []
        misrouted: list[str] = []
        for body, rec in sent.items():
            got = by_body.get(body)
            if not got:
                missing.append(rec)
                continue
            first = got[0]
            if first["at"] != rec.recipient or first["message_id"] != rec.message_id:
                misrouted.append(f"{body}: at n{first['at']} id {first['message_id']}, sent {rec}")
            if first["from_node_id"] != self.node_ids[rec.sender]:
                misrouted.append(f"{body}: from {first['from_node_id']}, sent by n{rec.sender}")
            delays.append(first["received_at_ms"] - rec.created_at_ms)
        unconfirmed_delivered = 0
        for body in by_body:
            if body in sent:
                continue
            if body in state.unconfirmed:
                unconfirmed_delivered += 1
            else:
                unexpected.append(f"a message nobody sent: {body!r}")
        # A confirmed message not in the inbox is lost unless its sender still holds it within TTL.
        pending, lost, lost_detail = 0, 0, []
        statuses = self.statuses(missing)
        now = time.time() * 1000
        for rec in missing:
            st = statuses.get(rec.message_id, {"status": "unknown", "error": "no status"})
            if st["status"] in ("queued", "sent") and now < rec.created_at_ms + 24 * 3600 * 1000:
                pending += 1
            else:
                lost += 1
            if len(lost_detail) < 20:
                lost_detail.append(
                    f"{rec.body} n{rec.sender}->n{rec.recipient}: {st['status']} {st.get('error')}"
                )
        tracebacks = {}
        for proc in [self.host, *self.nodes]:
            assert proc is not None
            text = proc.log_path.read_text(errors="replace") if proc.log_path.exists() else ""
            n = text.count("Traceback (most recent call last)")
            if n:
                at = text.index("Traceback (most recent call last)")
                tracebacks[proc.log_path.name] = {"count": n, "first": text[max(0, at - 300) : at + 1500]}
        kills = dict(state.kills)
        return {
            "duration_s": cfg.duration,
            "natlab": cfg.natlab,
            "nodes": cfg.nodes,
            "loss_percent": cfg.loss if cfg.natlab else 0,
            "rate_msgs_per_s": cfg.rate,
            "seed": cfg.seed,
            "messages_sent": len(sent),
            "delivered": len(sent) - len(missing),
            "duplicates": duplicates,
            "lost": lost,
            "pending": pending,
            "unconfirmed_sends": len(state.unconfirmed),
            "unconfirmed_delivered": unconfirmed_delivered,
            "misrouted": misrouted[:20],
            "unexpected": unexpected[:20],
            "kills": {
                "host": kills.get("host", 0),
                "node": kills.get("node", 0),
                "total": sum(kills.values()),
            },
            "kills_survived": state.restarts_ok,
            "restart_failures": state.restart_failures,
            "loss_spikes": state.loss_spikes,
            "crashes": state.crashes,
            "tracebacks": tracebacks,
            "delay_ms": {
                "p50": percentile(delays, 50),
                "p90": percentile(delays, 90),
                "p99": percentile(delays, 99),
                "max": max(delays) if delays else None,
            },
            "lost_detail": lost_detail,
            "workdir": str(self.root),
        }

    def statuses(self, records: list[SentRecord]) -> dict[str, dict]:
        """Sender-side status of each record, asked concurrently over the async client."""

        async def ask() -> dict[str, dict]:
            out: dict[str, dict] = {}
            by_sender: dict[int, list[SentRecord]] = {}
            for r in records:
                by_sender.setdefault(r.sender, []).append(r)
            for i, recs in by_sender.items():
                async with AsyncJsonNodeClient(self.nodes[i].state_dir / "node.sock", timeout=30) as c:
                    answers = await asyncio.gather(
                        *(c.msg_status(r.message_id) for r in recs), return_exceptions=True
                    )
                for r, a in zip(recs, answers, strict=True):
                    out[r.message_id] = a if isinstance(a, dict) else {"status": "unknown", "error": str(a)}
            return out

        return asyncio.run(ask()) if records else {}

    @staticmethod
    def ok(r: dict[str, Any]) -> bool:
        return (
            r["drained"]
            and r["lost"] == 0
            and r["pending"] == 0
            and r["duplicates"] == 0
            and not r["misrouted"]
            and not r["unexpected"]
            and not r["crashes"]
            and not r["restart_failures"]
            and not r["tracebacks"]
            and r["messages_sent"] > 0
        )

    def close(self, failed: bool) -> None:
        self.stop_traffic.set()
        self.stop_chaos.set()
        self.stop_monitor.set()
        self.procs.stop_all()
        if self.lab is not None:
            self.lab.down()
        if self.own_workdir and not failed and not self.cfg.keep:
            shutil.rmtree(self.root, ignore_errors=True)


def summary(r: dict[str, Any]) -> str:
    d = r["delay_ms"]
    k = r["kills"]
    where = f"natlab, {r['loss_percent']}% WAN loss" if r["natlab"] else "loopback"
    unconfirmed = f"{r['unconfirmed_sends']} ({r['unconfirmed_delivered']} of them delivered once)"
    kills = f"{k['total']} (host {k['host']}, node {k['node']}); survived {r['kills_survived']}"
    n_tb = sum(t["count"] for t in r["tracebacks"].values())
    lines = [
        f"soak: {r['traffic_s']}s of traffic, {r['nodes']} nodes + host ({where}), settle {r['settle_s']}s",
        f"  messages sent      {r['messages_sent']}",
        f"  delivered          {r['delivered']}",
        f"  duplicates         {r['duplicates']}",
        f"  lost               {r['lost']}",
        f"  pending (in TTL)   {r['pending']}",
        f"  unconfirmed sends  {unconfirmed}",
        f"  kills              {kills}",
        f"  crashes            {len(r['crashes'])}; tracebacks in logs {n_tb}",
        f"  delay ms           p50 {d['p50']}  p90 {d['p90']}  p99 {d['p99']}  max {d['max']}",
    ]
    if "loss_drops" in r:
        lines.append(f"  packets dropped    {r['loss_drops']} (loss spikes {r['loss_spikes']})")
    lines.append(f"  verdict            {'OK' if r['ok'] else 'FAILED'}")
    for key in ("crashes", "restart_failures", "misrouted", "unexpected", "lost_detail"):
        for item in r[key][:10]:
            lines.append(f"  {key}: {item}")
    for name, tb in r["tracebacks"].items():
        lines.append(f"  traceback in {name} ({tb['count']}x):\n{tb['first']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> SoakConfig:
    p = argparse.ArgumentParser(prog="python -m tests.soak.soak", description=__doc__.split("\n\n")[0])
    d = SoakConfig()
    p.add_argument("--duration", type=float, default=d.duration, help="seconds of traffic and chaos")
    p.add_argument("--natlab", action="store_true", help="run inside the NAT lab (root, ip, nft)")
    p.add_argument("--nodes", type=int, default=d.nodes)
    p.add_argument("--loss", type=int, default=d.loss, help="WAN packet loss percent (with --natlab)")
    p.add_argument("--rate", type=float, default=d.rate, help="messages per second over all nodes")
    p.add_argument("--kill-every", type=float, default=d.kill_every, help="mean seconds between faults")
    p.add_argument("--host-share", type=float, default=d.host_share, help="share of kills aimed at the host")
    p.add_argument(
        "--settle", type=float, default=d.settle, help="max seconds to wait for delivery at the end"
    )
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--workdir", help="state dirs and logs here (default: a temp dir, removed if OK)")
    p.add_argument("--keep", action="store_true", help="keep the temp workdir even when OK")
    p.add_argument("--json", help="write the report here")
    a = p.parse_args(argv)
    if a.loss and not a.natlab:
        p.error("--loss needs --natlab (packet loss is injected on the lab's routers)")
    if not 0 <= a.loss < 100:
        p.error("--loss must be in [0, 100)")
    return SoakConfig(**{k: getattr(a, k) for k in asdict(d)})


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    if cfg.seed is None:
        cfg.seed = random.randrange(2**31)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    soak = Soak(cfg)
    report: dict[str, Any] | None = None
    try:
        report = soak.run()
    except KeyboardInterrupt:
        print("soak: interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        soak.close(failed=report is None or not report["ok"])
    print(summary(report), flush=True)
    if cfg.json:
        Path(cfg.json).write_text(json.dumps(report, indent=2) + "\n")
    if not report["ok"]:
        print(f"soak: FAILED; logs and state dirs kept in {soak.root}", file=sys.stderr)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
