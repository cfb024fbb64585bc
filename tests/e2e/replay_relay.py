"""A malicious relay host for tests (issue 13, item 4): it serves
``HostService`` like ``tmax-host``, but for each node that dials it, it opens
a stream to an honest host, forwards *that* host's challenge to the node, and
replays the node's signed ``Register`` on the honest host as if it were the
node.

    python replay_relay.py --target HOST:PORT --result FILE --ready-file FILE

The ready file holds ``{"pid", "listen"}``. The first replay's outcome is
written (atomically) to ``--result``: ``{"node_id", "answer"}`` where
``answer`` is ``"registered"`` (the honest host took the replay: the attack
worked) or ``"error:CODE"`` / ``"closed: ..."``. The node itself is then told
``shutting_down`` and disconnected.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import grpc

from tmax_core.crypto import to_checksum
from tmax_core.readyfile import write_ready_file
from tmax_mesh_relay.client import HostSession
from tmax_mesh_relay.proto import host_pb2, host_pb2_grpc


class ReplayingRelay(host_pb2_grpc.HostServiceServicer):
    def __init__(self, target: str, result: Path) -> None:
        self.target = target
        self.result = result

    async def Connect(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        honest = await HostSession.open(self.target)
        try:
            await context.write(host_pb2.HostFrame(challenge=honest.challenge))
            frame = await context.read()
            if frame is grpc.aio.EOF or frame.WhichOneof("frame") != "register":
                return
            await honest.write(host_pb2.NodeFrame(register=frame.register))
            answer = await honest.read()
            if answer is None:
                outcome = "closed"
            elif answer.WhichOneof("frame") == "error":
                outcome = f"error:{answer.error.code}"
            else:
                outcome = str(answer.WhichOneof("frame"))
            self._record(to_checksum(frame.register.node_id), outcome)
            error = host_pb2.Error(code="shutting_down", detail="bye")
            await context.write(host_pb2.HostFrame(error=error))
        except ConnectionError as err:
            self._record("", f"closed: {err}")
        finally:
            await honest.close()

    def _record(self, node_id: str, answer: str) -> None:
        if self.result.exists():
            return
        tmp = self.result.with_name(f".{self.result.name}.tmp")
        tmp.write_text(json.dumps({"node_id": node_id, "answer": answer}))
        os.replace(tmp, self.result)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--target", required=True)
    p.add_argument("--result", required=True, type=Path)
    p.add_argument("--ready-file", required=True, type=Path)
    args = p.parse_args()
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    host_pb2_grpc.add_HostServiceServicer_to_server(ReplayingRelay(args.target, args.result), server)
    port = server.add_insecure_port(args.listen)
    await server.start()
    write_ready_file(args.ready_file, {"pid": os.getpid(), "listen": f"127.0.0.1:{port}"})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0.5)


if __name__ == "__main__":
    asyncio.run(main())
