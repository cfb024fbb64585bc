"""Relay benchmark: ``tmax-host`` against a bare ``grpc.aio`` forwarder of the
same shape, measured in the same invocation.

Run from the checkout (see bench/README.md)::

    .venv/bin/python bench/relay.py            # full run, < 3 minutes
    .venv/bin/python bench/relay.py --quick    # < 45 s

Processes (all on 127.0.0.1, each its own process):

* **tmax-host**, the real console script (``--listen 127.0.0.1:0
  --ready-file``), its per-connection frame rate lifted (``--rate``/``--burst``)
  so the relay path is measured, not its pacing;
* **bare forwarder**: a minimal ``grpc.aio`` server written here (this file,
  ``--bare-server``): one bidi stream per node, a challenge → id → ok
  handshake without crypto, then every frame ``to(20) | message_id(16) |
  envelope`` is written as ``from(20) | message_id(16) | envelope`` into the
  recipient's stream, straight from the sender's task under a per-recipient
  lock (the shape DESIGN §10 recommends), with tmax-host's server options;
* a **sender** and a **receiver** client process (this file, ``--client``),
  each registered on both servers: on tmax-host through ``HostSession``
  (real challenge / signed Register), on the bare forwarder with its
  handshake. The sender sends ``RelaySend`` frames holding envelopes sealed
  with ``tmax_core.envelope.seal`` to the receiver (sealed before timing: a
  pool of distinct envelopes per size, sent round-robin); the bare forwarder
  gets the same envelope bytes. The receiver does **not** answer with acks:
  one frame per message crosses each relay, so the figure is the forwarding
  path alone (with acks a relay carries two frames per message).

Per envelope size (256 B and 4 KiB, the whole serialized envelope) and per
relay, in blocks that alternate between the two relays (ABBA):

* a fixed offered rate, 1,000 msg/s, open loop (each send on schedule);
* max: closed loop, the sender writes as fast as it may with at most
  ``--window`` (64) messages in flight (sent, not yet received: the receiver
  publishes its arrival count in a small shared mmap'd file), like a sender
  with a bounded outbox. Without a window the sender would fill gRPC's flow
  control buffers (megabytes) and the latency "at max" would only say how
  long the phase ran.

One-way latency = sender's ``time.monotonic_ns()`` just before the write →
receiver's ``time.monotonic_ns()`` just after the read. ``CLOCK_MONOTONIC`` is
system-wide on Linux, so two processes on this machine share it. A relay
forwards one sender's frames in order, so the i-th arrival is the i-th send;
each arrival's message id is checked against the send's.

``--batch K`` (issue 17): in the max phases the sender hands tmax-host ``K``
envelopes per ``RelaySendBatch`` (as a node's outbox does with the messages
waiting for one friend) and the host delivers each as one ``DeliverBatch``;
the bare forwarder still gets one frame per message (it has no batches), and
the 1,000 msg/s phases stay one message per frame (at that rate a node's
messages do not wait for each other).

Prints a table (tmax-host, bare forwarder, ratio, targets: throughput ≥ 0.8x
bare, p50 ≤ 1.25x bare) and writes ``bench/results/relay.json`` (or
``relay-quick.json``). Every wait is bounded, the whole run has a hard limit,
and the child processes are stopped on every exit path.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import mmap
import os
import shlex
import sys
import time
from array import array
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    BIN,
    Child,
    CpuWindow,
    PhaseProfiler,
    Worker,
    fmt,
    median,
    ratio,
    run_and_report,
    serve_until_signalled,
    summarize_ms,
)

SIZES = (256, 4096)  # serialized envelope bytes
OFFERED_RATE = 1000.0  # msg/s
TARGET_TPUT_RATIO = 0.8  # tmax-host throughput / bare throughput, at least
TARGET_P50_RATIO = 1.25  # tmax-host p50 / bare p50, at most
RELAYS = ("host", "bare")
LABELS = {"host": "tmax-host", "bare": "bare forwarder"}
BARE_SERVICE = "tmax_bench.Relay"
BARE_CONNECT = f"/{BARE_SERVICE}/Connect"
NODE_ID_LEN = 20
MID_LEN = 16
# Lift the per-connection frame rate: measure the relay path, not its pacing.
HOST_FLAGS = ["--rate", "1000000", "--burst", "1000000"]
BUSY_MACHINE_CORES = 0.5  # other processes' average load above which the table warns
GC_FREEZE_EVERY = 1000  # as tmax-host: freeze long-lived objects after registration waves


@dataclass(frozen=True)
class Params:
    blocks: int  # blocks per relay and size (ABBA order)
    rate_s: float  # seconds at OFFERED_RATE per block
    max_s: float  # seconds at max per block
    warm_s: float  # seconds at max before each block, not measured
    window: int  # max phase: messages in flight (sent, not yet received) at most
    pool: int  # distinct sealed envelopes per size
    collect_timeout_s: float  # wait for the last arrivals of a phase
    hard_limit_s: float  # the whole run is cancelled (children stopped) after this


FULL = Params(
    blocks=4,
    rate_s=2.5,
    max_s=2.0,
    warm_s=0.3,
    window=64,
    pool=1000,
    collect_timeout_s=15.0,
    hard_limit_s=175.0,
)
QUICK = Params(
    blocks=2, rate_s=1.0, max_s=1.0, warm_s=0.2, window=64, pool=400, collect_timeout_s=6.0, hard_limit_s=43.0
)
SLOTS = {"host": 0, "bare": 1}  # per-relay arrival counters in the shared progress file


# --------------------------------------------------------------------------- bare forwarder


def bare_server_options() -> list[tuple[str, Any]]:
    """tmax-host's own gRPC server options (keepalive policy, limits, reuseport)."""
    from tmax_mesh_relay.host import default_settings, server_options

    return server_options(default_settings())


def bare_relay_main(ready_file: str, listen: str = "127.0.0.1:0") -> None:
    """Child-process mode: the bare forwarder (raw bytes, no protobuf, no crypto)."""
    import grpc

    async def main() -> None:
        routes: dict[bytes, tuple[Any, asyncio.Lock]] = {}
        registrations = 0

        async def connect(request_iterator: Any, context: Any) -> None:
            nonlocal registrations
            await context.write(os.urandom(32))  # "challenge"
            first = await context.read()
            if first is grpc.aio.EOF or len(first) != NODE_ID_LEN:
                return
            node_id = bytes(first)
            me = (context, asyncio.Lock())
            routes[node_id] = me
            registrations += 1
            if registrations % GC_FREEZE_EVERY == 0:
                gc.freeze()
            await context.write(b"\x01")  # "registered"
            try:
                while True:
                    data = await context.read()
                    if data is grpc.aio.EOF:
                        return
                    dest = routes.get(data[:NODE_ID_LEN])
                    if dest is None:
                        continue
                    out = node_id + data[NODE_ID_LEN:]
                    try:
                        async with dest[1]:
                            await dest[0].write(out)
                    except Exception:
                        continue
            finally:
                if routes.get(node_id) is me:
                    del routes[node_id]

        server = grpc.aio.server(options=bare_server_options())
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    BARE_SERVICE, {"Connect": grpc.stream_stream_rpc_method_handler(connect)}
                ),
            )
        )
        port = server.add_insecure_port(listen)
        await server.start()
        host = listen.rpartition(":")[0]
        await serve_until_signalled(ready_file, {"pid": os.getpid(), "listen": f"{host}:{port}"})
        await server.stop(grace=0.5)

    asyncio.run(main())


class BareSession:
    """A client stream on the bare forwarder (the counterpart of ``HostSession``)."""

    def __init__(self, channel: Any, call: Any) -> None:
        self.channel = channel
        self.call = call
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, target: str, node_id: bytes, timeout: float = 10.0) -> BareSession:
        import grpc

        from tmax_mesh_relay.client import channel_options

        channel = grpc.aio.insecure_channel(target, options=channel_options(2 * 1024 * 1024))
        call = channel.stream_stream(BARE_CONNECT)()
        try:
            async with asyncio.timeout(timeout):
                challenge = await call.read()
                if challenge is grpc.aio.EOF:
                    raise ConnectionError("the bare relay closed the stream")
                await call.write(node_id)
                ok = await call.read()
                if ok is grpc.aio.EOF:
                    raise ConnectionError("the bare relay closed the stream")
        except BaseException:
            await channel.close()
            raise
        return cls(channel, call)

    async def write(self, data: bytes) -> None:
        async with self._write_lock:
            await self.call.write(data)

    async def read(self) -> bytes | None:
        import grpc

        data = await self.call.read()
        return None if data is grpc.aio.EOF else data

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close()


# --------------------------------------------------------------------------- envelopes


def seal_sized(sender: Any, recipient_id: bytes, recipient_key: bytes, size: int) -> bytes:
    """A properly sealed envelope of ``size`` serialized bytes (or the nearest below)."""
    from tmax_core import envelope as env

    def seal(n: int) -> bytes:
        return env.seal(
            sender,
            to_node_id=recipient_id,
            to_public_key=recipient_key,
            scope="message",
            content_type="bench",
            body=os.urandom(max(0, n)),
        )

    n = size - 256  # overhead is about 250 bytes
    for _ in range(6):
        data = seal(n)
        if len(data) == size:
            return data
        n += size - len(data)
    while len(data) > size and n > 0:  # a varint boundary: settle just below
        n -= 1
        data = seal(n)
    return data


# --------------------------------------------------------------------------- client processes


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def progress_view(path: str) -> tuple[mmap.mmap, memoryview]:
    """The shared arrival counters (one int64 per relay) in an mmap'd file."""
    with open(path, "r+b") as f:
        mm = mmap.mmap(f.fileno(), 8 * len(SLOTS))
    return mm, memoryview(mm).cast("q")


class Sink:
    """Arrivals on one relay stream: receive times and message ids, in order,
    and a running count published in the shared progress file."""

    def __init__(self, progress: memoryview, slot: int) -> None:
        self.progress = progress
        self.slot = slot
        self.total = 0
        self.times: array = array("q")
        self.mids: list[bytes] = []
        self.other: Counter[str] = Counter()
        self.want = 1 << 62
        self.enough = asyncio.Event()

    def arrived(self, t: int, mid: bytes) -> None:
        self.times.append(t)
        self.mids.append(mid)
        self.total += 1
        self.progress[self.slot] = self.total
        if len(self.times) >= self.want:
            self.enough.set()

    def reset(self) -> None:
        self.times = array("q")
        self.mids = []
        self.want = 1 << 62
        self.enough.clear()


async def read_host(session: Any, sink: Sink) -> None:
    from tmax_core.envelope import parse

    clock = time.monotonic_ns
    while True:
        frame = await session.read()
        t = clock()
        if frame is None:
            return
        # Delivers that waited while this stream was busy come as one Frames message.
        for inner in frame.frames.frames if frame.WhichOneof("frame") == "frames" else (frame,):
            kind = inner.WhichOneof("frame")
            if kind == "deliver":
                sink.arrived(t, inner.deliver.message_id)
            elif kind == "deliver_batch":
                for data in inner.deliver_batch.envelopes:
                    sink.arrived(t, parse(data, 1 << 22).message_id)
            else:
                sink.other[kind if kind != "error" else f"error:{inner.error.code}"] += 1


async def read_bare(session: BareSession, sink: Sink) -> None:
    clock = time.monotonic_ns
    while True:
        data = await session.read()
        t = clock()
        if data is None:
            return
        sink.arrived(t, data[NODE_ID_LEN : NODE_ID_LEN + MID_LEN])


async def open_relay_session(relay: str, target: str, identity: Any) -> Any:
    """Connect and register ``identity`` on one relay (HostSession for tmax-host)."""
    if relay == "host":
        from tmax_mesh_relay.client import HostSession

        session = await HostSession.open(target)
        try:
            await session.register(identity, [], [])
        except BaseException:
            await session.close()
            raise
        return session
    return await BareSession.open(target, identity.node_id)


class Sender:
    """Writes pre-built frames round-robin on one relay stream; counts what it sent
    so the max phase can keep a bounded window against the receiver's counter."""

    def __init__(self, session: Any, progress: memoryview, slot: int) -> None:
        self.session = session
        self.progress = progress
        self.slot = slot
        self.total = 0

    async def phase(
        self, frames: list[Any], mids: list[bytes], cmd: dict[str, Any], per: int = 1
    ) -> dict[str, Any]:
        """On schedule (``rate``, open loop, one message per frame) or as fast as the
        window allows (``max``; each frame carries ``per`` messages, the next ones of ``mids``)."""
        clock = time.monotonic_ns
        sent, due = array("q"), array("q")
        m = len(frames)
        write = self.session.write
        if cmd["mode"] == "rate":
            n = int(cmd["rate"] * cmd["seconds"])
            period = 1e9 / cmd["rate"]
            t0 = clock() + 2_000_000
            for i in range(n):
                d = t0 + int(i * period)
                now = clock()
                if d > now:
                    await asyncio.sleep((d - now) / 1e9)
                sent.append(clock())
                due.append(d)
                await write(frames[i % m])
                self.total += 1
        else:
            window, progress, slot = cmd["window"], self.progress, self.slot
            end = clock() + int(cmd["seconds"] * 1e9)
            i = 0
            while (t := clock()) < end:
                if self.total - progress[slot] >= window:
                    await asyncio.sleep(0.0002)  # the loop's timer resolution makes this ~1 ms
                    continue
                sent.extend(array("q", (t,)) * per)
                await write(frames[i % m])
                self.total += per
                i += 1
        out = Path(cmd["out"])
        n = len(sent)
        out.with_suffix(".sent").write_bytes(sent.tobytes())
        out.with_suffix(".due").write_bytes(due.tobytes())
        out.with_suffix(".mids").write_bytes(b"".join(mids[i % len(mids)] for i in range(n)))
        lag = [(s - d) / 1e9 for s, d in zip(sent, due, strict=False)]
        return {"n": n, "schedule_lag": summarize_ms(lag) if lag else None}


async def client_main(args: argparse.Namespace) -> None:
    """Child-process mode: the sender or the receiver, driven by JSON lines on stdin."""
    from tmax_core import envelope as env
    from tmax_core.identity import NodeIdentity
    from tmax_mesh_relay.proto import host_pb2

    role = args.client
    keys = json.loads(Path(args.keys).read_text())
    me = NodeIdentity.from_secret(bytes.fromhex(keys[role]), 0)
    peer = NodeIdentity.from_secret(bytes.fromhex(keys["receiver"]), 0)
    targets = {k: v for k, v in (("host", args.host), ("bare", args.bare)) if v}
    sizes = [int(s) for s in args.sizes.split(",")]
    _mm, progress = progress_view(args.progress)

    info: dict[str, Any] = {"ready": True, "pid": os.getpid()}
    frames: dict[tuple[str, int], list[Any]] = {}
    pool_mids: dict[int, list[bytes]] = {}
    if role == "sender":
        t0 = time.perf_counter()
        envelope_bytes = {}
        for size in sizes:
            pool = [seal_sized(me, peer.node_id, peer.public_key, size) for _ in range(args.pool)]
            pool_mids[size] = [env.parse(e, 1 << 22).message_id for e in pool]
            envelope_bytes[size] = sorted({len(e) for e in pool})
            frames["host", size] = [
                host_pb2.NodeFrame(relay_send=host_pb2.RelaySend(to=peer.node_id, envelope=e)) for e in pool
            ]
            batches = [pool[j : j + args.batch] for j in range(0, len(pool) - args.batch + 1, args.batch)]
            frames["host-batch", size] = [
                host_pb2.NodeFrame(
                    relay_send_batch=host_pb2.RelaySendBatch(to=peer.node_id, batch_id=b"bench", envelopes=b)
                )
                for b in batches
            ]
            frames["bare", size] = [
                peer.node_id + mid + e for mid, e in zip(pool_mids[size], pool, strict=True)
            ]
        info["seal_s"] = time.perf_counter() - t0
        info["envelope_bytes"] = envelope_bytes

    sessions, sinks, senders, readers = {}, {}, {}, []
    for relay, target in targets.items():
        sessions[relay] = await open_relay_session(relay, target, me)
        sinks[relay] = Sink(progress, SLOTS[relay])
        senders[relay] = Sender(sessions[relay], progress, SLOTS[relay])
        reader = read_host if relay == "host" else read_bare
        readers.append(asyncio.create_task(reader(sessions[relay], sinks[relay])))
    emit(info)

    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    while line := await stdin.readline():
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "send":
            relay, size = cmd["relay"], cmd["size"]
            if relay == "host" and cmd["mode"] == "max" and args.batch > 1:
                batched = frames["host-batch", size]  # the pool's first len * batch envelopes
                mids = pool_mids[size][: len(batched) * args.batch]
                res = await senders[relay].phase(batched, mids, cmd, args.batch)
            else:
                res = await senders[relay].phase(frames[relay, size], pool_mids[size], cmd)
            res["other_frames"] = dict(sinks[relay].other)
            emit(res)
        elif op == "collect":
            sink = sinks[cmd["relay"]]
            sink.want = cmd["n"]
            if len(sink.times) < sink.want:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sink.enough.wait(), cmd["timeout"])
            out = Path(cmd["out"])
            out.with_suffix(".recv").write_bytes(sink.times.tobytes())
            out.with_suffix(".mids").write_bytes(b"".join(sink.mids))
            emit({"n": len(sink.times), "other_frames": dict(sink.other)})
            sink.reset()
        elif op == "stop":
            break
    for reader in readers:
        reader.cancel()
    for session in sessions.values():
        with contextlib.suppress(Exception):
            await session.close()


# --------------------------------------------------------------------------- orchestration


def load_q(path: Path) -> array:
    a = array("q")
    a.frombytes(path.read_bytes())
    return a


def match(workdir: Path, tag: str) -> dict[str, Any]:
    """Pair the i-th arrival with the i-th send (one stream, in order), checking message ids."""
    base = workdir / tag
    sent, due = load_q(base.with_suffix(".sent")), load_q(base.with_suffix(".due"))
    rbase = workdir / f"{tag}-r"
    recv = load_q(rbase.with_suffix(".recv"))
    smids, rm = base.with_suffix(".mids").read_bytes(), rbase.with_suffix(".mids").read_bytes()
    one_way, from_due, mismatched = [], [], 0
    for i in range(min(len(sent), len(recv))):
        if smids[i * MID_LEN : (i + 1) * MID_LEN] != rm[i * MID_LEN : (i + 1) * MID_LEN]:
            mismatched += 1
            continue
        one_way.append((recv[i] - sent[i]) / 1e9)
        if due:
            from_due.append((recv[i] - due[i]) / 1e9)
    for suffix in (".sent", ".due", ".mids"):
        base.with_suffix(suffix).unlink(missing_ok=True)
    for suffix in (".recv", ".mids"):
        rbase.with_suffix(suffix).unlink(missing_ok=True)
    span_s = (recv[-1] - sent[0]) / 1e9 if recv and sent else 0.0
    return {
        "sent": len(sent),
        "received": len(recv),
        "mismatched": mismatched,
        "one_way_s": one_way,
        "from_schedule_s": from_due,
        "span_s": span_s,
    }


class Bench:
    def __init__(
        self,
        p: Params,
        workdir: Path,
        sender: Worker,
        receiver: Worker,
        pids: dict[str, int],
        rate: float = OFFERED_RATE,
    ) -> None:
        self.p = p
        self.rate = rate
        self.workdir = workdir
        self.sender = sender
        self.receiver = receiver
        self.pids = pids  # host, bare, sender, receiver
        self.k = 0
        # (relay, size, mode) -> accumulated samples
        self.acc: dict[tuple[str, int, str], dict[str, Any]] = {}

    async def phase(self, relay: str, size: int, mode: str, seconds: float, keep: bool = True) -> None:
        self.k += 1
        tag = f"p{self.k}"
        window = CpuWindow(self.pids)
        t0 = time.monotonic()
        cmd = {"op": "send", "relay": relay, "size": size, "mode": mode, "rate": self.rate}
        cmd |= {"seconds": seconds, "window": self.p.window, "out": str(self.workdir / tag)}
        s = await self.sender.request(cmd, seconds + 30)
        r = await self.receiver.request(
            {
                "op": "collect",
                "relay": relay,
                "n": s["n"],
                "timeout": self.p.collect_timeout_s,
                "out": str(self.workdir / f"{tag}-r"),
            },
            self.p.collect_timeout_s + 10,
        )
        wall = time.monotonic() - t0
        cpu = window.spent()
        ours = sum(cpu.values()) + window.own()  # + this orchestrator
        cpu["whole machine"] = window.machine()
        cpu["other processes"] = max(0.0, cpu["whole machine"] - ours)
        m = await asyncio.to_thread(match, self.workdir, tag)
        if not keep:
            return
        a = self.acc.setdefault(
            (relay, size, mode),
            {"sent": 0, "received": 0, "mismatched": 0, "one_way_s": [], "from_schedule_s": []}
            | {"span_s": 0.0, "wall_s": 0.0, "cpu_s": Counter(), "other_frames": Counter(), "lag": []}
            | {"other_peak": 0.0, "blocks": []},
        )
        a["other_peak"] = max(a["other_peak"], cpu["other processes"] / wall)
        lat = summarize_ms(m["one_way_s"])
        a["blocks"].append(
            {
                "p50_ms": lat.get("p50_ms"),
                "p99_ms": lat.get("p99_ms"),
                "msgs_per_s": len(m["one_way_s"]) / m["span_s"] if m["span_s"] else None,
                "other_processes_cores": cpu["other processes"] / wall,
            }
        )
        for key in ("sent", "received", "mismatched", "span_s"):
            a[key] += m[key]
        a["one_way_s"] += m["one_way_s"]
        a["from_schedule_s"] += m["from_schedule_s"]
        a["wall_s"] += wall
        a["cpu_s"].update(cpu)
        a["other_frames"].update(s.get("other_frames", {}))
        a["other_frames"].update(r.get("other_frames", {}))
        if s.get("schedule_lag"):
            a["lag"].append(s["schedule_lag"])

    async def block(self, relay: str, size: int) -> None:
        print(f"  {LABELS[relay]}, {size} B: {OFFERED_RATE:g} msg/s then max ...", flush=True)
        await self.phase(relay, size, "max", self.p.warm_s, keep=False)
        await self.phase(relay, size, "rate", self.p.rate_s)
        await self.phase(relay, size, "max", self.p.max_s)

    def other_load(self) -> dict[str, float]:
        """How busy the rest of the machine was (other tenants), in cores."""
        secs = sum(a["cpu_s"]["other processes"] for a in self.acc.values())
        wall = sum(a["wall_s"] for a in self.acc.values())
        peak = max((a["other_peak"] for a in self.acc.values()), default=0.0)
        return {"mean_cores": secs / wall if wall else 0.0, "peak_cores": peak}

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for (relay, size, mode), a in sorted(self.acc.items()):
            delivered = len(a["one_way_s"])
            cpu_per_msg = {
                name: secs / delivered * 1e6 if delivered else None
                for name, secs in a["cpu_s"].items()
                if name in self.pids
            }
            cores = {name: secs / a["wall_s"] for name, secs in a["cpu_s"].items()}
            entry = {
                "sent": a["sent"],
                "received": a["received"],
                "delivered_matched": delivered,
                "mismatched": a["mismatched"],
                "complete": delivered == a["sent"] and a["sent"] > 0,
                "msgs_per_s": delivered / a["span_s"] if a["span_s"] else None,
                "latency": summarize_ms(a["one_way_s"]),
                "cpu_us_per_msg": cpu_per_msg,
                "cores_busy": cores,
                "other_processes_cores_peak_phase": a["other_peak"],
                "per_block": a["blocks"],
                "p50_ms_median_of_blocks": median([x["p50_ms"] for x in a["blocks"]]),
                "other_frames": dict(a["other_frames"]),
            }
            if mode == "rate":
                entry["latency_from_schedule"] = summarize_ms(a["from_schedule_s"])
                entry["schedule_lag_p99_ms_per_block"] = [x["p99_ms"] for x in a["lag"]]
            out.setdefault(str(size), {}).setdefault(relay, {})[mode] = entry
        return out


async def run(
    p: Params,
    mode: str,
    workdir: Path,
    host_command: list[str],
    profile_dir: Path | None = None,
    batch: int = 1,
) -> dict[str, Any]:
    from tmax_core.identity import NodeIdentity

    children: list[Child] = []
    workers: list[Worker] = []
    profiler: PhaseProfiler | None = None
    try:
        t_run = time.monotonic()
        keys = {role: NodeIdentity.generate().private_key.secret.hex() for role in ("sender", "receiver")}
        keys_path = workdir / "keys.json"
        keys_path.write_text(json.dumps(keys))
        progress_path = workdir / "progress.bin"
        progress_path.write_bytes(bytes(8 * len(SLOTS)))
        host = Child("host", [*host_command, "--listen", "127.0.0.1:0", *HOST_FLAGS], workdir)
        bare = Child("bare", [sys.executable, str(Path(__file__).resolve()), "--bare-server"], workdir)
        for child in (host, bare):
            children.append(child)
            child.spawn()
        for child in children:
            await child.wait_ready()
        sizes = ",".join(str(s) for s in SIZES)
        client_argv = [sys.executable, str(Path(__file__).resolve()), "--keys", str(keys_path)]
        client_argv += ["--host", host.ready["listen"], "--bare", bare.ready["listen"], "--sizes", sizes]
        client_argv += ["--pool", str(p.pool), "--progress", str(progress_path), "--batch", str(batch)]
        receiver = Worker("receiver", [*client_argv, "--client", "receiver"], workdir)
        sender = Worker("sender", [*client_argv, "--client", "sender"], workdir)
        print(
            f"[{mode}] starting the relays and clients; sealing {p.pool} envelopes per size ...", flush=True
        )
        for w in (receiver, sender):  # the receiver registers before anything is sent to it
            workers.append(w)
            await w.start()
            ready = await w.reply(120)
        seal_info = ready
        pids = {"host": host.ready["pid"], "bare": bare.ready["pid"], "sender": sender.pid}
        pids["receiver"] = receiver.pid
        bench = Bench(p, workdir, sender, receiver, pids)
        if profile_dir is not None:
            profiler = PhaseProfiler(
                profile_dir, "run", {"host": pids["host"], "bare": pids["bare"]}, workdir
            )
            await profiler.start()
        for size in SIZES:
            order = [RELAYS[(b + (b // 2)) % 2] for b in range(2 * p.blocks)]  # ABBA...
            for relay in order:
                await bench.block(relay, size)
        if profiler is not None:
            await profiler.stop()
        return {
            "runs": bench.summary(),
            "other_processes": bench.other_load(),
            "envelope_bytes": seal_info["envelope_bytes"],
            "seal_pool_s": seal_info["seal_s"],
            "wall_seconds": time.monotonic() - t_run,
        }
    finally:
        if profiler is not None:
            profiler.kill()
        for w in reversed(workers):
            await w.stop()
        for child in reversed(children):
            child.stop()


# --------------------------------------------------------------------------- report


def p_ms(entry: dict[str, Any], q: str) -> float | None:
    return entry["latency"].get(f"{q}_ms")


def cpu_of(entry: dict[str, Any], name: str) -> float | None:
    return entry["cpu_us_per_msg"].get(name)


def assess(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for size, by in results["runs"].items():
        h, b = by["host"], by["bare"]
        r = {
            "throughput_max": ratio(h["max"]["msgs_per_s"], b["max"]["msgs_per_s"]),
            "p50_rate": ratio(h["rate"]["latency"].get("p50_ms"), b["rate"]["latency"].get("p50_ms")),
            "p99_rate": ratio(h["rate"]["latency"].get("p99_ms"), b["rate"]["latency"].get("p99_ms")),
            "p50_rate_median_of_blocks": ratio(
                h["rate"]["p50_ms_median_of_blocks"], b["rate"]["p50_ms_median_of_blocks"]
            ),
            "p50_max": ratio(h["max"]["latency"].get("p50_ms"), b["max"]["latency"].get("p50_ms")),
            "p99_max": ratio(h["max"]["latency"].get("p99_ms"), b["max"]["latency"].get("p99_ms")),
            "relay_cpu_rate": ratio(cpu_of(h["rate"], "host"), cpu_of(b["rate"], "bare")),
            "relay_cpu_max": ratio(cpu_of(h["max"], "host"), cpu_of(b["max"], "bare")),
        }
        complete = all(by[x][m]["complete"] for x in RELAYS for m in ("rate", "max"))
        t = {
            "throughput_max": {
                "target": f">= {TARGET_TPUT_RATIO}x bare",
                "ratio": r["throughput_max"],
                "met": complete
                and r["throughput_max"] is not None
                and r["throughput_max"] >= TARGET_TPUT_RATIO,
            },
            "p50_at_1k": {
                "target": f"<= {TARGET_P50_RATIO}x bare",
                "ratio": r["p50_rate"],
                "met": complete and r["p50_rate"] is not None and r["p50_rate"] <= TARGET_P50_RATIO,
            },
            "p50_at_max": {
                "target": f"<= {TARGET_P50_RATIO}x bare",
                "ratio": r["p50_max"],
                "met": complete and r["p50_max"] is not None and r["p50_max"] <= TARGET_P50_RATIO,
            },
        }
        out[size] = {"ratios": r, "targets": t, "complete": complete}
    return out


def verdict(t: dict[str, Any]) -> str:
    return f"{t['target']}: {'MET' if t['met'] else 'NOT MET'}"


def print_table(out: dict[str, Any]) -> None:
    res, env_ = out["results"], out["environment"]
    w, line = 40, "-" * 110
    print()
    print(
        f"tmax-host relay benchmark ({out['mode']}) - {env_['cpus']} CPUs, Python {env_['python']}, "
        f"grpcio {env_['grpcio']}, loadavg {env_['loadavg_at_start']}"
    )
    print("one sender -> relay -> one receiver (no acks), one stream each; one-way latency")
    if out.get("batch", 1) > 1:
        print(f"max phases: {out['batch']} envelopes per RelaySendBatch to tmax-host, one per frame to bare")
    print(line)
    print(f"{'':{w}}{'tmax-host':>14}{'bare fwd':>14}{'ratio':>10}   target")
    for size, by in res["runs"].items():
        h, b = by["host"], by["bare"]
        a = out["assessment"][size]
        r, t = a["ratios"], a["targets"]
        print(line)
        actual = "/".join(str(x) for x in res["envelope_bytes"][size])
        print(
            f"{size} B envelopes ({actual} B serialized){'' if a['complete'] else '  INCOMPLETE: see JSON'}"
        )
        rate = f"{OFFERED_RATE:,.0f} msg/s"
        hr, br, hx, bx = h["rate"], b["rate"], h["max"], b["max"]
        rows = [
            ("throughput at max (msg/s)", hx["msgs_per_s"], bx["msgs_per_s"], "throughput_max"),
            (f"p50 at {rate} (ms)", p_ms(hr, "p50"), p_ms(br, "p50"), "p50_rate"),
            (f"p99 at {rate} (ms)", p_ms(hr, "p99"), p_ms(br, "p99"), "p99_rate"),
            (
                f"p50 at {rate}, block median (ms)",
                hr["p50_ms_median_of_blocks"],
                br["p50_ms_median_of_blocks"],
                "p50_rate_median_of_blocks",
            ),
            ("p50 at max (ms)", p_ms(hx, "p50"), p_ms(bx, "p50"), "p50_max"),
            ("p99 at max (ms)", p_ms(hx, "p99"), p_ms(bx, "p99"), "p99_max"),
            (f"relay CPU at {rate} (us/msg)", cpu_of(hr, "host"), cpu_of(br, "bare"), "relay_cpu_rate"),
            ("relay CPU at max (us/msg)", cpu_of(hx, "host"), cpu_of(bx, "bare"), "relay_cpu_max"),
        ]
        verdicts = {"throughput_max": "throughput_max", "p50_rate": "p50_at_1k", "p50_max": "p50_at_max"}
        if out["params"]["blocks"] < 2:  # one block: the block median is the p50 above
            rows = [row for row in rows if row[3] != "p50_rate_median_of_blocks"]
        for label, hv, bv, key in rows:
            tv = verdict(t[verdicts[key]]) if key in verdicts else ""
            print(f"{'  ' + label:{w}}{fmt(hv):>14}{fmt(bv):>14}{fmt(r[key], 2):>9}x   {tv}")
        for mode, what in (("rate", f"{OFFERED_RATE:,.0f} msg/s"), ("max", "max")):
            hm, bm = h[mode], b[mode]
            print(
                f"{'  delivered/sent at ' + what:{w}}"
                f"{str(hm['delivered_matched']) + '/' + str(hm['sent']):>14}"
                f"{str(bm['delivered_matched']) + '/' + str(bm['sent']):>14}"
            )
    print(line)
    print(
        "relay CPU = user+system CPU of the relay process over the phase / messages delivered "
        "(less sensitive to the machine's other tenants than the wall-clock figures)"
    )
    other = res["other_processes"]
    print(
        f"other processes on the machine (not this bench): {other['mean_cores']:.2f} cores busy on average "
        f"over the measured phases, {other['peak_cores']:.2f} in the busiest phase"
    )
    if other["mean_cores"] > BUSY_MACHINE_CORES:
        print(
            "WARNING: the machine was busy with other work; the wall-clock figures (throughput, latency) "
            "are unreliable - compare relay CPU per message, or run again when it is quieter"
        )
    print(f"wall time {res['wall_seconds']:.1f}s; JSON: {out['json_path']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter phases, < 45 s")
    ap.add_argument("--name", help="results name (default: relay or relay-quick)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir with the process logs")
    ap.add_argument(
        "--window", type=int, help=f"max phase: messages in flight at most (default {FULL.window})"
    )
    ap.add_argument(
        "--host-command",
        metavar="CMD",
        help="run this instead of tmax-host (e.g. 'python my_patched_host.py'); it gets tmax-host's flags",
    )
    ap.add_argument(
        "--profile",
        metavar="DIR",
        help="attach `py-spy record` to both relays for the whole run (DIR/{host,bare}.run.collapsed.txt; "
        "summarise with bench/profile_summary.py); the figures are then perturbed",
    )
    ap.add_argument(
        "--batch",
        type=int,
        default=1,
        metavar="K",
        help="max phases: K envelopes per RelaySendBatch to tmax-host (default 1: one RelaySend each)",
    )
    ap.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--ready-file", help=argparse.SUPPRESS)
    ap.add_argument("--client", choices=("sender", "receiver"), help=argparse.SUPPRESS)
    ap.add_argument("--keys", help=argparse.SUPPRESS)
    ap.add_argument("--host", help=argparse.SUPPRESS)
    ap.add_argument("--bare", help=argparse.SUPPRESS)
    ap.add_argument("--sizes", default=",".join(str(s) for s in SIZES), help=argparse.SUPPRESS)
    ap.add_argument("--pool", type=int, default=FULL.pool, help=argparse.SUPPRESS)
    ap.add_argument("--progress", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.bare_server:
        bare_relay_main(args.ready_file)
        return 0
    if args.client:
        asyncio.run(client_main(args))
        return 0

    mode = "quick" if args.quick else "full"
    p = QUICK if args.quick else FULL
    if args.window:
        p = dataclasses.replace(p, window=max(1, args.window))
    host_command = shlex.split(args.host_command) if args.host_command else [str(BIN / "tmax-host")]
    name = args.name or ("relay-quick" if args.quick else "relay")
    profile_dir = Path(args.profile).resolve() if args.profile else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
        name += "-profiled"
    batch = max(1, args.batch)
    head = {
        "benchmark": "relay",
        "mode": mode,
        "profiled": profile_dir is not None,
        "params": asdict(p),
        "offered_rate": OFFERED_RATE,
        "host_command": host_command,
        "host_flags": HOST_FLAGS,
        "acks": False,
        "batch": batch,
    }
    return run_and_report(
        name,
        head,
        lambda workdir: run(p, mode, workdir, host_command, profile_dir, batch),
        p.hard_limit_s * (2 if profile_dir else 1),
        assess,
        print_table,
        workdir_prefix="tmax-bench-relay-",
        keep=args.keep,
    )


if __name__ == "__main__":
    sys.exit(main())
