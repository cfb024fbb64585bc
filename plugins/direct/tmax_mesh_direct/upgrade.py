"""Rendezvous-assisted direct upgrade (DESIGN §11).

For every friend, the :class:`Upgrader` asks the relay host where the friend
can be dialled (:meth:`tmax_mesh_relay.transport.RelayTransport.lookup`: the
friend's advertised endpoints, and its observed IP with each advertised port),
probes those endpoints in the background with the gRPC health service and a
short timeout, and hands the healthy ones to the core ``direct`` transport
(``DirectTransport.discovered``). Sends then go direct; any failure marks the
endpoint unhealthy and the relay carries the message; the next probe round
upgrades again. Delivery never waits on any of this: the relay is always
there as the fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tmax_core.crypto import to_checksum
from tmax_core.peer import SERVICE as PEER_SERVICE
from tmax_core.peer import DirectTransport

if TYPE_CHECKING:
    from tmax_mesh_relay.transport import RelayTransport

    from tmax_core.model import Friend
    from tmax_core.node import Node

log = logging.getLogger("tmax_mesh.direct")

DIRECT = "direct"
RELAY = "relay"


class Upgrader:
    """Keeps each friend's direct path state fresh for one node."""

    def __init__(self, node: Node, relay: RelayTransport, direct: DirectTransport) -> None:
        self.node = node
        self.relay = relay
        self.direct = direct
        self.dial_timeout_s = node.duration_ms("direct.dial_timeout") / 1000
        self.interval_s = node.duration_ms("direct.probe_interval") / 1000
        self.path: dict[bytes, str] = {}  # friend node id -> "direct" | "relay"
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self.node.friend_listeners.append(self._wake.set)
        self._task = asyncio.create_task(self._run(), name="direct-upgrade")

    def stop(self) -> None:
        if self._wake.set in self.node.friend_listeners:
            self.node.friend_listeners.remove(self._wake.set)
        if self._task is not None:
            self._task.cancel()

    def prefers_direct(self, friend: Friend) -> bool | None:
        """True: direct is healthy; False: known not to work; None: not known yet."""
        state = self.path.get(friend.node_id)
        if state is None:
            return None
        return state == DIRECT and self.direct.can_reach(friend)

    async def _run(self) -> None:
        while True:
            friends = [f for f in self.node.friends.values() if not f.blocked]
            await asyncio.gather(*(self.refresh(f) for f in friends), return_exceptions=True)
            for gone in set(self.path) - {f.node_id for f in friends}:
                self.path.pop(gone, None)
                self.direct.discovered.pop(gone, None)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)

    async def refresh(self, friend: Friend) -> None:
        """Look the friend up, probe what the host returned, record the result."""
        try:
            found = await self.relay.lookup(friend.node_id)
        except (ConnectionError, TimeoutError):
            found = []  # no relay answer: keep probing what the friend advertised itself
        candidates = list(dict.fromkeys([*friend.endpoints, *found]))
        results = await asyncio.gather(*(self.probe(ep) for ep in candidates))
        healthy = [ep for ep, ok in zip(candidates, results, strict=True) if ok]
        self.direct.discovered[friend.node_id] = [ep for ep in found if ep in healthy]
        state = DIRECT if healthy else RELAY
        if self.path.get(friend.node_id) != state:
            log.info("path to %s: %s %s", to_checksum(friend.node_id), state, healthy or candidates)
        self.path[friend.node_id] = state

    async def probe(self, endpoint: str) -> bool:
        """Dial ``endpoint`` and ask its health service about PeerService."""
        channel = self.direct.channel(endpoint)
        try:
            await asyncio.wait_for(channel.channel_ready(), self.dial_timeout_s)
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=PEER_SERVICE), timeout=self.dial_timeout_s
            )
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, TimeoutError):
            self.direct.mark_failed(endpoint)
            return False
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            self.direct.mark_failed(endpoint)
            return False
        self.direct.mark_healthy(endpoint)
        return True
