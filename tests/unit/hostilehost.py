"""A scripted hostile relay host for unit and e2e tests: speaks HostService.Connect
on its own event loop in a thread (so its own CPU does not run on the node's
loop) and answers every registration with what ``script`` yields."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from tmax_mesh_relay.proto import host_pb2

Script = Callable[[host_pb2.NodeFrame], AsyncIterator[host_pb2.HostFrame]]


def registered(member_urls: list[str] | None = None) -> host_pb2.HostFrame:
    return host_pb2.HostFrame(
        registered=host_pb2.Registered(
            limits=host_pb2.Limits(max_frame_bytes=2 << 20, rate_per_s=10_000, burst=10_000),
            connection_id="hostile",
            member_urls=member_urls or [],
        )
    )


class HostileHost:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.registrations = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hostile-host", daemon=True)
        self._server: grpc.aio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"grpc://127.0.0.1:{self.port}"

    def __enter__(self) -> HostileHost:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._server.stop(0), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        handler = grpc.stream_stream_rpc_method_handler(
            self._connect,
            request_deserializer=host_pb2.NodeFrame.FromString,
            response_serializer=host_pb2.HostFrame.SerializeToString,
        )
        size = 16 << 20
        self._server = grpc.aio.server(
            handlers=[
                grpc.method_handlers_generic_handler("tmax_mesh.host.v1.HostService", {"Connect": handler})
            ],
            options=[("grpc.max_send_message_length", size), ("grpc.max_receive_message_length", size)],
        )
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()

    async def _connect(self, requests: Any, context: grpc.aio.ServicerContext) -> Any:
        yield host_pb2.HostFrame(challenge=host_pb2.Challenge(nonce=os.urandom(32), host_id=b"hostile"))
        reader = requests.__aiter__()
        first = await reader.__anext__()
        self.registrations += 1

        async def drain() -> None:
            async for _ in reader:
                pass

        pump = asyncio.create_task(drain())
        try:
            async for frame in self.script(first):
                yield frame
        finally:
            pump.cancel()
