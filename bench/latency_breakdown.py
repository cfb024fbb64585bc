"""Where a lone message's time goes, node A → node B at 100 msg/s (issue 17).

    .venv/bin/python bench/latency_breakdown.py                  # 5 s at 100 msg/s
    .venv/bin/python bench/latency_breakdown.py --code /path/to/other/checkout
    .venv/bin/python bench/latency_breakdown.py --carriers       # also bare gRPC stream vs raw TCP

Starts a pair of real ``tmax-node`` processes as ``bench/messaging.py``'s
latency pair (``--peer-listen 127.0.0.1:0``, friends through the invite flow,
debug JSON logs) with ``bench/stamps`` on their ``PYTHONPATH``: its
``sitecustomize`` stamps the send and receive path's steps on the machine's
monotonic clock. Unary ``msg_send`` calls go into A open loop at 100 msg/s, so
each message travels alone. Per message, the steps are found in order in the
two nodes' stamps, and the table gives each step's median duration and the
median time from the ``MsgSend`` call's arrival at A; **A → B** is the
messaging bench's figure (A's ``accepted`` log record → B's ``stored`` one).
The stamps cost about a microsecond each, so the total runs a little above the
bench's.

``--carriers`` adds the one-way latency of the transport alone: a
``grpc.aio`` bidi stream (as ``DeliverStream``) and a raw asyncio TCP
connection (as the direct plugin's punched links), between two processes at
the same rate, with envelope-sized messages, alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import shutil
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from common import BIN, TRACED, Child, node_env, open_loop
from messaging import StoredCount, befriend

STAMPS = Path(__file__).resolve().parent / "stamps"
RATE = 100.0  # msg/s: one message at a time
WINDOW_NS = 9_000_000  # a message's stamps are looked for this long after its MsgSend (the next is 10 ms on)
CARRIER_MESSAGES = 300
ENVELOPE_BYTES = 300
ACK_BYTES = 170

# (what happened, stamp): each looked for after the one before, in one message's window.
STEPS = [
    ("A: MsgSend handler entered", "A:NodeApiServicer.MsgSend>"),
    ("A: outbox takes it (send queue flushed)", "A:Outbox.submit_many>"),
    ("A: 'accepted' logged (bench A -> B starts)", "A:StreamHandler.emit>"),
    ("A: outbox row commit starts", "A:Store.outbox_put_many>"),
    ("A: outbox row committed (durable)", "A:Store.outbox_put_many<"),
    ("A: sealed (sign, encrypt)", "A:Outbox._seal<"),
    ("A: send attempt runs (drain task)", "A:Outbox._attempt>"),
    ("A: transport chosen", "A:Node.transports_for<"),
    ("A: DeliverStream write starts", "A:stream.write>"),
    ("B: DeliverStream message read", "B:stream.read"),
    ("B: ingress starts", "B:Ingress.process>"),
    ("B: parsed, prechecked (rate limit)", "B:Ingress._precheck<"),
    ("B: seen-id lookup done", "B:Store.seen_check_many<"),
    ("B: signature verified", "B:envelope.verify<"),
    ("B: decrypted", "B:envelope.open_content<"),
    ("B: inbox commit starts", "B:Store.inbox_insert_within_quota>"),
    ("B: inbox row committed (durable)", "B:Store.inbox_insert_within_quota<"),
    ("B: 'stored' logged (bench A -> B ends)", "B:StreamHandler.emit>"),
    ("B: seen ids recorded", "B:Store.record_received_many<"),
    ("B: batch ack signed", "B:envelope.make_ack_batch<"),
    ("A: ack read from the stream", "A:stream.answer"),
    ("A: ack verified", "A:envelope.verify_ack_batch<"),
    ("A: outcome recorded", "A:Outbox._record<"),
]
ACCEPTED = STEPS[2][1]
STORED = STEPS[17][1]


def code_path(checkout: Path | None) -> list[str]:
    """PYTHONPATH entries that make the nodes run ``checkout``'s code (core and plugins)."""
    if checkout is None:
        return []
    return [str(checkout), *(str(p) for p in sorted((checkout / "plugins").iterdir()) if p.is_dir())]


def load_stamps(path: Path, side: str) -> list[tuple[int, str]]:
    stamps = []
    for line in path.read_text().splitlines():
        t, name = line.split(" ", 1)
        stamps.append((int(t), f"{side}:{name}"))
    return stamps


def message_steps(stamps: list[tuple[int, str]]) -> list[list[int]]:
    """For each message whose steps were all found: their times, in ``STEPS`` order."""
    starts = [i for i, (_t, name) in enumerate(stamps) if name == STEPS[0][1]]
    found = []
    for i in starts:
        t0, times, j = stamps[i][0], [stamps[i][0]], i + 1
        for _what, wanted in STEPS[1:]:
            while j < len(stamps) and stamps[j][1] != wanted and stamps[j][0] < t0 + WINDOW_NS:
                j += 1
            if j == len(stamps) or stamps[j][0] >= t0 + WINDOW_NS:
                break
            times.append(stamps[j][0])
        if len(times) == len(STEPS):
            found.append(times)
    return found


def print_breakdown(messages: list[list[int]]) -> None:
    steps = [s for _what, s in STEPS]
    since_start = [statistics.median(m[k] - m[0] for m in messages) / 1000 for k in range(len(STEPS))]
    took = [0.0] + [statistics.median(m[k] - m[k - 1] for m in messages) / 1000 for k in range(1, len(STEPS))]
    print(f"{len(messages)} messages, each alone; medians in µs")
    print(f"{'step':58}{'took':>9}{'since MsgSend':>15}")
    for (what, _stamp), step_us, at_us in zip(STEPS, took, since_start, strict=True):
        print(f"{what:58}{step_us:9.0f}{at_us:15.0f}")
    a, b = steps.index(ACCEPTED), steps.index(STORED)
    write, read = steps.index("A:stream.write>"), steps.index("B:stream.read")
    for label, first, last in (
        ("A -> B (the messaging bench's figure)", a, b),
        ("  of which A, accepted -> stream write", a, write),
        ("  of which gRPC, A's write -> B's read", write, read),
        ("  of which B, read -> stored", read, b),
    ):
        print(f"{label:58}{statistics.median(m[last] - m[first] for m in messages) / 1000:9.0f}")


async def run_pair(workdir: Path, checkout: Path | None, seconds: float) -> list[list[int]]:
    from tmax_core.client import AsyncJsonNodeClient

    stamps_dir = workdir / "stamps"
    stamps_dir.mkdir()
    env = node_env() | TRACED
    pythonpath = os.pathsep.join([*code_path(checkout), str(STAMPS)])
    env |= {"PYTHONPATH": pythonpath, "TMAX_STAMPS": str(stamps_dir)}
    nodes = [
        Child(
            f"node-{side}",
            [str(BIN / "tmax-node"), "--state-dir", str(workdir / side), "--peer-listen", "127.0.0.1:0"],
            workdir,
        )
        for side in ("a", "b")
    ]
    try:
        for node in nodes:
            (workdir / node.name[-1]).mkdir()
            node.spawn(env=env)
        a_ready, b_ready = [await node.wait_ready() for node in nodes]
        async with AsyncJsonNodeClient(a_ready["socket"]) as a, AsyncJsonNodeClient(b_ready["socket"]) as b:
            await befriend(a, b, b_ready["node_id"], a_ready["node_id"])
            inbox = StoredCount(workdir / "b" / "state.db")
            try:
                for i in range(20):  # warm-up, one at a time
                    await a.msg_send(b_ready["node_id"], f"warm-{i}".encode())
                base = inbox.newest_rowid()

                async def send(i: int) -> None:
                    await a.msg_send(b_ready["node_id"], f"lat-{i}".encode())

                n = await open_loop(RATE, seconds, send)
                deadline = time.monotonic() + 10
                while inbox.stored_after(base) < n and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
            finally:
                inbox.close()
    finally:
        for node in reversed(nodes):
            node.stop()  # SIGTERM: the nodes write their stamps as they exit
    try:
        stamps = load_stamps(stamps_dir / f"{a_ready['pid']}.stamps", "A")
        stamps += load_stamps(stamps_dir / f"{b_ready['pid']}.stamps", "B")
    except FileNotFoundError:
        # bench/stamps failed in the node (e.g. a stamped function was renamed): say why.
        raise RuntimeError(f"a node wrote no stamps; its log ends:\n{nodes[0].log_tail()}") from None
    return message_steps(sorted(stamps))


# --------------------------------------------------------------------------- carriers


def _carrier_server(kind: str, port: Any, results: Any) -> None:
    """Child process: read timestamped messages, record how old each is, answer each."""
    import grpc

    one_way: list[int] = []

    def arrived(raw: bytes) -> None:
        one_way.append(time.perf_counter_ns() - struct.unpack(">q", raw[:8])[0])
        if len(one_way) == CARRIER_MESSAGES:
            results.put(one_way)

    async def main() -> None:
        if kind == "grpc":

            async def stream(requests: Any, context: Any) -> None:
                async for raw in requests:
                    arrived(raw)
                    await context.write(b"a" * ACK_BYTES)

            server = grpc.aio.server()
            handler = grpc.method_handlers_generic_handler(
                "b.Carrier", {"Stream": grpc.stream_stream_rpc_method_handler(stream)}
            )
            server.add_generic_rpc_handlers((handler,))
            port.put(server.add_insecure_port("127.0.0.1:0"))
            await server.start()
            await server.wait_for_termination()
        else:

            async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                with contextlib.suppress(asyncio.IncompleteReadError):  # the client is done
                    while True:
                        arrived(await reader.readexactly(ENVELOPE_BYTES))
                        writer.write(b"a" * ACK_BYTES)

            server = await asyncio.start_server(serve, "127.0.0.1", 0)
            port.put(server.sockets[0].getsockname()[1])
            await server.serve_forever()

    asyncio.run(main())


async def _carrier_client(kind: str, port: int) -> None:
    import grpc

    def message() -> bytes:
        return struct.pack(">q", time.perf_counter_ns()) + b"e" * (ENVELOPE_BYTES - 8)

    write: Callable[[bytes], Awaitable[Any]]
    read: Callable[[], Awaitable[Any]]
    if kind == "grpc":
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        call = channel.stream_stream("/b.Carrier/Stream")()
        write, read, close = call.write, call.read, channel.close
    else:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def write(data: bytes) -> None:
            writer.write(data)

        async def read() -> bytes:
            return await reader.readexactly(ACK_BYTES)

        async def close() -> None:
            writer.close()
            await writer.wait_closed()

    for _ in range(CARRIER_MESSAGES):
        await write(message())
        await read()
        await asyncio.sleep(1 / RATE)
    await close()


def carrier_one_way_us(kind: str) -> float:
    """Median one-way latency (µs) of ``kind`` ("grpc" or "tcp") at ``RATE``."""
    ctx = multiprocessing.get_context("spawn")
    port, results = ctx.Queue(), ctx.Queue()
    server = ctx.Process(target=_carrier_server, args=(kind, port, results), daemon=True)
    server.start()
    try:
        asyncio.run(_carrier_client(kind, port.get(timeout=30)))
        return statistics.median(results.get(timeout=30)) / 1000
    finally:
        server.kill()
        server.join()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=5.0, help="seconds of offered load (default 5)")
    p.add_argument("--code", type=Path, help="run the nodes on this checkout's code (core and plugins)")
    p.add_argument("--carriers", type=int, nargs="?", const=3, default=0, metavar="ROUNDS",
                   help="also measure the bare carriers, ROUNDS times each (default 3)")  # fmt: skip
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="tmax-breakdown-"))
    try:
        messages = asyncio.run(run_pair(workdir, args.code, args.seconds))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not messages:
        print("no message had all its steps stamped (were the STEPS' functions renamed?)", file=sys.stderr)
        return 1
    print_breakdown(messages)
    if args.carriers:
        one_way: dict[str, list[float]] = {"grpc": [], "tcp": []}
        for _ in range(args.carriers):
            for kind, runs in one_way.items():
                runs.append(carrier_one_way_us(kind))
        for kind, runs in one_way.items():
            name = "grpc.aio bidi stream" if kind == "grpc" else "raw asyncio TCP"
            print(f"carrier one-way p50, {name} (µs): {' '.join(f'{x:.0f}' for x in runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
