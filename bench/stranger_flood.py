"""Stranger flood benchmark (issue 13 item 3): what a flood of forged
envelopes from strangers costs a node, while a friend keeps sending to it.

Run from the checkout (see bench/README.md)::

    .venv/bin/python bench/stranger_flood.py            # 50,000 envelopes per flood row, < 3 minutes
    .venv/bin/python bench/stranger_flood.py --quick    # 10,000 per row, shorter phases, < 90 s

Two real ``tmax-node`` processes with temp state dirs: **A** (the victim,
``--peer-listen 127.0.0.1:0``, no relay) and **B** (no listener, no relay),
friends by the real invite flow. A's invite carries A's listener, so B's
messages go direct (B's outbox → ``PeerService/DeliverStream`` on A); every
measured message's path is read back with ``msg_status``. Both nodes run with
the ratelimit plugin's limits lifted (``common.node_env``) and debug JSON logs
(``common.TRACED``), so the friend's latency is taken node B → node A from the
nodes' own per-message events (B's outbox accepted it → A committed it to its
inbox).

Each row starts a fresh pair. B sends to A at 50 msg/s (open loop) for the
whole row, while the bench alternates **idle blocks** (the friend alone, 2 s)
and **flood blocks**, each one part (a fifth) of the flood: a **flooder**
process (``bench/stranger_flood.py --flooder``, JSON lines on stdin/stdout)
sends forged envelopes to A's PeerService. Interleaving gives the idle and the
flood samples the same machine conditions, whatever else runs on it. The
envelopes are built and serialized before the row starts (the construction of
``tests/e2e/test_stranger_flood.py``: a made-up sender id, junk in the invite
token id and proof fields, a key that is not the sender's, a signature of
noise), so the flooder spends its time sending. The friend messages *sent
during a flood block* are the "under flood" sample, those sent during an idle
block the idle sample; 0.3 s after each flood block are in neither.

Rows:

* **stream, max rate** (with and without the ratelimit plugin,
  ``TMAX_MESH_DISABLE_PLUGINS=ratelimit``): ``DeliverStream`` batches of 64
  envelopes, every batch from one fresh random sender id (so each envelope
  reaches the stranger check, not the "one sender per batch" check), up to 8
  batches in flight (A reads at most 8 per stream), as fast as A answers. A
  takes a flood block in a fraction of a second, so few friend messages fall
  inside it;
* **stream, paced**: the same flood spread evenly over 10 s of flood blocks
  (5,000 envelopes/s), so the under-flood sample is as large as the idle one;
* **unary**: one ``Deliver`` call per envelope, each from a fresh sender id,
  4 calls in flight on one connection (A allows 8 at once per connection,
  and at 6 or 8 a few calls are already refused). Its per-envelope figure is
  mostly gRPC's per-call cost (transport), not ingress.

Reported per row: the friend's node B → node A p50/p99 idle and under flood and
their ratio (target: p99 ratio ≤ 2.0), A's CPU per forged envelope (A's CPU
in the flood blocks minus its idle-block CPU rate x their length, ÷ envelopes;
target ≤ 20 µs), the flood rate, the answers signed vs empty, A's rejection
counters (every forged envelope must be an ``invite_unknown``), RSS and log
growth, and how busy the whole machine was (other tenants included).
Writes ``bench/results/<name>.json``. Every wait is bounded, the whole run has a
hard limit, and the child processes are stopped on every exit path.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from common import (
    BIN,
    TRACED,
    Child,
    CpuWindow,
    Worker,
    environment,
    fmt,
    node_env,
    node_to_node_ms,
    proc_status,
    ratio,
    run_bounded,
    write_results,
)

FRIEND_RATE = 50.0  # msg/s, B -> A
TARGET_P99_RATIO = 2.0  # friend p99 under flood / idle
TARGET_CPU_US = 20.0  # A's CPU per forged envelope
STREAM_BATCH = 64  # envelopes per DeliverStream batch (one fresh sender each)
STREAM_WINDOW = 8  # batches in flight (A's SERVER_IN_FLIGHT)
UNARY_CONCURRENCY = 4  # Deliver calls in flight: 8 (PEER_MAX_STREAMS) already has some refused
STRANGER_CHECK = "rejected:invite_unknown"  # A's counter for a stranger naming no active invite


@dataclass(frozen=True)
class Params:
    stream_n: int  # forged envelopes per stream row
    unary_n: int  # forged envelopes in the unary row
    blocks: int  # idle and flood blocks, interleaved; the flood is cut in this many parts
    idle_block_s: float  # friend load alone, per block
    settle_s: float  # after each flood block, not measured
    paced_s: float  # the paced stream row spreads its flood over this many seconds in all
    warmup_n: int  # friend messages before measuring
    grace_s: float  # wait for the friend's stragglers after each phase
    flood_timeout_s: float  # one flood must end within this
    hard_limit_s: float  # the whole run is cancelled (children stopped) after this


FULL = Params(
    stream_n=50_000,
    unary_n=10_000,
    blocks=5,
    idle_block_s=2.0,
    settle_s=0.3,
    paced_s=10.0,
    warmup_n=20,
    grace_s=10.0,
    flood_timeout_s=60.0,
    hard_limit_s=175.0,
)
QUICK = Params(
    stream_n=10_000,
    unary_n=3_000,
    blocks=3,
    idle_block_s=1.5,
    settle_s=0.3,
    paced_s=4.5,
    warmup_n=10,
    grace_s=8.0,
    flood_timeout_s=30.0,
    hard_limit_s=90.0,
)


@dataclass(frozen=True)
class Row:
    label: str
    mode: str  # "stream" or "unary"
    ratelimit: bool  # the ratelimit plugin loaded on A
    paced_s: float | None = (
        None  # spread the flood evenly over this many seconds (None: as fast as A takes it)
    )


def rows_for(p: Params) -> list[Row]:
    paced = f"stream, paced over {p.paced_s:g} s, ratelimit plugin on"
    return [
        Row("stream, max rate, ratelimit plugin on", "stream", True),
        Row("stream, max rate, ratelimit plugin off", "stream", False),
        Row(paced, "stream", True, p.paced_s),
        Row(f"unary Deliver, max rate ({UNARY_CONCURRENCY} in flight), ratelimit plugin on", "unary", True),
    ]


# --------------------------------------------------------------------------- the flooder (child)


def _field(number: int, value: bytes) -> bytes:
    """A length-delimited protobuf field, written by hand (as in the test)."""
    return bytes([number << 3 | 2, len(value)]) + value


def forged_stranger_envelope(to: bytes, sender: bytes) -> bytes:
    """``tests/e2e/test_stranger_flood.py``'s forged envelope, with the sender
    id given (one per batch): junk in the invite fields (a token in the header
    of old versions, a token id and an invite proof in the current one), a key
    that is not the sender's and a signature of noise."""
    from tmax_core import envelope as env
    from tmax_core.clock import now_ms
    from tmax_core.proto import mesh_pb2

    header = mesh_pb2.EnvelopeHeader(
        version=getattr(env, "VERSION", 1),
        message_id=os.urandom(16),
        from_node_id=sender,
        to_node_id=to,
        timestamp_ms=now_ms(),
        sender_public_key=b"\x02" + os.urandom(32),
        ephemeral_public_key=b"\x03" + os.urandom(32),
    ).SerializeToString()
    header += _field(8, os.urandom(120)) + _field(9, os.urandom(16)) + _field(10, os.urandom(32))
    envelope = mesh_pb2.Envelope(header=header, ciphertext=os.urandom(48), signature=os.urandom(65))
    return envelope.SerializeToString()


class Flooder:
    """Builds the forged envelopes ahead of time, then sends them to A."""

    def __init__(self) -> None:
        self.channel: Any = None
        self.mode = ""
        self.payloads: list[bytes] = []  # serialized StreamedBatch, or one envelope per Deliver
        self.n = 0
        self.paced_s: float | None = None
        self.sizes: list[int] = []

    async def prepare(self, cmd: dict[str, Any]) -> dict[str, Any]:
        import grpc

        from tmax_core.proto import mesh_pb2

        t0 = time.monotonic()
        to, n, self.mode = bytes.fromhex(cmd["to"]), cmd["n"], cmd["mode"]
        self.paced_s = cmd.get("paced_s")
        self.payloads = []
        self.sizes = []  # envelopes per payload
        if self.mode == "stream":
            for k, start in enumerate(range(0, n, STREAM_BATCH)):
                sender = os.urandom(20)
                envs = [forged_stranger_envelope(to, sender) for _ in range(min(STREAM_BATCH, n - start))]
                self.payloads.append(mesh_pb2.StreamedBatch(id=k + 1, envelopes=envs).SerializeToString())
                self.sizes.append(len(envs))
        else:
            self.payloads = [forged_stranger_envelope(to, os.urandom(20)) for _ in range(n)]
            self.sizes = [1] * n
        self.n = n
        if self.channel is not None:
            await self.channel.close()
        self.channel = grpc.aio.insecure_channel(cmd["target"])
        await asyncio.wait_for(self.channel.channel_ready(), 10)
        return {"prepared": n, "payloads": len(self.payloads), "prepare_s": time.monotonic() - t0}

    async def flood(self, part: int, parts: int) -> dict[str, Any]:
        """Send part ``part`` of ``parts`` (equal slices of the payloads), paced
        over ``paced_s / parts`` seconds if the flood is paced."""
        from tmax_core.peer import DELIVER, DELIVER_STREAM

        k = len(self.payloads)
        lo, hi = part * k // parts, (part + 1) * k // parts
        payloads = self.payloads[lo:hi]
        paced_s = (self.paced_s or 0.0) / parts
        answers: collections.Counter[str] = collections.Counter()
        errors: collections.Counter[str] = collections.Counter()
        cpu0 = time.process_time()
        t0 = time.monotonic()
        if self.mode == "stream":
            await self._stream(DELIVER_STREAM, payloads, paced_s, answers, errors)
        else:
            await self._unary(DELIVER, payloads, answers, errors)
        t1 = time.monotonic()
        return {
            "sent": sum(self.sizes[lo:hi]),
            "start_monotonic": t0,
            "end_monotonic": t1,
            "seconds": t1 - t0,
            "answers": dict(answers),
            "errors": dict(errors),
            "flooder_cpu_s": time.process_time() - cpu0,
        }

    async def _stream(
        self,
        method: str,
        payloads: list[bytes],
        paced_s: float,
        answers: collections.Counter,
        errors: collections.Counter,
    ) -> None:
        import grpc

        from tmax_core.proto import mesh_pb2

        call = self.channel.stream_stream(method)()
        window = asyncio.Semaphore(STREAM_WINDOW)

        async def read() -> None:
            while True:
                raw = await call.read()
                if raw is grpc.aio.EOF:
                    return
                ack = mesh_pb2.StreamedAck.FromString(raw)
                answers["signed" if ack.ack else "empty"] += 1
                window.release()

        reader = asyncio.create_task(read())
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        step = paced_s / len(payloads)  # seconds between batches when paced
        try:
            for k, payload in enumerate(payloads):
                if step and (delay := t0 + k * step - loop.time()) > 0:
                    await asyncio.sleep(delay)
                await window.acquire()
                await call.write(payload)
            await call.done_writing()
            await reader
        except grpc.aio.AioRpcError as err:
            errors[err.code().name] += 1
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
            call.cancel()

    async def _unary(
        self, method: str, payloads: list[bytes], answers: collections.Counter, errors: collections.Counter
    ) -> None:
        import grpc

        deliver = self.channel.unary_unary(method)
        todo = iter(payloads)

        async def worker() -> None:
            for envelope in todo:
                try:
                    answer = await deliver(envelope, timeout=30)
                except grpc.aio.AioRpcError as err:
                    errors[err.code().name] += 1
                    continue
                answers["signed" if answer else "empty"] += 1

        await asyncio.gather(*(worker() for _ in range(UNARY_CONCURRENCY)))


async def flooder_main() -> None:
    """Child-process mode: answer JSON-line commands (prepare, flood) until stdin closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    flooder = Flooder()
    while line := await reader.readline():
        cmd = json.loads(line)
        try:
            if cmd["cmd"] == "prepare":
                out = await flooder.prepare(cmd)
            else:
                out = await flooder.flood(cmd["part"], cmd["parts"])
        except Exception as err:  # reported to the bench, which fails the run
            out = {"error": f"{type(err).__name__}: {err}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


# --------------------------------------------------------------------------- the friend


class FriendLoad:
    """B → A at FRIEND_RATE, open loop, until stopped: send times per message id."""

    def __init__(self, b: Any, a_node_id: str, label: str) -> None:
        self.b = b
        self.a_node_id = a_node_id
        self.label = label
        self.sent: dict[str, float] = {}  # message id -> time.monotonic() at the send call
        self.errors: list[str] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        tasks = []
        i = 0
        while not self._stop.is_set():
            delay = t0 + i / FRIEND_RATE - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                if self._stop.is_set():
                    break
            tasks.append(asyncio.create_task(self._send(i)))
            i += 1
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _send(self, i: int) -> None:
        t = time.monotonic()
        try:
            reply = await self.b.msg_send(self.a_node_id, f"{self.label}-{i}".encode())
            self.sent[reply["message_id"]] = t
        except Exception as err:  # counted, not fatal
            self.errors.append(str(err))


async def drain(b: Any, timeout: float) -> int:
    """Wait (bounded) until B's outbox has nothing queued or sent; returns what is left."""
    deadline = time.monotonic() + timeout
    while True:
        counts = (await b.node_status())["outbox"]
        left = sum(counts.get(s, 0) for s in ("queued", "sent"))
        if not left or time.monotonic() >= deadline:
            return left
        await asyncio.sleep(0.05)


async def paths_of(b: Any, ids: list[str]) -> dict[str, int]:
    paths: collections.Counter[str] = collections.Counter()
    for mid in ids:
        st = await b.msg_status(mid)
        paths[st["path"] if st["status"] == "delivered" else st["status"]] += 1
    return dict(paths)


def signed_answer_budget(seconds: float) -> float | None:
    """How many answers to unauthenticated senders A may sign in ``seconds``
    (its token bucket's burst + rate x seconds), from the core's constants."""
    from tmax_core import ingress

    for prefix in ("UNAUTHENTICATED", "STRANGER"):  # the constants' current and earlier names
        rate, burst = (getattr(ingress, f"{prefix}_ANSWER_{k}", None) for k in ("RATE", "BURST"))
        if rate is not None and burst is not None:
            return burst + rate * seconds
    return None


def rejected_counters(status: dict[str, Any]) -> dict[str, int]:
    return {k: v for k, v in status["counters"].items() if k.startswith("rejected:")}


def counter_delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


# --------------------------------------------------------------------------- one row


class Phase:
    """CPU and wall time summed over the blocks of one kind (idle or flood),
    and the windows whose friend messages are its sample."""

    def __init__(self) -> None:
        self.cpu: collections.Counter[str] = collections.Counter()
        self.machine = 0.0
        self.own = 0.0
        self.seconds = 0.0
        self.windows: list[tuple[float, float]] = []

    def add(self, cpu: CpuWindow, t0: float, t1: float, window: tuple[float, float] | None = None) -> None:
        self.cpu.update(cpu.spent())
        self.machine += cpu.machine()
        self.own += cpu.own()
        self.seconds += t1 - t0
        self.windows.append(window or (t0, t1))

    def others(self) -> float:
        """Busy CPU seconds of processes other than ours (other tenants)."""
        return max(0.0, self.machine - sum(self.cpu.values()) - self.own)

    def sample(self, sent: dict[str, float]) -> list[str]:
        """The friend messages sent within this phase's windows."""
        return [m for m, t in sent.items() if any(s <= t <= e for s, e in self.windows)]


async def run_row(p: Params, row: Row, workdir: Path, tag: str) -> dict[str, Any]:
    from tmax_core.client import AsyncJsonNodeClient

    children: list[Child] = []
    flooder: Worker | None = None
    try:
        nodes: dict[str, Child] = {}
        for side in ("a", "b"):
            state = workdir / side
            state.mkdir()
            argv = [str(BIN / "tmax-node"), "--state-dir", str(state)]
            env = node_env() | TRACED
            if side == "a":
                argv += ["--peer-listen", "127.0.0.1:0"]
                if not row.ratelimit:
                    env["TMAX_MESH_DISABLE_PLUGINS"] = "ratelimit"
            nodes[side] = Child(side, argv, workdir)
            nodes[side].spawn(env=env)
            children.append(nodes[side])
        flooder = Worker("flooder", [sys.executable, str(Path(__file__).resolve()), "--flooder"], workdir)
        await flooder.start()
        for child in nodes.values():
            await child.wait_ready()
        a_ready, b_ready = nodes["a"].ready, nodes["b"].ready
        n = p.stream_n if row.mode == "stream" else p.unary_n

        async with AsyncJsonNodeClient(a_ready["socket"]) as a, AsyncJsonNodeClient(b_ready["socket"]) as b:
            invite = await a.invite_create(rate_limit=(1e6, 1_000_000))
            await b.invite_accept(invite["token"], alias="victim")
            deadline = time.monotonic() + 20
            while not any(f["node_id"] == b_ready["node_id"] for f in await a.friends_list()):
                if time.monotonic() > deadline:
                    raise RuntimeError("first contact did not reach A within 20 s")
                await asyncio.sleep(0.02)
            a_id = (await a.node_info())["node_id"]
            from tmax_core.crypto import parse_node_id

            prep = await flooder.request(
                {
                    "cmd": "prepare",
                    "target": a_ready["peer_listen"],
                    "to": parse_node_id(a_id).hex(),
                    "n": n,
                    "mode": row.mode,
                    "paced_s": row.paced_s,
                },
                60,
            )
            if "error" in prep:
                raise RuntimeError(f"flooder: {prep['error']}")

            warm = FriendLoad(b, a_id, f"{tag}-warm")
            for i in range(p.warmup_n):
                await warm._send(i)
            if await drain(b, p.grace_s):
                raise RuntimeError("the warm-up messages were not delivered")

            pids = {"node_a": a_ready["pid"], "node_b": b_ready["pid"], "flooder": flooder.pid}
            a_pid = a_ready["pid"]

            # Interleaved blocks: the friend alone, then the friend and one part of the flood.
            status0 = await a.node_status()
            rss0 = proc_status(a_pid).get("VmRSS")
            log0 = nodes["a"].log_path.stat().st_size
            load = FriendLoad(b, a_id, tag)
            load.start()
            phases = {"idle": Phase(), "flood": Phase()}
            answers: collections.Counter[str] = collections.Counter()
            errors: collections.Counter[str] = collections.Counter()
            flooder_cpu = 0.0
            sent = 0
            for k in range(p.blocks):
                await asyncio.sleep(p.settle_s)  # what the last flood block left behind: not measured
                cpu, t0 = CpuWindow(pids), time.monotonic()
                await asyncio.sleep(p.idle_block_s)
                phases["idle"].add(cpu, t0, time.monotonic())
                cpu, t0 = CpuWindow(pids), time.monotonic()
                part = await flooder.request(
                    {"cmd": "flood", "part": k, "parts": p.blocks}, p.flood_timeout_s
                )
                if "error" in part:
                    raise RuntimeError(f"flooder: {part['error']}")
                # the friend's sample: sent while the flooder was sending
                phases["flood"].add(
                    cpu, t0, time.monotonic(), (part["start_monotonic"], part["end_monotonic"])
                )
                answers.update(part["answers"])
                errors.update(part["errors"])
                flooder_cpu += part["flooder_cpu_s"]
                sent += part["sent"]
            rss1 = proc_status(a_pid)
            await asyncio.sleep(p.settle_s)
            await load.stop()
            left = await drain(b, p.grace_s)
            status1 = await a.node_status()
            log1 = nodes["a"].log_path.stat().st_size

            sample = {name: ph.sample(load.sent) for name, ph in phases.items()}
            paths = await paths_of(b, list(load.sent))
            n2n = {
                name: node_to_node_ms(nodes["b"].log_path, nodes["a"].log_path, ids)
                for name, ids in sample.items()
            }
            inbox = len(await a.inbox_list())

        idle, flood = phases["idle"], phases["flood"]
        a_idle_rate = idle.cpu["node_a"] / idle.seconds  # A's cores busy with the friend load alone
        a_extra = flood.cpu["node_a"] - a_idle_rate * flood.seconds
        flood_s = sum(e - s for s, e in flood.windows)
        span_s = flood.windows[-1][1] - flood.windows[0][0]  # first flood block start -> last one's end
        return {
            "mode": row.mode,
            "ratelimit_plugin": row.ratelimit,
            "forged": n,
            "flood": {
                "sent": sent,
                "blocks": p.blocks,
                "seconds_sending": flood_s,
                "rate_per_s": sent / flood_s if flood_s else None,
                "answers": dict(answers),
                "signed_answer_budget": signed_answer_budget(span_s),
                "errors": dict(errors),
                "flooder_cpu_s": flooder_cpu,
                "prepare_s": prep["prepare_s"],
            },
            "friend": {
                "rate": FRIEND_RATE,
                "sent": len(load.sent),
                "idle_sample": len(sample["idle"]),
                "flood_sample": len(sample["flood"]),
                "send_errors": len(load.errors),
                "first_error": load.errors[0] if load.errors else None,
                "undelivered_after_grace": left,
                "paths": paths,
                "a_inbox_messages": inbox,
                "idle": n2n["idle"],
                "under_flood": n2n["flood"],
                "p50_ratio": ratio(n2n["flood"].get("p50_ms"), n2n["idle"].get("p50_ms")),
                "p99_ratio": ratio(n2n["flood"].get("p99_ms"), n2n["idle"].get("p99_ms")),
            },
            "node_a": {
                "idle_cpu_s": idle.cpu["node_a"],
                "idle_seconds": idle.seconds,
                "idle_cores_busy": a_idle_rate,
                "flood_cpu_s": flood.cpu["node_a"],
                "flood_seconds": flood.seconds,
                "flood_cores_busy": flood.cpu["node_a"] / flood.seconds,
                "flood_cpu_minus_idle_s": a_extra,
                "cpu_us_per_forged": a_extra / sent * 1e6,
                "cpu_us_per_forged_gross": flood.cpu["node_a"] / sent * 1e6,
                "rejected_during_run": counter_delta(rejected_counters(status1), rejected_counters(status0)),
                "rss_kib_before": rss0,
                "rss_kib_after": rss1.get("VmRSS"),
                "rss_hwm_kib_after": rss1.get("VmHWM"),
                "log_bytes_during_run": log1 - log0,
            },
            "cpu_s": {"idle": dict(idle.cpu), "flood": dict(flood.cpu)},
            "machine": {
                "idle_cores_busy": idle.machine / idle.seconds,
                "idle_others_cores": idle.others() / idle.seconds,
                "flood_cores_busy": flood.machine / flood.seconds,
                "flood_others_cores": flood.others() / flood.seconds,
            },
        }
    finally:
        # The nodes first, synchronously: on Ctrl-C or SIGTERM this block can be
        # cancelled again at its first await, and the nodes must not outlive the bench.
        for child in reversed(children):
            child.stop()
        if flooder is not None:
            try:
                await flooder.stop()
            finally:
                if flooder.proc is not None and flooder.proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(flooder.pid, signal.SIGKILL)


def assess(res: dict[str, Any]) -> dict[str, Any]:
    friend, a = res["friend"], res["node_a"]
    clean = (
        friend["paths"] == {"direct": friend["sent"]}
        and not friend["send_errors"]
        and not friend["undelivered_after_grace"]
        and not res["flood"]["errors"]
        and res["flood"]["sent"] == res["forged"]
        and res["node_a"]["rejected_during_run"] == {STRANGER_CHECK: res["forged"]}
    )
    p99 = friend["p99_ratio"]
    cpu = a["cpu_us_per_forged"]
    return {
        "checks": {"friend_all_direct_and_delivered_flood_all_stranger_rejections": clean},
        "targets": {
            "friend_p99_ratio": {
                "target": TARGET_P99_RATIO,
                "value": p99,
                "measured": "friend's node B accepted -> node A stored, under flood / idle",
                "met": p99 is not None and p99 <= TARGET_P99_RATIO and clean,
            },
            "cpu_us_per_forged_envelope": {
                "target": TARGET_CPU_US,
                "value": cpu,
                "measured": "A's CPU during the flood minus idle rate x flood seconds, / forged envelopes",
                "met": cpu <= TARGET_CPU_US and clean,
            },
        },
    }


# --------------------------------------------------------------------------- output


def print_table(out: dict[str, Any]) -> None:
    params = out["params"]
    print()
    print(
        f"stranger flood: forged stranger envelopes to node A while friend B sends {FRIEND_RATE:g} msg/s "
        f"direct; {params['blocks']} blocks of {params['idle_block_s']:g} s idle then 1/{params['blocks']} "
        f"of the flood, interleaved; {out['environment']['cpus']} CPUs; {out['mode']} run"
    )
    print()
    print(
        "| row | forged | sending s | env/s | friend n idle / flood | friend p50 ms idle → flood "
        "| friend p99 ms idle → flood | **p99 ratio** | A CPU µs/forged net (gross) "
        "| answers signed (budget) / empty "
        "| machine cores busy idle / flood (others) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in out["rows"]:
        r, f, a = row["results"], row["results"]["friend"], row["results"]["node_a"]
        fl, m = r["flood"], r["machine"]
        ans = fl["answers"]
        idle, under = f["idle"], f["under_flood"]
        print(
            f"| {row['label']} | {r['forged']:,} | {fmt(fl['seconds_sending'])} | {fmt(fl['rate_per_s'])} | "
            f"{idle.get('n', 0)} / {under.get('n', 0)} | "
            f"{fmt(idle.get('p50_ms'))} → {fmt(under.get('p50_ms'))} | "
            f"{fmt(idle.get('p99_ms'))} → {fmt(under.get('p99_ms'))} | "
            f"**{fmt(f['p99_ratio'])}x** | **{fmt(a['cpu_us_per_forged'], 1)}** "
            f"({fmt(a['cpu_us_per_forged_gross'], 1)}) | {ans.get('signed', 0)} "
            f"({fmt(fl['signed_answer_budget'], 0)}) / {ans.get('empty', 0)} | "
            f"{fmt(m['idle_cores_busy'])} ({fmt(m['idle_others_cores'])}) / "
            f"{fmt(m['flood_cores_busy'])} ({fmt(m['flood_others_cores'])}) |"
        )
    print()
    unit = {"stream": f"batch of {STREAM_BATCH}", "unary": "call"}
    for row in out["rows"]:
        r, a, f = row["results"], row["results"]["node_a"], row["results"]["friend"]
        verdict = {k: "MET" if v["met"] else "NOT MET" for k, v in row["targets"].items()}
        rejected = ", ".join(
            f"{k.removeprefix('rejected:')} {v:,}" for k, v in a["rejected_during_run"].items()
        )
        print(
            f"- {row['label']}: friend p99 ≤ {TARGET_P99_RATIO:g}x idle **{verdict['friend_p99_ratio']}**, "
            f"≤ {TARGET_CPU_US:g} µs/forged **{verdict['cpu_us_per_forged_envelope']}**; "
            f"friend p90 {fmt(f['idle'].get('p90_ms'))} → {fmt(f['under_flood'].get('p90_ms'))} ms, "
            f"max {fmt(f['idle'].get('max_ms'))} → {fmt(f['under_flood'].get('max_ms'))} ms; "
            f"one answer per {unit[r['mode']]}; A rejected: {rejected or '-'}; "
            f"A busy {fmt(a['idle_cores_busy'])} cores idle, {fmt(a['flood_cores_busy'])} in flood blocks; "
            f"A RSS {a['rss_kib_before'] or 0:,} → {a['rss_kib_after'] or 0:,} KiB; "
            f"A log +{a['log_bytes_during_run']:,} B; friend paths {f['paths']}"
        )
        if not row["checks"]["friend_all_direct_and_delivered_flood_all_stranger_rejections"]:
            print(
                "  WARNING: a friend message was not direct/delivered, the flood had errors "
                f"({r['flood']['errors']}), or A rejected something other than {STRANGER_CHECK} "
                "for every forged envelope; see the JSON"
            )
    print()
    print(
        "net = A's CPU in the flood blocks minus its idle-block rate x their length; "
        "'others' = cores busy with processes not of this bench"
    )
    code = out["environment"].get("code", {})
    dirty = code.get("uncommitted_node_code")
    print(
        f"code: {code.get('commit', '?')[:12]}"
        + (f" + uncommitted changes to {', '.join(dirty)}" if dirty else "")
    )
    print(f"run took {out['wall_seconds']:.0f} s; JSON: {out['json_path']}")


def code_measured() -> dict[str, Any]:
    """The commit the nodes ran, and the node code changed on top of it (read
    without taking git's index lock: someone else may be working here)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        argv = ["git", "--no-optional-locks", "-C", str(root), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout

    try:
        changed = git("status", "--porcelain", "--", "tmax_core", "plugins", "proto").splitlines()
        return {"commit": git("rev-parse", "HEAD").strip(), "uncommitted_node_code": [x[3:] for x in changed]}
    except (OSError, subprocess.SubprocessError):
        return {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10,000 envelopes per stream row, shorter phases")
    ap.add_argument("--name", help="results name (default: stranger_flood or stranger_flood-quick)")
    ap.add_argument("--keep", action="store_true", help="keep the temp state dirs and logs")
    ap.add_argument("--flooder", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.flooder:
        asyncio.run(flooder_main())
        return 0
    mode = "quick" if args.quick else "full"
    p = QUICK if args.quick else FULL
    name = args.name or ("stranger_flood" + ("-quick" if args.quick else ""))
    workdir = Path(tempfile.mkdtemp(prefix="tmax-bench-flood-"))
    env_info = environment() | {"code": code_measured()}
    t_run = time.monotonic()
    rows = rows_for(p)

    async def run_all() -> list[dict[str, Any]]:
        done = []
        for i, row in enumerate(rows):
            print(f"[{mode}] {i + 1}/{len(rows)}: {row.label} ...", flush=True)
            (workdir / f"r{i}").mkdir()
            done.append(await run_row(p, row, workdir / f"r{i}", f"r{i}"))
        return done

    results = run_bounded(run_all(), p.hard_limit_s, workdir, "state dirs and logs")
    if isinstance(results, int):
        return results
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    done = [{**asdict(row), "results": res, **assess(res)} for row, res in zip(rows, results, strict=True)]
    out = {
        "benchmark": "stranger_flood",
        "mode": mode,
        "params": asdict(p),
        "environment": env_info,
        "rows": done,
        "wall_seconds": time.monotonic() - t_run,
    }
    print_table(write_results(name, out))
    if args.keep:
        print(f"state dirs and logs kept in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
