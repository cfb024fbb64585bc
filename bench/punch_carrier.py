"""How should a punched TCP connection carry the direct path's batches?

gRPC in Python cannot adopt a connected socket, so there are two ways
(DESIGN §16, issue 16):

- **framed**: speak the ``DeliverStream`` protocol over the socket itself as
  length-prefixed protobuf (``tmax_mesh_direct.link.FramedLink``);
- **pump**: the sender's gRPC channel dials a loopback listener whose
  connections are pumped into the punched socket; at the other end the
  punched socket is pumped into a connection to a loopback ``PeerService``
  (``DeliverStream`` through :class:`tmax_core.peerstream.PeerStream`, as a
  dialed direct path does).

Both run in this one process and event loop (as in a node), over a real
loopback TCP connection standing in for the punched one. The receiver
answers every batch with a fixed signed ack of the right size (no crypto, no
database): what is measured is the carrier. Two shapes: one envelope per
batch, one at a time (latency), and batches of 100 envelopes of 1 KiB, 8 in
flight (throughput), with process CPU per message.

    .venv/bin/python bench/punch_carrier.py          # about 20 s
    .venv/bin/python bench/punch_carrier.py --quick  # about 5 s

Prints a table and writes ``bench/results/punch_carrier.json`` (or
``punch_carrier-quick.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from common import cpu_seconds, environment, fmt, ratio, run_bounded, summarize_ms, write_results

from tmax_core import envelope as env
from tmax_core.identity import NodeIdentity
from tmax_core.peer import DELIVER_STREAM, ENVELOPE_OVERHEAD, channel_options, start_peer_server
from tmax_core.peerstream import PeerStream
from tmax_core.proto import mesh_pb2
from tmax_mesh_direct.link import FramedLink

MAX_BYTES = 1 << 20
ENVELOPE = b"e" * 1024
BATCH = 100
IN_FLIGHT = 8


class _Config(dict):
    def get(self, key: str) -> Any:  # type: ignore[override]
        return self[key]


class Receiver:
    """A node's ingress as the carriers call it: a fixed, realistically sized signed ack."""

    def __init__(self) -> None:
        identity = NodeIdentity.generate()
        entries = [mesh_pb2.AckEntry(message_id=bytes(16), status=1) for _ in range(BATCH)]
        self.acks = {
            n: env.make_ack_batch(identity, to_node_id=bytes(20), entries=entries[:n]) for n in (0, 1, BATCH)
        }
        self.config = _Config({"messages.max_bytes": MAX_BYTES, "node.peer_max_connections": 16})
        self.friends: dict[bytes, Any] = {}
        self.received = 0

    async def handle_envelope(self, data: bytes, source: Any) -> bytes:
        raise AssertionError("batches only")

    async def handle_envelope_batch(self, envelopes: list[bytes], source: Any, nonce: bytes = b"") -> bytes:
        self.received += len(envelopes)
        return self.acks.get(len(envelopes), self.acks[BATCH])


async def punched_pair() -> tuple[socket.socket, socket.socket]:
    """Two ends of one loopback TCP connection (the punched connection's stand-in)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    loop = asyncio.get_running_loop()
    dialer = socket.socket()
    dialer.setblocking(False)
    (accepted, _), _ = await asyncio.gather(
        loop.sock_accept(listener), loop.sock_connect(dialer, listener.getsockname())
    )
    listener.close()
    return dialer, accepted


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


Deliver = Callable[[list[bytes]], Awaitable[bytes]]


async def framed_carrier(receiver: Receiver, stack: contextlib.AsyncExitStack) -> Deliver:
    sock_a, sock_b = await punched_pair()
    links = []
    for sock in (sock_a, sock_b):
        reader, writer = await asyncio.open_connection(sock=sock)
        link = FramedLink(
            reader,
            writer,
            endpoint="127.0.0.1:1",
            handler=receiver,
            liveness_s=30,
            max_frame=MAX_BYTES + ENVELOPE_OVERHEAD,
        )
        links.append(link)
        stack.callback(link.close)
    return lambda envelopes: links[0].deliver(envelopes, 30)


async def pump_carrier(receiver: Receiver, stack: contextlib.AsyncExitStack) -> Deliver:
    server, bound = await start_peer_server(receiver, "127.0.0.1:0")  # type: ignore[arg-type]
    stack.push_async_callback(server.stop, None)
    sock_a, sock_b = await punched_pair()
    punched_a = await asyncio.open_connection(sock=sock_a)
    punched_b = await asyncio.open_connection(sock=sock_b)
    # Receiving side: the punched socket <-> a connection to the local PeerService.
    host, _, port = bound.rpartition(":")
    local = await asyncio.open_connection(host, int(port))
    pumps = [
        asyncio.create_task(_pump(punched_b[0], local[1])),
        asyncio.create_task(_pump(local[0], punched_b[1])),
    ]

    # Sending side: the gRPC channel dials a loopback listener pumped into the punched socket.
    async def on_channel(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pumps.append(asyncio.create_task(_pump(reader, punched_a[1])))
        pumps.append(asyncio.create_task(_pump(punched_a[0], writer)))

    listener = await asyncio.start_server(on_channel, "127.0.0.1", 0)
    stack.callback(listener.close)
    target = f"127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    channel = grpc.aio.insecure_channel(target, options=channel_options(MAX_BYTES, 30))
    stack.push_async_callback(channel.close)
    stream = PeerStream(channel.stream_stream(DELIVER_STREAM)())
    stack.callback(stream.close)
    stack.callback(lambda: [p.cancel() for p in pumps])
    return lambda envelopes: stream.deliver(envelopes, 30)


async def measure(name: str, make: Any, latency_n: int, batches_n: int) -> dict[str, Any]:
    receiver = Receiver()
    async with contextlib.AsyncExitStack() as stack:
        deliver = await make(receiver, stack)
        for _ in range(20):  # warm up (connection set-up, first calls)
            await deliver([ENVELOPE])
        times = []
        for _ in range(latency_n):
            started = time.perf_counter()
            await deliver([ENVELOPE])
            times.append(time.perf_counter() - started)
        batch = [ENVELOPE] * BATCH
        slots = asyncio.Semaphore(IN_FLIGHT)

        async def one() -> None:
            async with slots:
                await deliver(batch)

        cpu0, started = cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(one() for _ in range(batches_n)))
        elapsed, cpu = time.perf_counter() - started, (cpu_seconds() or 0) - (cpu0 or 0)
    messages = batches_n * BATCH
    return {
        "carrier": name,
        "latency_one_envelope": summarize_ms(times),
        "batched_msgs_per_s": messages / elapsed,
        "batched_cpu_us_per_msg": cpu / messages * 1e6,
    }


async def run(quick: bool) -> dict[str, Any]:
    latency_n, batches_n = (300, 200) if quick else (2000, 1500)
    framed = await measure("framed", framed_carrier, latency_n, batches_n)
    pump = await measure("pump", pump_carrier, latency_n, batches_n)
    return {
        "environment": environment(),
        "shape": {"envelope_bytes": len(ENVELOPE), "batch": BATCH, "in_flight": IN_FLIGHT},
        "results": [framed, pump],
        "ratios_pump_over_framed": {
            "latency_p50": ratio(
                pump["latency_one_envelope"]["p50_ms"], framed["latency_one_envelope"]["p50_ms"]
            ),
            "batched_msgs_per_s": ratio(pump["batched_msgs_per_s"], framed["batched_msgs_per_s"]),
            "batched_cpu_us_per_msg": ratio(pump["batched_cpu_us_per_msg"], framed["batched_cpu_us_per_msg"]),
        },
    }


def table(out: dict[str, Any]) -> str:
    rows = [
        f"{'carrier':<8} {'1-envelope p50 ms':>18} {'p99 ms':>8} {'batched msg/s':>14} {'CPU us/msg':>11}"
    ]
    for r in out["results"]:
        lat = r["latency_one_envelope"]
        rows.append(
            f"{r['carrier']:<8} {fmt(lat['p50_ms'], 3):>18} {fmt(lat['p99_ms'], 3):>8} "
            f"{fmt(r['batched_msgs_per_s']):>14} {fmt(r['batched_cpu_us_per_msg']):>11}"
        )
    q = out["ratios_pump_over_framed"]
    rows.append(
        f"pump / framed: p50 x{fmt(q['latency_p50'])}, msg/s x{fmt(q['batched_msgs_per_s'])}, "
        f"CPU x{fmt(q['batched_cpu_us_per_msg'])}"
    )
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller counts (about 5 s)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="punch-carrier-") as workdir:  # nothing is written there
        out = run_bounded(run(args.quick), 60 if args.quick else 170, Path(workdir), "nothing")
    if isinstance(out, int):
        return out
    write_results("punch_carrier-quick" if args.quick else "punch_carrier", out)
    print(table(out))
    print(f"JSON: {out['json_path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
