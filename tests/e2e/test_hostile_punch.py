"""A hostile relay host (tests/evil_relay.py) steers real tmax-node processes'
hole punching: PunchGos nobody asked for, naming a service on the node's own
machine, and a PunchToken carrying a payload. The node must dial neither."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_hostile_relay import node_id
from tests.evil_relay import EvilRelay
from tests.harness import Node, ProcGroup, befriend, wait_for
from tmax_core.client import JsonNodeClient
from tmax_mesh_relay.proto import host_pb2

ENV = {"TMAX_MESH_RELAY_RECONNECT_MAX": "1s"}  # the direct plugin and direct.punch on (the defaults)


@pytest.fixture
def relay() -> Iterator[EvilRelay]:
    with EvilRelay() as r:
        yield r


class Victim:
    """A TCP service on the node's machine (think Redis, a router's admin page)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.hits: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(1)
            try:
                self.hits.append(conn.recv(4096))
            except OSError:
                self.hits.append(b"")
            conn.close()


def punch_view(node: Node) -> dict[str, Any]:
    with JsonNodeClient(Path(node.ready["socket"])) as c:
        direct = next(t for t in c.node_status()["transports"] if t["name"] == "direct")
    return next(iter(direct["friends"].values()), {}).get("punch", {})


def push(relay: EvilRelay, to: bytes, frame: host_pb2.HostFrame) -> None:
    relay._call(relay._push(to, frame)).result(5)


def round_trip(relay: EvilRelay, to: bytes, token: int) -> None:
    """Ping the node on its stream and wait for the pong: every frame pushed before is handled."""
    push(relay, to, host_pb2.HostFrame(ping=host_pb2.Ping(time_ms=token)))

    def ponged() -> bool:
        frames = [host_pb2.NodeFrame.FromString(raw) for raw in list(relay.frames)]
        return any(f.WhichOneof("frame") == "pong" and f.pong.time_ms == token for f in frames)

    wait_for(ponged, what="the node's pong")


def test_a_hostile_host_cannot_make_a_node_dial_a_local_service(procs: ProcGroup, relay: EvilRelay) -> None:
    a = procs.node("a", "--relay", relay.url, env=ENV)
    b = procs.node("b", "--relay", relay.url, env=ENV)
    befriend(a, b, alias="a")
    victim = Victim()
    to_a = node_id(a)
    go = host_pb2.HostFrame(
        punch_go=host_pb2.PunchGo(peer=node_id(b), peer_addr=f"127.0.0.1:{victim.port}", dial_in_ms=0)
    )

    def tried() -> bool:
        push(relay, to_a, go)  # nobody asked; once b is on the relay path, a takes it as b's request
        return punch_view(a).get("attempts", 0) > 0

    wait_for(tried, what="node a to take a PunchGo")
    payload = host_pb2.PunchToken(token=b"*1\r\n$8\r\nFLUSHALL\r\n" * 4, port=victim.port)
    push(relay, to_a, host_pb2.HostFrame(punch_token=payload))
    for _ in range(40):
        push(relay, to_a, go)
    round_trip(relay, to_a, 4242)
    view = punch_view(a)
    victim.sock.close()
    assert victim.hits == [], f"node a dialed 127.0.0.1:{victim.port} at the host's word: {victim.hits}"
    assert "not mapped" in view["last_failure"]
    assert view["attempts"] <= 3, view  # each failure doubles the backoff: the host gets no storm
