"""Relay cluster benchmark (issue 15): relaying between nodes on two members of
a ``tmax-host --cluster`` (the frame crosses NATS) against relaying between
nodes on the same member, measured in the same invocation.

Run from the checkout (see bench/README.md)::

    .venv/bin/python bench/relay_cluster.py            # < 2 minutes
    .venv/bin/python bench/relay_cluster.py --quick    # < 45 s
    .venv/bin/python bench/relay_cluster.py --batch 8  # max blocks: 8 envelopes per RelaySendBatch

Processes (all on 127.0.0.1): one ``nats-server -js`` (the venv's, from the
``cluster`` extra), two members (the real ``tmax-host`` console script,
``--cluster``, per-connection rate limits lifted), and this script, which
registers three nodes through ``HostSession`` (challenge, signed Register):
the sender S and the receiver R1 on member 1, the receiver R2 on member 2.
S sends sealed 256 B envelopes (sealed before timing) to R1 ("same member")
or to R2 ("cross member"); receivers do not ack, so one frame per message
crosses the relay. Phases alternate same/cross in ABBA blocks:

* max: closed loop, at most ``WINDOW`` messages in flight (sent, not yet
  received), ``--messages`` per block;
* p50: open loop at 1,000 msg/s, one-way latency (send -> receive, one clock);
* relay CPU per message: user+system CPU of both members and nats-server
  (from /proc) during the max blocks, divided by the messages (the bench
  client's own is shown beside it);
* envelopes per gRPC message the receiver reads in the max blocks (how much
  the receiving member coalesces).

Prints a table (target: cross-member throughput >= 0.7x same-member) and
writes ``bench/results/relay_cluster.json``. Every wait is bounded, the whole
run has a hard limit, and the child processes are stopped on every exit path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common
from relay import seal_sized

from tmax_core.identity import NodeIdentity
from tmax_mesh_relay.client import HostSession
from tmax_mesh_relay.proto import host_pb2

WINDOW = 64
RATE = 1000.0
SIZE = 256
TARGET = 0.7


def start(argv: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


async def wait_file(path: Path, proc: subprocess.Popen, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + common.READY_TIMEOUT_S
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        await asyncio.sleep(0.05)
    return json.loads(path.read_text())


class Receiver:
    """Reads Deliver frames (also inside Frames, and DeliverBatch); records each
    Deliver's arrival time by message id, and counts every envelope and every
    gRPC message (``reads``)."""

    def __init__(self, session: HostSession) -> None:
        self.session = session
        self.count = 0
        self.reads = 0
        self.arrived: dict[bytes, int] = {}
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while (frame := await self.session.read()) is not None:
            t = time.monotonic_ns()
            self.reads += 1
            # Delivers that waited while this stream was busy come as one Frames message.
            for inner in frame.frames.frames if frame.WhichOneof("frame") == "frames" else (frame,):
                kind = inner.WhichOneof("frame")
                if kind == "deliver":
                    self.arrived[inner.deliver.message_id] = t
                    self.count += 1
                elif kind == "deliver_batch":
                    self.count += len(inner.deliver_batch.envelopes)
            self.changed.set()


async def register(listen: str, url: str, identity: NodeIdentity) -> HostSession:
    session = await HostSession.open(listen, url=url)
    await session.register(identity, [], [])
    return session


def frames_for(sender: NodeIdentity, to: NodeIdentity, n: int) -> list[tuple[bytes, host_pb2.NodeFrame]]:
    from tmax_core import envelope as env

    out = []
    for _ in range(n):
        data = seal_sized(sender, to.node_id, to.public_key, SIZE)
        mid = env.parse(data, len(data)).message_id
        out.append((mid, host_pb2.NodeFrame(relay_send=host_pb2.RelaySend(to=to.node_id, envelope=data))))
    return out


def batches_of(to: NodeIdentity, frames: list[tuple[bytes, host_pb2.NodeFrame]], k: int) -> list:
    """The envelopes of ``frames`` as RelaySendBatch frames of ``k`` (as ``frames``'s entries)."""
    envelopes = [frame.relay_send.envelope for _, frame in frames]
    out = []
    for j in range(0, len(envelopes) - k + 1, k):
        batch = host_pb2.RelaySendBatch(
            to=to.node_id, batch_id=j.to_bytes(4, "big"), envelopes=envelopes[j : j + k]
        )
        out.append((b"", host_pb2.NodeFrame(relay_send_batch=batch)))
    return out


async def closed_loop(s: HostSession, r: Receiver, frames: list, n: int, per_frame: int = 1) -> float:
    """``n`` messages (``per_frame`` in each frame), at most ``WINDOW`` in flight: msg/s."""
    base = r.count
    t0 = time.monotonic()
    for i in range(n // per_frame):
        while i * per_frame - (r.count - base) >= WINDOW:
            r.changed.clear()
            await asyncio.wait_for(r.changed.wait(), 10)
        await s.write(frames[i % len(frames)][1])
    n = n // per_frame * per_frame
    while r.count - base < n:
        r.changed.clear()
        await asyncio.wait_for(r.changed.wait(), 10)
    return n / (time.monotonic() - t0)


async def open_loop(s: HostSession, r: Receiver, frames: list, seconds: float) -> list[float]:
    n = int(RATE * seconds)
    sent: dict[bytes, int] = {}
    t0 = time.monotonic()
    for i in range(n):
        delay = t0 + i / RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        mid, frame = frames[i]
        r.arrived.pop(mid, None)
        sent[mid] = time.monotonic_ns()
        await s.write(frame)
    deadline = time.monotonic() + 10
    while any(mid not in r.arrived for mid in sent) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return [(r.arrived[m] - t) / 1e9 for m, t in sent.items() if m in r.arrived]


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    procs: list[subprocess.Popen] = []
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            nats_port = sock.getsockname()[1]
        (work / "nats.conf").write_text(
            f'listen: 127.0.0.1:{nats_port}\nmax_payload: 2MB\njetstream {{ store_dir: "{work}/js" }}\n'
        )
        nats = start([str(common.BIN / "nats-server"), "-c", str(work / "nats.conf")], work / "nats.log")
        procs.append(nats)
        members = []
        for i in (1, 2):
            ready = work / f"m{i}.json"
            argv = [str(common.BIN / "tmax-host"), "--listen", "127.0.0.1:0", "--ready-file", str(ready)]
            argv += ["--cluster", f"nats://127.0.0.1:{nats_port}", "--rate", "1e6", "--burst", "1000000"]
            proc = start(argv, work / f"m{i}.log")
            procs.append(proc)
            members.append(await wait_file(ready, proc, f"member {i}"))
        url = [f"grpc://{m['listen']}" for m in members]
        s_id, r1_id, r2_id = NodeIdentity.generate(), NodeIdentity.generate(), NodeIdentity.generate()
        sender = await register(members[0]["listen"], url[0], s_id)
        r1 = Receiver(await register(members[0]["listen"], url[0], r1_id))
        r2 = Receiver(await register(members[1]["listen"], url[1], r2_id))
        pool = int(RATE * args.seconds)
        frames = {"same": (r1, frames_for(s_id, r1_id, pool)), "cross": (r2, frames_for(s_id, r2_id, pool))}
        k = args.batch
        batched = {
            kind: batches_of(to, fr, k) if k > 1 else fr
            for (kind, (_, fr)), to in zip(frames.items(), (r1_id, r2_id), strict=True)
        }
        # The bench client's own CPU is shown beside the relay's, not counted in it.
        pids = [p.pid for p in procs] + [os.getpid()]
        names = ["nats-server", "member 1", "member 2", "bench client"]
        results: dict[str, dict[str, list[Any]]] = {
            k: {"rate": [], "cpu": [], "lat": [], "split": [], "per_read": []} for k in frames
        }
        for kind in ("same", "cross", "cross", "same"):  # ABBA
            receiver, fr = frames[kind]
            # The max phase sends K envelopes per RelaySendBatch (--batch); latency, singles.
            await closed_loop(sender, receiver, batched[kind], WINDOW * 4, k)  # warm up
            cpu0 = [common.cpu_seconds(p) or 0.0 for p in pids]
            reads0 = receiver.reads
            rate = await closed_loop(sender, receiver, batched[kind], args.messages, k)
            cpu1 = [common.cpu_seconds(p) or 0.0 for p in pids]
            results[kind]["per_read"].append(args.messages / max(1, receiver.reads - reads0))
            per = [(b - a) / args.messages * 1e6 for a, b in zip(cpu0, cpu1, strict=True)]
            results[kind]["rate"].append(rate)
            results[kind]["cpu"].append(sum(per[:-1]))
            results[kind]["split"].append(dict(zip(names, per, strict=True)))
            results[kind]["lat"] += await open_loop(sender, receiver, fr, args.seconds)
        for session in (sender, r1.session, r2.session):
            await session.close()
    finally:
        for proc in reversed(procs):
            stop(proc)
    out: dict[str, Any] = {
        "environment": common.environment(),
        "messages": args.messages,
        "batch": args.batch,
    }
    for kind, r in results.items():
        out[kind] = {
            "throughput_msg_s": common.median(r["rate"]),
            "relay_cpu_us_per_msg": common.median(r["cpu"]),
            "cpu_us_per_msg_by_process": {
                name: common.median([s[name] for s in r["split"]]) for name in r["split"][0]
            },
            "latency_at_1000_msg_s": common.summarize_ms(r["lat"]),
            # How well the receiving member coalesces (Frames, DeliverBatch) in the max blocks.
            "envelopes_per_grpc_message": common.median(r["per_read"]),
        }
    out["cross_over_same_throughput"] = common.ratio(
        out["cross"]["throughput_msg_s"], out["same"]["throughput_msg_s"]
    )
    out["target_met"] = (out["cross_over_same_throughput"] or 0) >= TARGET
    return out


def print_table(out: dict[str, Any]) -> None:
    if out["batch"] > 1:
        print(f"max phases: {out['batch']} envelopes per RelaySendBatch; latency phases: one per frame")
    print(f"{'':28}{'same member':>14}{'cross member':>14}{'ratio':>8}")
    rows = [
        ("throughput (msg/s, max)", "throughput_msg_s", None),
        ("p50 at 1,000 msg/s (ms)", "latency_at_1000_msg_s", "p50_ms"),
        ("p99 at 1,000 msg/s (ms)", "latency_at_1000_msg_s", "p99_ms"),
        ("relay CPU (µs/msg)", "relay_cpu_us_per_msg", None),
        ("envelopes per gRPC message", "envelopes_per_grpc_message", None),
    ]
    for label, key, sub in rows:
        same, cross = out["same"][key], out["cross"][key]
        if sub:
            same, cross = same.get(sub), cross.get(sub)
        ratio = common.fmt(common.ratio(cross, same))
        print(f"{label:28}{common.fmt(same):>14}{common.fmt(cross):>14}{ratio:>8}")
    for name in out["same"]["cpu_us_per_msg_by_process"]:
        same = out["same"]["cpu_us_per_msg_by_process"][name]
        cross = out["cross"]["cpu_us_per_msg_by_process"][name]
        label = "  bench client (not relay)" if name == "bench client" else f"  of which {name}"
        print(f"{label:28}{common.fmt(same):>14}{common.fmt(cross):>14}")
    verdict = "MET" if out["target_met"] else "NOT MET"
    print(f"target: cross-member throughput >= {TARGET}x same-member: {verdict}")
    print(f"results: {out['json_path']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer messages per block")
    ap.add_argument("--messages", type=int, help="messages per max block (default 20,000; 5,000 quick)")
    ap.add_argument(
        "--batch",
        type=int,
        default=1,
        metavar="K",
        help="in the max phases, send K envelopes per RelaySendBatch (default 1: one RelaySend each)",
    )
    args = ap.parse_args(argv)
    if not 1 <= args.batch <= WINDOW:
        ap.error(f"--batch must be 1 to {WINDOW} (the envelopes in flight)")
    args.messages = args.messages or (5_000 if args.quick else 20_000)
    args.seconds = 1.5 if args.quick else 3.0
    work = Path(tempfile.mkdtemp(prefix="relay-cluster-"))
    out = common.run_bounded(run(args, work), 40.0 if args.quick else 115.0, work, "logs")
    if isinstance(out, int):
        return out
    name = (
        "relay_cluster" + (f"-batch{args.batch}" if args.batch > 1 else "") + ("-quick" if args.quick else "")
    )
    common.write_results(name, out)
    print_table(out)
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
