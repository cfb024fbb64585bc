"""A flood generator against ``tmax-host`` (its own process, so it does not
share a GIL with the test watching the host):

- registration waves: many streams register at once (fresh and reused ids,
  which supersede each other), then all close;
- streams that connect and never register (held until ``--register-timeout``);
- oversized RelaySend frames (over ``--max-frame-bytes``: an Error frame each;
  far over: gRPC ends the stream) from a registered node;
- bytes that are not a NodeFrame at all.

``python -m tests.fuzz.flood --target HOST:PORT --seconds 15 --json out.json --ready-file F``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from collections import Counter
from pathlib import Path

import grpc

from tmax_core import envelope as env
from tmax_core.identity import NodeIdentity
from tmax_core.readyfile import write_ready_file
from tmax_mesh_relay.client import HostSession, channel_options
from tmax_mesh_relay.proto import host_pb2

CONNECT = "/tmax_mesh.host.v1.HostService/Connect"


class Flood:
    def __init__(self, target: str, seconds: float) -> None:
        self.target = target
        self.deadline = time.monotonic() + seconds
        self.stats: Counter[str] = Counter()
        self.ids = [NodeIdentity.generate() for _ in range(64)]

    def going(self) -> bool:
        return time.monotonic() < self.deadline

    async def _register(self, identity: NodeIdentity) -> HostSession | None:
        try:
            session = await HostSession.open(self.target, timeout=10)
        except ConnectionError:
            self.stats["open_failed"] += 1
            return None
        try:
            await session.register(identity, [], [])
        except Exception:
            self.stats["register_failed"] += 1
            await session.close()
            return None
        self.stats["registered"] += 1
        return session

    async def registrations(self, wave: int = 150) -> None:
        while self.going():
            idents = [
                random.choice(self.ids) if random.random() < 0.3 else NodeIdentity.generate()
                for _ in range(wave)
            ]
            sessions = await asyncio.gather(*(self._register(i) for i in idents))
            await asyncio.gather(*(s.close() for s in sessions if s is not None))
            self.stats["waves"] += 1

    async def unregistered(self, count: int = 100) -> None:
        while self.going():
            opened = []
            for _ in range(count):
                try:
                    opened.append(await HostSession.open(self.target, timeout=10))
                    self.stats["idle_unregistered"] += 1
                except ConnectionError:
                    self.stats["open_failed"] += 1
            await asyncio.sleep(3.0)  # past the host's register timeout in the test
            await asyncio.gather(*(s.close() for s in opened))

    async def oversized(self, over: int) -> None:
        me, other = NodeIdentity.generate(), NodeIdentity.generate()
        big = env.seal(
            me,
            to_node_id=other.node_id,
            to_public_key=other.public_key,
            scope="message",
            content_type="application/octet-stream",
            body=os.urandom(over),
        )
        huge = env.seal(
            me,
            to_node_id=other.node_id,
            to_public_key=other.public_key,
            scope="message",
            content_type="application/octet-stream",
            body=os.urandom(2_400_000),  # beyond the gRPC message limit: the stream ends
        )
        frame_big = host_pb2.NodeFrame(relay_send=host_pb2.RelaySend(to=other.node_id, envelope=big))
        frame_huge = host_pb2.NodeFrame(relay_send=host_pb2.RelaySend(to=other.node_id, envelope=huge))
        while self.going():
            session = await self._register(me)
            if session is None:
                await asyncio.sleep(0.2)
                continue
            reader = asyncio.create_task(self._drain(session))
            try:
                for i in range(20):
                    await session.write(frame_huge if i == 19 else frame_big)
                    self.stats["oversized_sent"] += 1
                await asyncio.wait_for(asyncio.shield(reader), 10)
            except (ConnectionError, TimeoutError):
                self.stats["oversized_stream_ended"] += 1
            finally:
                reader.cancel()
                await session.close()

    async def _drain(self, session: HostSession) -> None:
        try:
            while (f := await session.read()) is not None:
                if f.WhichOneof("frame") == "error":
                    self.stats[f"error:{f.error.code}"] += 1
        except ConnectionError as err:
            self.stats["ended:" + str(err).split(":")[0]] += 1

    async def malformed(self) -> None:
        while self.going():
            channel = grpc.aio.insecure_channel(self.target, options=channel_options(2 << 20))
            try:
                call = channel.stream_stream(CONNECT, response_deserializer=host_pb2.HostFrame.FromString)()
                await call.read()  # the challenge
                await call.write(b"\xff\xff\xff\xff" + os.urandom(random.randrange(0, 2000)))
                self.stats["malformed_sent"] += 1
                while (await call.read()) is not grpc.aio.EOF:
                    pass
            except grpc.aio.AioRpcError as err:
                self.stats[f"malformed_ended:{err.code().name}"] += 1
            finally:
                await channel.close()

    async def run(self, over: int) -> None:
        await asyncio.gather(
            self.registrations(), self.unregistered(), self.oversized(over), self.malformed()
        )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--target", required=True)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--over", type=int, default=1_300_000, help="body bytes of the oversized frames")
    p.add_argument("--json", required=True)
    p.add_argument("--ready-file", required=True)
    a = p.parse_args()
    write_ready_file(Path(a.ready_file), {"pid": os.getpid()})
    flood = Flood(a.target, a.seconds)
    started = time.monotonic()
    asyncio.run(flood.run(a.over))
    out = dict(flood.stats, seconds=round(time.monotonic() - started, 1))
    Path(a.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
