"""Messaging benchmark: end-to-end A→B direct delivery between two real
``tmax-node`` processes, with its baselines measured in the same invocation.

Run from the checkout (see bench/README.md)::

    .venv/bin/python bench/messaging.py            # full run, < 3.5 minutes
    .venv/bin/python bench/messaging.py --quick    # smaller counts, < 45 s

What it measures, in one process, one run:

1. **e2e A→B direct**: two ``tmax-node`` processes (``--peer-listen
   127.0.0.1:0``, temp state dirs) made friends by the real invite flow.
   Messages go in through A's local API (``AsyncJsonNodeClient.msg_send`` on the
   Unix socket) and count as delivered once B has verified, decrypted and
   durably stored them in its inbox (state.db):

   * *throughput, unary*: N messages as fast as possible from C concurrent
     ``msg_send`` callers; delivered = rows committed to B's inbox, counted
     every 20 ms by reading B's state.db read-only (no inbox watcher running),
     i.e. "stored in B's state.db per second", end to end; plus the CPU each
     process spent per message;
   * *throughput, batched*: the same with ``msg_send_many`` (``MsgSendBatch``)
     calls of 100 messages from 4 concurrent callers; A's outbox carries them
     in batches on one ``PeerService/DeliverStream`` with one signed ack per
     batch; also the steady rate between 10 % and 90 % delivered;
   * *latency* at a fixed offered rate (open loop, 100 msg/s, unary
     ``msg_send``): send call start → the message appears on B's
     ``inbox_watch`` stream. Both timestamps are taken by this process on one
     monotonic clock, so the figure is one-way and needs no clock sync.
   * *throughput through the relay*: a third pair (E→F) with no peer listener
     and the ``direct`` plugin off, both registered at one ``tmax-host``: the
     batched phase again, every envelope carried A → host → B and answered by
     B's signed ack the same way back; counted like the direct rows, and
     compared with the direct batched row of the same run.

2. **baselines**: the bare per-message crypto cost in-process
   (``envelope.seal + parse + verify + open_content + make_ack + verify_ack``)
   and a bare ``grpc.aio`` unary echo over 127.0.0.1 served by a child process,
   driven with the same concurrency patterns and the same offered rate: one
   envelope per call, and 100 envelopes' bytes per call (plus, for reference,
   single envelopes over one bidi stream).

Prints a table (absolute numbers, ratios, and the issue's targets met / not
met; the throughput target is judged on the better of the two APIs) and writes
``bench/results/<name>.json``. Every phase is bounded in count
and time, the whole run has a hard limit, and child processes are always
stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    BIN,
    TRACED,
    Child,
    CpuMeter,
    PhaseProfiler,
    closed_loop,
    environment,
    find_pyspy,
    fmt,
    node_env,
    node_to_node_ms,
    open_loop,
    ratio,
    run_bounded,
    serve_until_signalled,
    summarize_ms,
    write_results,
)

# The issues' targets.
TARGET_THROUGHPUT = 2000.0  # msg/s sustained
TARGET_P50_MS = 3.0  # at the offered rate below
# Issue 17: unary msg_send
TARGET_UNARY_VS_GRPC = 0.4  # unary e2e throughput ÷ bare gRPC unary calls/s, same run
TARGET_UNARY_CPU_US = 300.0  # node A's CPU per message, unary phase
TARGET_UNARY_P50_MS = 1.0  # node A -> node B p50 at 100 msg/s
OFFERED_RATE = 100.0  # msg/s

ECHO_METHOD = "/tmax_bench.Echo/Call"
ECHO_BATCH_METHOD = "/tmax_bench.Echo/CallBatch"
ECHO_STREAM = "/tmax_bench.Echo/Stream"
POLL_S = 0.02  # how often the throughput phase counts the rows in B's inbox (state.db)
COOLDOWN_S = 0.3  # offered load continues (unmeasured) after the latency window
ECHO_REPLY_BYTES = 140  # about the size of a SignedAck
TARGET_RELAY_THROUGHPUT = 5000.0  # msg/s, A -> host -> B, batched
TARGET_RELAY_VS_DIRECT = 0.8  # relay ÷ direct batched throughput, same run
# The host's per-connection pacing lifted: the bench measures the relay path, not its policy.
HOST_LIFTS = ["--rate", "100000", "--burst", "100000"]


@dataclass(frozen=True)
class Params:
    crypto_n: int  # in-process crypto iterations
    tput_n: int  # messages (and gRPC calls) in the unary throughput phases
    concurrency: int  # concurrent callers in the unary throughput phases
    batch_n: int  # messages in the batched throughput phases
    batch_size: int  # messages per msg_send_many call (and per bare gRPC batch call)
    batch_concurrency: int  # concurrent msg_send_many callers
    relay_n: int  # messages in the batched throughput phase through the relay host
    rate_s: float  # seconds of offered load in the latency phases
    warmup_n: int  # e2e messages before measuring
    tput_deadline_s: float  # give up waiting for deliveries after this
    grace_s: float  # wait for stragglers after the latency phase
    warmup_timeout_s: float  # warm-up must arrive within this
    hard_limit_s: float  # the whole run is cancelled (children stopped) after this


FULL = Params(
    crypto_n=2000,
    tput_n=5000,
    concurrency=64,
    batch_n=20000,
    batch_size=100,
    batch_concurrency=4,
    relay_n=10000,
    rate_s=10.0,
    warmup_n=100,
    tput_deadline_s=45.0,
    grace_s=5.0,
    warmup_timeout_s=15.0,
    hard_limit_s=200.0,
)
QUICK = Params(
    crypto_n=300,
    tput_n=1000,
    concurrency=64,
    batch_n=1000,
    batch_size=100,
    batch_concurrency=4,
    relay_n=1000,
    rate_s=3.0,
    warmup_n=30,
    tput_deadline_s=10.0,
    grace_s=2.0,
    warmup_timeout_s=8.0,
    hard_limit_s=45.0,
)


# --------------------------------------------------------------------------- bare gRPC echo server


def echo_server_main(ready_file: str, reply_size: int, batch_reply_size: int) -> None:
    """Child-process mode: a minimal grpc.aio server answering raw bytes
    (``Call``: an ack-sized reply; ``CallBatch``: a batch-ack-sized reply)."""
    import grpc

    reply = os.urandom(reply_size)
    batch_reply = os.urandom(batch_reply_size)

    async def call(request: bytes, context: Any) -> bytes:
        return reply

    async def call_batch(request: bytes, context: Any) -> bytes:
        return batch_reply

    async def stream(requests: Any, context: Any) -> Any:
        async for _ in requests:
            yield reply

    async def main() -> None:
        server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", 16 << 20),
                ("grpc.max_send_message_length", 16 << 20),
            ]
        )
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "tmax_bench.Echo",
                    {
                        "Call": grpc.unary_unary_rpc_method_handler(call),
                        "CallBatch": grpc.unary_unary_rpc_method_handler(call_batch),
                        "Stream": grpc.stream_stream_rpc_method_handler(stream),
                    },
                ),
            )
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        await serve_until_signalled(ready_file, {"pid": os.getpid(), "listen": f"127.0.0.1:{port}"})
        await server.stop(grace=0.5)

    asyncio.run(main())


# --------------------------------------------------------------------------- phase: crypto


def wire_sizes(batch_size: int) -> dict[str, int]:
    """Sizes of what travels A -> B: one envelope and its ack (``Deliver``), and
    an ``EnvelopeBatch`` of ``batch_size`` envelopes and its signed batch ack
    (``DeliverBatch``). Used to size the bare gRPC baseline's requests/replies."""
    from tmax_core import envelope as env
    from tmax_core.identity import NodeIdentity
    from tmax_core.proto import mesh_pb2

    a, b = NodeIdentity.generate(), NodeIdentity.generate()
    card = mesh_pb2.ContactCard(endpoints=["127.0.0.1:40000"])
    data = env.seal(
        a,
        to_node_id=b.node_id,
        to_public_key=b.public_key,
        scope="message",
        content_type="text/plain",
        body=b"bench-message-000000",
        contact=card,
    )
    parsed = env.parse(data, 1 << 20)
    ack = env.make_ack(
        b,
        message_id=parsed.message_id,
        to_node_id=a.node_id,
        envelope_hash=parsed.digest,
        status=mesh_pb2.ACK_STATUS_ACCEPTED,
    )
    entries = [
        mesh_pb2.AckEntry(
            message_id=parsed.message_id, envelope_hash=parsed.digest, status=mesh_pb2.ACK_STATUS_ACCEPTED
        )
        for _ in range(batch_size)
    ]
    return {
        "envelope_bytes": len(data),
        "ack_bytes": len(ack),
        "batch_request_bytes": len(mesh_pb2.EnvelopeBatch(envelopes=[data] * batch_size).SerializeToString()),
        "batch_ack_bytes": len(env.make_ack_batch(b, to_node_id=a.node_id, entries=entries)),
    }


def bench_crypto(n: int) -> dict[str, Any]:
    """Per-message crypto of one delivery, in-process, one core, step by step."""
    from tmax_core import envelope as env
    from tmax_core.identity import NodeIdentity
    from tmax_core.proto import mesh_pb2

    a, b = NodeIdentity.generate(), NodeIdentity.generate()
    card = mesh_pb2.ContactCard(endpoints=["127.0.0.1:40000"])  # the node seals one into every message
    body = b"bench-message-000000"
    steps = ["seal", "parse", "verify", "open_content", "make_ack", "verify_ack"]
    totals = dict.fromkeys(steps, 0.0)
    clock = time.perf_counter
    envelope_size = ack_size = 0
    for _ in range(n):
        t0 = clock()
        data = env.seal(
            a,
            to_node_id=b.node_id,
            to_public_key=b.public_key,
            scope="message",
            content_type="text/plain",
            body=body,
            contact=card,
        )
        t1 = clock()
        parsed = env.parse(data, 1 << 20)
        t2 = clock()
        env.verify(parsed)
        t3 = clock()
        env.open_content(b, parsed)
        t4 = clock()
        ack = env.make_ack(
            b,
            message_id=parsed.message_id,
            to_node_id=a.node_id,
            envelope_hash=parsed.digest,
            status=mesh_pb2.ACK_STATUS_ACCEPTED,
        )
        t5 = clock()
        env.verify_ack(
            ack,
            expected_signer_public_key=b.public_key,
            expected_signer_node_id=b.node_id,
            sender_node_id=a.node_id,
            message_id=parsed.message_id,
            envelope_hashes=[parsed.digest],
        )
        t6 = clock()
        for step, dt in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5), strict=True):
            totals[step] += dt
        envelope_size, ack_size = len(data), len(ack)
    per_step_us = {k: v / n * 1e6 for k, v in totals.items()}
    total_us = sum(per_step_us.values())
    return {
        "n": n,
        "per_step_us": per_step_us,
        "total_us": total_us,
        "sender_us": per_step_us["seal"] + per_step_us["verify_ack"],
        "receiver_us": total_us - per_step_us["seal"] - per_step_us["verify_ack"],
        "msgs_per_s_one_core": 1e6 / total_us,
        "envelope_bytes": envelope_size,
        "ack_bytes": ack_size,
    }


# --------------------------------------------------------------------------- phase: bare gRPC


async def bench_grpc(listen: str, server_pid: int, p: Params, sizes: dict[str, int]) -> dict[str, Any]:
    import grpc

    request = os.urandom(sizes["envelope_bytes"])
    batch_request = os.urandom(sizes["batch_request_bytes"])
    options = [
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.max_receive_message_length", 16 << 20),
        ("grpc.max_send_message_length", 16 << 20),
    ]
    async with grpc.aio.insecure_channel(listen, options=options) as ch:
        call = ch.unary_unary(ECHO_METHOD)
        call_batch = ch.unary_unary(ECHO_BATCH_METHOD)
        await asyncio.wait_for(ch.channel_ready(), 10)
        for _ in range(200):  # warm-up
            await call(request, timeout=10)
        for _ in range(10):
            await call_batch(batch_request, timeout=10)

        async def one(_i: int) -> None:
            await call(request, timeout=10)

        cpu = CpuMeter({"server": server_pid, "bench_client": None})
        elapsed = await closed_loop(p.tput_n, p.concurrency, one)
        cpu_per_call = cpu.per_op_us(p.tput_n, elapsed)

        # The batched shape: batch_size envelopes per call (an EnvelopeBatch's
        # bytes), a batch-ack-sized reply, from batch_concurrency callers. As
        # many calls as the unary baseline makes, so the phase lasts long enough
        # for the CPU figures (10 ms clock ticks).
        n_calls = p.tput_n

        async def one_batch(_i: int) -> None:
            await call_batch(batch_request, timeout=10)

        cpu_b = CpuMeter({"server": server_pid, "bench_client": None})
        batch_s = await closed_loop(n_calls, p.batch_concurrency, one_batch)
        batch_msgs = n_calls * p.batch_size
        batch_res = {
            "n": batch_msgs,
            "calls": n_calls,
            "batch_size": p.batch_size,
            "concurrency": p.batch_concurrency,
            "seconds": batch_s,
            "msgs_per_s": batch_msgs / batch_s,
            "cpu": cpu_b.per_op_us(batch_msgs, batch_s),
            "request_bytes": len(batch_request),
            "reply_bytes": sizes["batch_ack_bytes"],
        }

        # The same bytes over one bidi stream: what a streaming PeerService could carry.
        stream = ch.stream_stream(ECHO_STREAM)(timeout=60)
        cpu_s = CpuMeter({"server": server_pid, "bench_client": None})
        t0 = time.perf_counter()

        async def writer() -> None:
            for _ in range(p.tput_n):
                await stream.write(request)
            await stream.done_writing()

        writing = asyncio.create_task(writer())
        replies = 0
        async for _ in stream:
            replies += 1
        await writing
        stream_s = time.perf_counter() - t0
        stream_res = {
            "n": replies,
            "seconds": stream_s,
            "msgs_per_s": replies / stream_s,
            "cpu": cpu_s.per_op_us(replies, stream_s),
        }
        latencies: list[float] = []

        async def timed(_i: int) -> None:
            t0 = time.perf_counter()
            await call(request, timeout=10)
            latencies.append(time.perf_counter() - t0)

        await open_loop(OFFERED_RATE, p.rate_s, timed)
    return {
        "throughput": {
            "n": p.tput_n,
            "concurrency": p.concurrency,
            "seconds": elapsed,
            "cpu": cpu_per_call,
        },
        "calls_per_s": p.tput_n / elapsed,
        "batched": batch_res,
        "bidi_stream": stream_res,
        "latency": {"offered_rate": OFFERED_RATE, **summarize_ms(latencies)},
        "request_bytes": len(request),
        "reply_bytes": sizes["ack_bytes"],
    }


# --------------------------------------------------------------------------- phase: e2e


class Watcher:
    """B's ``inbox_watch`` stream: arrival time (bench monotonic clock) per body."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.arrivals: dict[str, float] = {}
        self.received_at_ms: dict[str, int] = {}
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future]] = []
        self.nudges = 0
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        # include_existing_unread: nothing stored before the stream is up is missed.
        async for m in self.client.inbox_watch(include_existing_unread=True):
            now = time.perf_counter()
            body = m["body"]
            self.arrivals.setdefault(body, now)
            self.received_at_ms.setdefault(body, m["received_at_ms"])
            for cond, fut in list(self._waiters):
                if not fut.done() and cond():
                    fut.set_result(None)

    async def wait(self, cond: Callable[[], bool], timeout: float) -> bool:
        if cond():
            return True
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((cond, fut))
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return cond()
        finally:
            self._waiters.remove((cond, fut))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


async def befriend(a: Any, b: Any, b_node_id: str, a_node_id: str) -> None:
    """B invites (with a rate limit high enough not to be what is measured), A accepts."""
    token = (await b.invite_create(rate_limit=(1e6, 1_000_000)))["token"]
    await a.invite_accept(token, alias="bench-b")
    deadline = time.monotonic() + 20
    while not any(f["node_id"] == a_node_id for f in await b.friends_list()):
        if time.monotonic() > deadline:
            raise RuntimeError("first contact did not reach B within 20 s")
        await asyncio.sleep(0.02)


def read_only(db: Path) -> sqlite3.Connection:
    """A node's state.db opened read-only (WAL: it reads while the node writes)."""
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5, isolation_level=None)


class StoredCount:
    """Counts the messages committed to B's inbox by reading its state.db
    (read-only, WAL): the literal "durably stored" figure, and its cost falls
    on this process, not on the node being measured."""

    def __init__(self, db: Path) -> None:
        self._conn = read_only(db)

    def newest_rowid(self) -> int:
        return self._conn.execute("SELECT coalesce(max(id), 0) FROM inbox").fetchone()[0]

    def stored_after(self, rowid: int) -> int:
        return self._conn.execute("SELECT count(*) FROM inbox WHERE id > ?", (rowid,)).fetchone()[0]

    def close(self) -> None:
        self._conn.close()


def outbox_attempts(db: Path) -> dict[str, Any] | None:
    """Messages and send attempts in A's outbox (read-only): re-sends show up here."""
    try:
        conn = read_only(db)
        try:
            n, attempts, most = conn.execute(
                "SELECT count(*), coalesce(sum(attempts), 0), coalesce(max(attempts), 0) FROM outbox"
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return {"messages": n, "attempts": attempts, "max_attempts": most}


async def bench_e2e(
    a: Any,
    b: Any,
    b_node_id: str,
    pids: dict[str, int],
    a_state_db: Path,
    b_state_db: Path,
    p: Params,
    phase_profiler: PhaseProfiler | None = None,
) -> dict[str, Any]:
    # Warm-up: proves the direct channel and B's watch stream work end to end.
    watcher = Watcher(b)
    watcher.start()
    try:
        warm = [f"warm-{i}" for i in range(p.warmup_n)]
        await closed_loop(len(warm), 8, lambda i: a.msg_send(b_node_id, warm[i].encode()))
        await arrive_all(a, b_node_id, watcher, warm, p.warmup_timeout_s)
    finally:
        await watcher.stop()  # no watcher during the throughput phase: it is extra work for B

    # After each phase A's outbox must empty (bounded): a backlog left over would
    # queue ahead of the next phase's messages.
    def profiler_for(phase: str) -> PhaseProfiler | None:
        return phase_profiler if phase_profiler is not None and phase_profiler.phase == phase else None

    inbox = StoredCount(b_state_db)
    try:
        throughput = await e2e_throughput(
            a, inbox, b_node_id, pids, p, batched=False, profiler=profiler_for("unary")
        )
        throughput["outbox_backlog_after"] = await drain(a, p.tput_deadline_s / 4)
        throughput_batched = await e2e_throughput(
            a, inbox, b_node_id, pids, p, batched=True, profiler=profiler_for("batch")
        )
        throughput_batched["outbox_backlog_after"] = await drain(a, p.tput_deadline_s / 4)
    finally:
        inbox.close()
    status_a = await a.node_status()
    return {
        "throughput": throughput,
        "throughput_batched": throughput_batched,
        "outbox_a": status_a["outbox"],
        "attempts_a": outbox_attempts(Path(a_state_db)),
    }


async def bench_latency(c: Any, d: Any, d_node_id: str, c_node_id: str, logs: tuple[Path, Path], p: Params):
    """The latency phase on its own pair (C→D), whose nodes log per-message
    events: node-level A→B latency comes from their timestamps."""
    await befriend(c, d, d_node_id, c_node_id)
    watcher = Watcher(d)
    watcher.start()
    try:
        latency = await e2e_latency(c, d_node_id, watcher, p)
    finally:
        await watcher.stop()
    latency["node_to_node"] = node_to_node_ms(logs[0], logs[1], latency.pop("message_ids"))
    return latency


async def bench_relay(
    e: Any, f: Any, f_node_id: str, e_node_id: str, pids: dict[str, int], f_state_db: Path, p: Params
) -> dict[str, Any]:
    """The batched throughput phase on a third pair (E→F) whose only transport
    is the relay: A → tmax-host → B, sealed end to end, each envelope answered
    by B's signed ack through the host. Delivery counted as for the direct pair."""
    for name, client in (("E", e), ("F", f)):
        await relay_connected(name, client, 20.0)
    await befriend(e, f, f_node_id, e_node_id)
    warm = [f"relay-warm-{i}" for i in range(p.warmup_n)]
    inbox = StoredCount(f_state_db)
    try:
        base = inbox.newest_rowid()
        await e.msg_send_many([{"to": f_node_id, "body": body.encode()} for body in warm])
        deadline = time.monotonic() + p.warmup_timeout_s
        while inbox.stored_after(base) < len(warm):
            if time.monotonic() > deadline:
                raise RuntimeError(f"relay warm-up did not arrive within {p.warmup_timeout_s:g} s")
            await asyncio.sleep(POLL_S)
        res = await e2e_throughput(
            e, inbox, f_node_id, pids, dataclasses.replace(p, batch_n=p.relay_n), batched=True
        )
    finally:
        inbox.close()
    res["outbox_backlog_after"] = await drain(e, p.tput_deadline_s / 4)
    counters = (await e.node_status())["counters"]
    res["delivered_via"] = {
        k.rpartition(":")[2]: v for k, v in counters.items() if k.startswith("send:delivered:")
    }
    return res


async def relay_connected(name: str, client: Any, timeout: float) -> None:
    """Wait (bounded) until the node's relay transport is registered at the host."""
    deadline = time.monotonic() + timeout
    while True:
        status = await client.node_status()
        relay = next((t for t in status["transports"] if t["name"] == "relay"), None)
        if relay is not None and relay["state"] == "connected":
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"node {name} did not register at the relay host within {timeout:g} s")
        await asyncio.sleep(0.05)


async def e2e_throughput(
    a: Any,
    inbox: StoredCount,
    b_node_id: str,
    pids: dict[str, int],
    p: Params,
    *,
    batched: bool,
    profiler: PhaseProfiler | None = None,
) -> dict[str, Any]:
    """Closed-loop sends into A's local API; delivered = rows committed to B's inbox (polled).

    Unary: ``tput_n`` ``msg_send`` calls from ``concurrency`` callers. Batched:
    ``batch_n`` messages as ``msg_send_many`` calls of ``batch_size`` messages
    from ``batch_concurrency`` callers.
    """
    call_s: list[float] = []
    if batched:
        size = p.batch_size
        n = p.batch_n // size * size

        async def send_batch(j: int) -> None:
            msgs = [{"to": b_node_id, "body": f"tputb-{j * size + k}".encode()} for k in range(size)]
            t0 = time.perf_counter()
            await a.msg_send_many(msgs)
            call_s.append(time.perf_counter() - t0)

        shape = {"api": "msg_send_many", "batch_size": size, "concurrency": p.batch_concurrency}
        load = closed_loop(n // size, p.batch_concurrency, send_batch)
    else:
        n = p.tput_n

        async def send_one(i: int) -> None:
            t0 = time.perf_counter()
            await a.msg_send(b_node_id, f"tput-{i}".encode())
            call_s.append(time.perf_counter() - t0)

        shape = {"api": "msg_send", "batch_size": 1, "concurrency": p.concurrency}
        load = closed_loop(n, p.concurrency, send_one)
    base_rowid = inbox.newest_rowid()
    if profiler is not None:
        await profiler.start()
    cpu = CpuMeter({**pids, "bench_client": None})
    t_start = time.perf_counter()
    sender = asyncio.create_task(load)
    delivered, t_last = 0, t_start
    deadline = t_start + p.tput_deadline_s
    progress: list[tuple[float, int]] = []
    while True:
        stored = inbox.stored_after(base_rowid)
        now = time.perf_counter()
        if stored > delivered:
            delivered, t_last = stored, now
            progress.append((now, delivered))
        if delivered >= n or now > deadline:
            break
        await asyncio.sleep(POLL_S)
    elapsed = t_last - t_start
    cpu_res = cpu.per_op_us(delivered, elapsed)
    accept_s = await sender if sender.done() else None
    if not sender.done():
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
    if profiler is not None:
        await profiler.stop()
    return {
        **shape,
        "n": n,
        "delivered": delivered,
        "complete": delivered >= n,
        "seconds": elapsed,
        "msgs_per_s": delivered / elapsed if elapsed > 0 else 0.0,
        "steady_msgs_per_s": steady_rate(progress, n),
        "accepted_by_api_per_s": (n / accept_s) if accept_s else None,
        "api_call_reply": summarize_ms(call_s),
        "cpu": cpu_res,
    }


def steady_rate(progress: list[tuple[float, int]], n: int) -> float | None:
    """Messages/s between 10 % and 90 % of ``n`` delivered: the rate without the
    pipeline filling up at the start and draining at the end."""
    first = next(((t, d) for t, d in progress if d >= 0.1 * n), None)
    last = next(((t, d) for t, d in progress if d >= 0.9 * n), None)
    if first is None or last is None or last[0] <= first[0]:
        return None
    return (last[1] - first[1]) / (last[0] - first[0])


async def e2e_latency(a: Any, b_node_id: str, watcher: Watcher, p: Params) -> dict[str, Any]:
    """Fixed offered rate (open loop): send call start → arrival on B's watch stream."""
    warm = [f"lat-warm-{i}" for i in range(10)]
    for body in warm:
        await a.msg_send(b_node_id, body.encode())
    await arrive_all(a, b_node_id, watcher, warm, p.warmup_timeout_s)
    watcher.nudges = 0
    starts: dict[str, float] = {}
    starts_wall_ms: dict[str, float] = {}
    api_s: list[float] = []
    ids: dict[str, str] = {}
    errors: list[str] = []

    async def send_timed(i: int) -> None:
        body = f"lat-{i}"
        starts_wall_ms[body] = time.time_ns() / 1e6
        starts[body] = t0 = time.perf_counter()
        try:
            reply = await a.msg_send(b_node_id, body.encode())
        except Exception as err:  # counted, not fatal
            errors.append(str(err))
            return
        api_s.append(time.perf_counter() - t0)
        ids[body] = reply["message_id"]

    # The offered load runs COOLDOWN_S past the measured window, so the last
    # measured messages see the same conditions as the others.
    total = await open_loop(OFFERED_RATE, p.rate_s + COOLDOWN_S, send_timed)
    n = int(OFFERED_RATE * p.rate_s)
    bodies = [f"lat-{i}" for i in range(n)]
    with contextlib.suppress(RuntimeError):
        await arrive_all(a, b_node_id, watcher, [f"lat-{i}" for i in range(total)], p.grace_s)
    one_way = [watcher.arrivals[x] - starts[x] for x in bodies if x in watcher.arrivals]
    # B's received_at_ms is taken when its ingress starts (wall clock, 1 ms resolution).
    to_ingress = [
        (watcher.received_at_ms[x] - starts_wall_ms[x]) / 1000 for x in bodies if x in watcher.received_at_ms
    ]
    # A's delivered_at_ms: the signed ack verified and recorded (wall clock, 1 ms resolution).
    round_trip = []
    for x in bodies:
        if x in ids:
            st = await a.msg_status(ids[x])
            if st["status"] == "delivered" and st["delivered_at_ms"]:
                round_trip.append((st["delivered_at_ms"] - starts_wall_ms[x]) / 1000)
    return {
        "message_ids": [ids[x] for x in bodies if x in ids],
        "offered_rate": OFFERED_RATE,
        "sent": n,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "delivered": len(one_way),
        **summarize_ms(one_way),
        "watch_nudges": watcher.nudges,
        "msg_send_reply": summarize_ms(api_s),
        "to_b_ingress_start_1ms": summarize_ms(to_ingress),
        "to_ack_recorded_at_a_1ms": summarize_ms(round_trip),
    }


async def arrive_all(a: Any, b_node_id: str, watcher: Watcher, bodies: list[str], timeout: float) -> None:
    """Wait until every body is on B's watch stream.

    If the stream goes quiet for a second with bodies still missing, one
    unmeasured "nudge" message makes B notify its watchers again; the count is
    reported (``watch_nudges``): non-zero means the watch stream held a stored
    message back until the next one arrived (a lost wake-up).
    """
    deadline = time.monotonic() + timeout
    nudges = 0
    while not await watcher.wait(lambda: all(x in watcher.arrivals for x in bodies), 1.0):
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"messages did not arrive on B's inbox watch within {timeout:g} s "
                f"(seen {sum(x in watcher.arrivals for x in bodies)}/{len(bodies)}, "
                f"A outbox {(await a.node_status())['outbox']})"
            )
        nudges += 1
        await a.msg_send(b_node_id, f"nudge-{time.monotonic_ns()}".encode())
    watcher.nudges += nudges


async def drain(a: Any, timeout: float) -> int:
    """Wait (bounded) until A's outbox has nothing queued or sent; returns what is left."""
    deadline = time.monotonic() + timeout
    while True:
        counts = (await a.node_status())["outbox"]
        left = sum(counts.get(s, 0) for s in ("queued", "sent"))
        if not left or time.monotonic() >= deadline:
            return left
        await asyncio.sleep(0.05)


# --------------------------------------------------------------------------- orchestration


def profiler_prefix(profile_dir: Path | None, name: str, native: bool) -> list[str]:
    """``py-spy record`` (100 Hz, one row per thread; non-blocking unless native) as a wrapper."""
    if profile_dir is None:
        return []
    return [
        find_pyspy(),
        "record",
        "--format",
        "raw",
        "--threads",
        # --native needs the target paused per sample (slower, more perturbing).
        *(["--native"] if native else ["--nonblocking"]),
        "--rate",
        "100",
        "--output",
        str(profile_dir / f"{name}.collapsed.txt"),
        "--",
    ]


async def run(
    p: Params,
    mode: str,
    workdir: Path,
    profile_dir: Path | None,
    native: bool = False,
    profile_phase: str = "run",
) -> dict[str, Any]:
    from tmax_core.client import AsyncJsonNodeClient

    children: list[Child] = []
    phase_profiler: PhaseProfiler | None = None
    try:
        t_run = time.monotonic()
        sizes = wire_sizes(p.batch_size)
        # Children start first (they import in parallel with our crypto phase).
        echo_argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--echo-server",
            str(sizes["ack_bytes"]),
            str(sizes["batch_ack_bytes"]),
        ]
        echo = Child("echo", echo_argv, workdir)
        whole_run_profile = profile_dir if profile_phase == "run" else None
        nodes = {}
        for name in ("node-a", "node-b", "node-c", "node-d"):
            state = workdir / name
            state.mkdir()
            nodes[name] = Child(
                name,
                [str(BIN / "tmax-node"), "--state-dir", str(state), "--peer-listen", "127.0.0.1:0"],
                workdir,
                prefix=profiler_prefix(whole_run_profile, name, native) if name < "node-c" else None,
            )
        # The latency pair logs an event per message (JSON, µs timestamps).
        for child in (echo, *nodes.values()):
            children.append(child)
            child.spawn(env=node_env() | (TRACED if child.name in ("node-c", "node-d") else {}))
        # The relay pair (E, F): no listener, the direct plugin off, so the host carries everything.
        host = Child("host", [str(BIN / "tmax-host"), "--listen", "127.0.0.1:0", *HOST_LIFTS], workdir)
        children.append(host)
        host.spawn(env=node_env())
        for child in children:
            await child.wait_ready()
        relay_url = f"grpc://{host.ready['listen']}"
        for name in ("node-e", "node-f"):
            state = workdir / name
            state.mkdir()
            nodes[name] = Child(
                name, [str(BIN / "tmax-node"), "--state-dir", str(state), "--relay", relay_url], workdir
            )
            children.append(nodes[name])
            nodes[name].spawn(env=node_env() | {"TMAX_MESH_DISABLE_PLUGINS": "direct"})

        print(f"[{mode}] crypto baseline: {p.crypto_n} messages in-process ...", flush=True)
        crypto = bench_crypto(p.crypto_n)

        a_ready, b_ready = nodes["node-a"].ready, nodes["node-b"].ready
        async with (
            AsyncJsonNodeClient(a_ready["socket"]) as a,
            AsyncJsonNodeClient(b_ready["socket"]) as b,
        ):
            await befriend(a, b, b_ready["node_id"], a_ready["node_id"])

            print(
                f"[{mode}] bare gRPC: {p.tput_n} calls, {p.tput_n} calls of "
                f"{p.batch_size}, then {p.rate_s:g}s at 100/s ...",
                flush=True,
            )
            grpc_res = await bench_grpc(echo.ready["listen"], echo.ready["pid"], p, sizes)
            echo.stop()

            print(
                f"[{mode}] e2e A→B direct: {p.tput_n} msgs unary, {p.batch_n} msgs batched, "
                f"then {p.rate_s:g}s at 100/s ...",
                flush=True,
            )
            pids = {"node_a": a_ready["pid"], "node_b": b_ready["pid"]}
            if profile_dir is not None and profile_phase != "run":
                node_pids = {"node-a": a_ready["pid"], "node-b": b_ready["pid"]}
                phase_profiler = PhaseProfiler(profile_dir, profile_phase, node_pids, workdir)
            a_db, b_db = workdir / "node-a" / "state.db", workdir / "node-b" / "state.db"
            e2e = await bench_e2e(a, b, b_ready["node_id"], pids, a_db, b_db, p, phase_profiler)
        c_ready, d_ready = nodes["node-c"].ready, nodes["node-d"].ready
        async with (
            AsyncJsonNodeClient(c_ready["socket"]) as c,
            AsyncJsonNodeClient(d_ready["socket"]) as d,
        ):
            logs = (nodes["node-c"].log_path, nodes["node-d"].log_path)
            e2e["latency"] = await bench_latency(c, d, d_ready["node_id"], c_ready["node_id"], logs, p)
        print(f"[{mode}] e2e E→host→F relay: {p.relay_n} msgs batched ...", flush=True)
        e_ready, f_ready = await nodes["node-e"].wait_ready(), await nodes["node-f"].wait_ready()
        async with (
            AsyncJsonNodeClient(e_ready["socket"]) as e,
            AsyncJsonNodeClient(f_ready["socket"]) as f,
        ):
            relay_pids = {"node_a": e_ready["pid"], "node_b": f_ready["pid"], "host": host.ready["pid"]}
            e2e["relay_batched"] = await bench_relay(
                e, f, f_ready["node_id"], e_ready["node_id"], relay_pids, workdir / "node-f" / "state.db", p
            )
        return {
            "crypto": crypto,
            "wire": sizes,
            "grpc": grpc_res,
            "e2e": e2e,
            "wall_seconds": time.monotonic() - t_run,
        }
    finally:
        if phase_profiler is not None:
            phase_profiler.kill()
        for child in reversed(children):
            child.stop()


API_LABELS = {"msg_send": "unary msg_send", "msg_send_many": "batched msg_send_many"}


def assess(res: dict[str, Any]) -> dict[str, Any]:
    e, g, c = res["e2e"], res["grpc"], res["crypto"]
    unary, batched, relay = e["throughput"], e["throughput_batched"], e["relay_batched"]
    relay_ratio = ratio(relay["msgs_per_s"], batched["msgs_per_s"])
    relay_only = set(relay["delivered_via"]) == {"relay"}
    unary_cpu = unary["cpu"].get("node_a", {}).get("cpu_us_per_op")
    e2e_p50 = e["latency"].get("p50_ms")
    n2n_p50 = e["latency"]["node_to_node"].get("p50_ms")
    g_lat = g["latency"]
    # The throughput target is judged on the better of the two APIs (a complete run first).
    best = max((unary, batched), key=lambda t: (t["complete"], t["msgs_per_s"]))
    acks_us = c["per_step_us"]["make_ack"] + c["per_step_us"]["verify_ack"]
    return {
        "ratios": {
            "e2e_throughput_vs_grpc": ratio(unary["msgs_per_s"], g["calls_per_s"]),
            "e2e_batched_throughput_vs_grpc_batched": ratio(
                batched["msgs_per_s"], g["batched"]["msgs_per_s"]
            ),
            "e2e_batched_vs_unary_throughput": ratio(batched["msgs_per_s"], unary["msgs_per_s"]),
            "relay_vs_direct_batched_throughput": ratio(relay["msgs_per_s"], batched["msgs_per_s"]),
            "e2e_p50_vs_grpc_p50": ratio(e2e_p50, g_lat.get("p50_ms")),
            "e2e_p99_vs_grpc_p99": ratio(e["latency"].get("p99_ms"), g_lat.get("p99_ms")),
            "e2e_throughput_vs_crypto_one_core": ratio(unary["msgs_per_s"], c["msgs_per_s_one_core"]),
            "e2e_batched_throughput_vs_crypto_one_core_acks_amortised": ratio(
                batched["msgs_per_s"], 1e6 / (c["total_us"] - acks_us)
            ),
        },
        "targets": {
            "throughput_msgs_per_s": {
                "target": TARGET_THROUGHPUT,
                "value": best["msgs_per_s"],
                "api": best["api"],
                "met": best["msgs_per_s"] >= TARGET_THROUGHPUT and best["complete"],
            },
            "unary_vs_grpc_unary": {
                "target": TARGET_UNARY_VS_GRPC,
                "value": ratio(unary["msgs_per_s"], g["calls_per_s"]),
                "met": unary["complete"] and unary["msgs_per_s"] >= TARGET_UNARY_VS_GRPC * g["calls_per_s"],
            },
            "unary_node_a_cpu_us_per_msg": {
                "target": TARGET_UNARY_CPU_US,
                "value": unary_cpu,
                "met": unary_cpu is not None and unary_cpu <= TARGET_UNARY_CPU_US,
            },
            "unary_p50_ms_at_100_per_s": {
                "target": TARGET_UNARY_P50_MS,
                "value": n2n_p50,
                "met": n2n_p50 is not None and n2n_p50 <= TARGET_UNARY_P50_MS,
            },
            "relay_throughput_msgs_per_s": {
                "target": TARGET_RELAY_THROUGHPUT,
                "value": relay["msgs_per_s"],
                "met": relay["msgs_per_s"] >= TARGET_RELAY_THROUGHPUT and relay["complete"] and relay_only,
            },
            "relay_vs_direct_batched": {
                "target": TARGET_RELAY_VS_DIRECT,
                "value": relay_ratio,
                "met": relay_ratio is not None and relay_ratio >= TARGET_RELAY_VS_DIRECT and relay_only,
            },
            "p50_ms_at_100_per_s": {
                "target": TARGET_P50_MS,
                "value": n2n_p50,
                "api": "msg_send",
                "measured": "node A accepted -> node B stored",
                "met": n2n_p50 is not None and n2n_p50 <= TARGET_P50_MS,
            },
        },
    }


def cpu_parts(cpu: dict[str, Any]) -> str:
    parts = [
        f"{k} {v['cpu_us_per_op']:,.{0 if v['cpu_us_per_op'] >= 100 else 1}f} ({v['cores_busy']:.2f})"
        for k, v in cpu.items()
        if isinstance(v, dict)
    ]
    if "machine_cores_busy" in cpu:
        parts.append(f"whole machine {cpu['machine_cores_busy']:.2f} cores")
    return ", ".join(parts)


def print_table(out: dict[str, Any]) -> None:
    r, env_ = out["results"], out["environment"]
    c, g, e = r["crypto"], r["grpc"], r["e2e"]
    tp, tb, lat = e["throughput"], e["throughput_batched"], e["latency"]
    gb, gl = g["batched"], g["latency"]
    ra, tg = out["ratios"], out["targets"]
    w = 50
    line = "-" * (w + 42)
    print()
    print(
        f"tmax-mesh messaging benchmark ({out['mode']}) - {env_['cpus']} CPUs, "
        f"Python {env_['python']}, grpcio {env_['grpcio']}, loadavg {env_['loadavg_at_start']}"
    )
    print(line)
    print(f"{'':{w}}{'e2e A->B':>16}{'bare gRPC':>14}{'ratio':>12}")
    print(line)
    print(
        f"{'throughput, unary msg_send, C=' + str(tp['concurrency']) + ' (msg/s)':{w}}"
        f"{fmt(tp['msgs_per_s']):>16}{fmt(g['calls_per_s']):>14}{fmt(ra['e2e_throughput_vs_grpc'], 3):>11}x"
    )
    label = f"throughput, batched msg_send_many x{tb['batch_size']}, C={tb['concurrency']} (msg/s)"
    print(
        f"{label:{w}}{fmt(tb['msgs_per_s']):>16}{fmt(gb['msgs_per_s']):>14}"
        f"{fmt(ra['e2e_batched_throughput_vs_grpc_batched'], 3):>11}x"
    )
    rl = e["relay_batched"]
    label = f"throughput, batched x{rl['batch_size']}, via tmax-host (msg/s)"
    print(
        f"{label:{w}}{fmt(rl['msgs_per_s']):>16}{'(÷ direct)':>14}"
        f"{fmt(ra['relay_vs_direct_batched_throughput'], 3):>11}x"
    )
    n2n = lat["node_to_node"]
    for q in ("p50", "p90", "p99"):
        print(f"{'latency ' + q + ' @ 100 msg/s, node A -> node B (ms)':{w}}{fmt(n2n.get(f'{q}_ms')):>16}")
    for q in ("p50", "p90", "p99"):
        rq = ratio(lat.get(f"{q}_ms"), gl.get(f"{q}_ms"))
        print(
            f"{'latency ' + q + ' @ 100 msg/s, client -> watcher (ms)':{w}}"
            f"{fmt(lat.get(f'{q}_ms')):>16}{fmt(gl.get(f'{q}_ms')):>14}{fmt(rq, 1):>11}x"
        )
    print(line)
    print(
        f"bare gRPC: unary = 1 envelope/call ({g['request_bytes']} B request, {g['reply_bytes']} B reply), "
        f"C={g['throughput']['concurrency']}; batched = {gb['batch_size']} envelopes/call "
        f"({gb['request_bytes']:,} B, {gb['reply_bytes']:,} B), C={gb['concurrency']}"
    )
    for t in (tp, tb, rl):
        shape = f" x{t['batch_size']}" if t["batch_size"] > 1 else ""
        where = ", E -> tmax-host -> F (relay only)" if t is rl else ""
        print(f"e2e throughput phase: {API_LABELS[t['api']]}{shape}, C={t['concurrency']}{where}")
        print(f"{'  delivered / sent, seconds':{w}}{t['delivered']:>16} / {t['n']} in {t['seconds']:.2f}s")
        print(f"{'  steady rate, 10% -> 90% delivered (msg/s)':{w}}{fmt(t['steady_msgs_per_s']):>16}")
        print(f"{'  accepted by A (API, msg/s)':{w}}{fmt(t['accepted_by_api_per_s']):>16}")
        cr = t["api_call_reply"]
        print(
            f"{'  ' + t['api'] + ' reply p50 / p99 (ms)':{w}}"
            f"{fmt(cr.get('p50_ms')):>16} / {fmt(cr.get('p99_ms'))}"
        )
        if t.get("cpu"):
            print(f"{'  CPU us/msg (cores busy)':{w}}{cpu_parts(t['cpu'])}")
        if "delivered_via" in t:
            via = ", ".join(f"{k} {v:,}" for k, v in sorted(t["delivered_via"].items()))
            print(f"{'  sender: messages delivered, by path (whole run)':{w}}{via:>16}")
        if t.get("outbox_backlog_after"):
            print(f"{'  A outbox NOT drained after the phase (msgs)':{w}}{t['outbox_backlog_after']:>16}")
    print("latency phase: unary msg_send, open loop at 100 msg/s, on a second pair of nodes (C->D)")
    print(
        "  node A -> node B: A's outbox accepted it -> B committed it to its inbox "
        f"(the nodes' debug log timestamps; {n2n.get('n', 0)} msgs)"
    )
    print("  client -> watcher: msg_send call start -> arrival on B's inbox_watch (adds 2 local API hops)")
    print(
        f"{'  delivered / sent (errors)':{w}}{lat['delivered']:>16} / {lat['sent']} (errors {lat['errors']})"
    )
    print(f"{'  inbox_watch: stored msgs held back (nudges)':{w}}{lat['watch_nudges']:>16}")
    ms = lat["msg_send_reply"]
    print(f"{'  msg_send reply p50 / p99 (ms)':{w}}{fmt(ms.get('p50_ms')):>16} / {fmt(ms.get('p99_ms'))}")
    ing = lat["to_b_ingress_start_1ms"]
    print(
        f"{'  send -> B ingress start p50 / p99 (ms, 1ms res)':{w}}"
        f"{fmt(ing.get('p50_ms')):>16} / {fmt(ing.get('p99_ms'))}"
    )
    rt = lat["to_ack_recorded_at_a_1ms"]
    print(
        f"{'  send -> ack recorded at A p50 / p99 (ms, 1ms)':{w}}"
        f"{fmt(rt.get('p50_ms')):>16} / {fmt(rt.get('p99_ms'))}"
    )
    att = e.get("attempts_a") or {}
    if att:
        print(
            f"{'A outbox: messages / send attempts (max)':{w}}"
            f"{att['messages']:>16} / {att['attempts']} ({att['max_attempts']})"
        )
    print(f"{'bare gRPC unary: CPU us/call (cores)':{w}}{cpu_parts(g['throughput'].get('cpu', {}))}")
    print(f"{'bare gRPC batched: CPU us/msg (cores)':{w}}{cpu_parts(gb.get('cpu', {}))}")
    bs = g.get("bidi_stream")
    if bs:
        print(
            f"{'bare gRPC, one bidi stream (msgs/s)':{w}}{fmt(bs['msgs_per_s']):>16}   {cpu_parts(bs['cpu'])}"
        )
    print(line)
    steps = " + ".join(f"{k} {v:.0f}" for k, v in c["per_step_us"].items())
    print(f"{'crypto per message, one core (us)':{w}}{fmt(c['total_us'], 0):>16}   ({steps})")
    print(
        f"{'  -> msgs/s one core could seal+open+ack':{w}}{fmt(c['msgs_per_s_one_core']):>16}"
        f"   (unary e2e is {fmt(ra['e2e_throughput_vs_crypto_one_core'], 3)}x of it; "
        f"sender {c['sender_us']:.0f} us, receiver {c['receiver_us']:.0f} us)"
    )
    acks_us = c["per_step_us"]["make_ack"] + c["per_step_us"]["verify_ack"]
    print(
        f"{'  -> the same with acks amortised over a batch':{w}}{fmt(1e6 / (c['total_us'] - acks_us)):>16}"
        f"   (batched e2e is {fmt(ra['e2e_batched_throughput_vs_crypto_one_core_acks_amortised'], 3)}x of it)"
    )
    print(f"{'  envelope / ack size (bytes)':{w}}{c['envelope_bytes']:>16} / {c['ack_bytes']}")
    print(line)
    t1, t2 = tg["throughput_msgs_per_s"], tg["p50_ms_at_100_per_s"]
    u1, u2, u3 = (
        tg[k] for k in ("unary_vs_grpc_unary", "unary_node_a_cpu_us_per_msg", "unary_p50_ms_at_100_per_s")
    )
    r1, r2 = tg["relay_throughput_msgs_per_s"], tg["relay_vs_direct_batched"]
    targets = [
        (
            f">= {t1['target']:,.0f} msg/s sustained (best API)",
            t1,
            f"{fmt(t1['value'])} msg/s, {API_LABELS[t1['api']]}",
        ),
        (
            f"p50 <= {t2['target']:g} ms at 100 msg/s",
            t2,
            f"{fmt(t2['value'])} ms, node A -> node B; client -> watcher {fmt(lat.get('p50_ms'))} ms",
        ),
        (f"unary msg_send >= {u1['target']:g}x bare gRPC unary", u1, f"{fmt(u1['value'], 3)}x"),
        (f"unary msg_send, node A <= {u2['target']:g} us CPU/msg", u2, f"{fmt(u2['value'], 0)} us"),
        (
            f"p50 <= {u3['target']:g} ms at 100 msg/s (issue 17)",
            u3,
            f"{fmt(u3['value'])} ms, node A -> node B",
        ),
        (f"relay >= {r1['target']:,.0f} msg/s (batched)", r1, f"{fmt(r1['value'])} msg/s"),
        (f"relay >= {r2['target']:g}x direct (batched)", r2, f"{fmt(r2['value'], 3)}x"),
    ]
    for label, t, detail in targets:
        print(f"{'target: ' + label:{w}}{'MET' if t['met'] else 'NOT MET'} ({detail})")
    print(line)
    print(f"wall time {r['wall_seconds']:.1f}s; JSON: {out['json_path']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller counts, < 40 s")
    ap.add_argument("--name", help="results name (default: messaging or messaging-quick)")
    ap.add_argument(
        "--profile",
        metavar="DIR",
        help="run both nodes under `py-spy record` (collapsed stacks in DIR; "
        "summarise with bench/profile_summary.py); figures are then perturbed",
    )
    ap.add_argument(
        "--profile-native", action="store_true", help="with --profile: include C frames (py-spy --native)"
    )
    ap.add_argument(
        "--profile-phase",
        choices=("run", "unary", "batch"),
        default="run",
        help="with --profile: `run` wraps the nodes for the whole run (DIR/node-{a,b}.collapsed.txt); "
        "`unary` / `batch` attach py-spy during that throughput phase only "
        "(DIR/node-{a,b}.PHASE.collapsed.txt)",
    )
    ap.add_argument(
        "--batch-n", type=int, help="messages in the batched throughput phases (default 20000/1000)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the temp state dirs and node logs")
    ap.add_argument("--echo-server", nargs=2, metavar="REPLY_BYTES", help=argparse.SUPPRESS)
    ap.add_argument("--ready-file", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.echo_server:
        echo_server_main(args.ready_file, int(args.echo_server[0]), int(args.echo_server[1]))
        return 0

    mode = "quick" if args.quick else "full"
    p = QUICK if args.quick else FULL
    if args.batch_n:
        # More messages: wait longer for them (and for A's outbox to drain after).
        batch_n = max(p.batch_size, args.batch_n)
        deadline = p.tput_deadline_s * max(1.0, batch_n / p.batch_n)
        extra = (deadline - p.tput_deadline_s) * 1.5  # the phase, the drains after both phases
        p = dataclasses.replace(
            p, batch_n=batch_n, tput_deadline_s=deadline, hard_limit_s=p.hard_limit_s + extra
        )
    name = args.name or ("messaging-quick" if args.quick else "messaging")
    profile_dir = Path(args.profile).resolve() if args.profile else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
        name += "-profiled"
    workdir = Path(tempfile.mkdtemp(prefix="tmax-bench-"))
    env_info = environment()
    hard_limit = p.hard_limit_s * (3 if profile_dir else 1)  # sampling slows the nodes down
    results = run_bounded(
        run(p, mode, workdir, profile_dir, args.profile_native, args.profile_phase),
        hard_limit,
        workdir,
        "state dirs and node logs",
    )
    if isinstance(results, int):
        return results
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)

    out = {
        "benchmark": "messaging",
        "mode": mode,
        "profiled": profile_dir is not None,
        "params": p.__dict__,
        "environment": env_info,
        "results": results,
        **assess(results),
    }
    print_table(write_results(name, out))
    if args.keep:
        print(f"state dirs and node logs kept in {workdir}")
    if profile_dir is not None:
        suffix = "" if args.profile_phase == "run" else f".{args.profile_phase}"
        print(f"profiles: {profile_dir}/node-a{suffix}.collapsed.txt, node-b{suffix}.collapsed.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
