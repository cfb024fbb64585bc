"""The peer listener (PeerService) bounds what strangers can hold open
(issue 13, item 9): connections, streams per connection, RPCs in flight."""

from __future__ import annotations

import select
import socket

from tests.harness import ProcGroup
from tests.polling import wait_for

MAX_CONNECTIONS = 256  # node.peer_max_connections' default
OPENED = 400


def hold_connections(target: tuple[str, int], n: int, timeout: float = 20.0) -> tuple[int, int]:
    """Open ``n`` TCP connections that never speak; return (kept, closed by
    the server) once each has had its answer: gRPC's server sends its HTTP/2
    settings on a connection it keeps and closes one it refuses."""
    socks = [socket.create_connection(target, timeout=5) for _ in range(n)]
    try:
        kept = closed = 0
        pending = set(socks)

        def all_answered() -> bool:
            nonlocal kept, closed
            readable, _, _ = select.select(list(pending), [], [], 0.2)
            for s in readable:
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                kept, closed = (kept + 1, closed) if data else (kept, closed + 1)
                pending.discard(s)
            return not pending

        wait_for(all_answered, timeout, interval=0, what=f"an answer on each of {n} silent connections")
        return kept, closed
    finally:
        for s in socks:
            s.close()


def test_stranger_cannot_hold_unbounded_peer_connections(procs: ProcGroup) -> None:
    node = procs.node("n", "--peer-listen", "127.0.0.1:0")
    host, _, port = node.ready["peer_listen"].rpartition(":")
    kept, closed = hold_connections((host, int(port)), OPENED)
    assert kept <= MAX_CONNECTIONS, f"the peer listener kept {kept} silent connections open"
    assert kept + closed == OPENED
    # The node still answers its own user.
    assert node.cli("node", "info")["node_id"] == node.node_id
