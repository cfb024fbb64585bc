"""Friend-supplied endpoints (issue 13, item 7): what a friend (or a relay
host's lookup answer) tells a node about where to dial is bounded and
checked before the node dials anything.

The attacker here is a real node whose contact card is crafted through its
own configuration: ``node.peer_advertise`` lists thousands of distinct
loopback targets, all of which land on one listening socket owned by the
test, so every connection attempt the victim makes is counted.
"""

from __future__ import annotations

import contextlib
import socket
import threading

import tomli_w

from tests.harness import ProcGroup, befriend, wait_for
from tmax_core.identity import NodeIdentity
from tmax_core.model import Friend
from tmax_core.store import Store

FAST = {
    "TMAX_MESH_DIRECT_PROBE_INTERVAL": "1s",
    "TMAX_MESH_MESSAGES_RETRY_INITIAL": "200ms",
    "TMAX_MESH_MESSAGES_RETRY_MAX": "1s",
}
SPRAY = 3000  # targets in the crafted card
MAX_ENDPOINTS = 32  # the bound on a card's endpoints (as on an invite's)


class Sink:
    """One socket on every loopback address (127.0.0.0/8 reaches it through
    0.0.0.0): records which address each connection was made to, then hangs up."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("0.0.0.0", 0), backlog=4096)
        self.port: int = self.listener.getsockname()[1]
        self.connections = 0
        self.addresses: set[str] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # stopped
            with conn:
                self.addresses.add(conn.getsockname()[0])
                self.connections += 1

    def targets(self, n: int) -> list[str]:
        return [f"127.1.{i // 256}.{i % 256}:{self.port}" for i in range(n)]

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()


def test_friend_card_makes_node_spray_probes(procs: ProcGroup) -> None:
    """A friend's contact card lists thousands of targets. The victim keeps at
    most 32 of them, and its direct upgrader dials only those."""
    host = procs.host()
    sink = Sink()
    try:
        victim = procs.node("victim", "--peer-listen", "127.0.0.1:0", "--relay", host.url, env=FAST)
        attacker = procs.node("attacker", "--peer-listen", "127.0.0.1:0", start=False)
        config = {"node": {"peer_advertise": sink.targets(SPRAY)}}
        (attacker.state_dir / "config.toml").write_text(tomli_w.dumps(config))
        attacker.start()
        befriend(victim, attacker)  # the attacker's hello carries its crafted card

        (stored,) = victim.cli("friends", "list")
        assert stored["endpoints"] == sink.targets(MAX_ENDPOINTS)  # the first 32 are kept
        # The victim's direct upgrader probes what it kept (a round ends at its
        # deadline, so all 32 may take two rounds).
        wait_for(
            lambda: len(sink.addresses) >= MAX_ENDPOINTS,
            what="the victim to dial the targets it kept",
        )
        assert len(sink.addresses) <= MAX_ENDPOINTS, (
            f"victim dialled {len(sink.addresses)} distinct targets ({sink.connections} connections)"
        )
        assert {f"{a}:{sink.port}" for a in sink.addresses} == set(stored["endpoints"])
        assert "dropped 2968 endpoint(s) (first: more than 32 entries)" in victim.log()
    finally:
        sink.stop()


def test_invite_create_refuses_what_invitees_would_drop(procs: ProcGroup) -> None:
    node = procs.node("n")
    for flag, value in (
        ("--endpoint", "unix:/run/x.sock"),
        ("--endpoint", "224.0.0.1:80"),
        ("--relay", "http://x"),
    ):
        res = node.run("invite", "create", flag, value)
        err = res.stderr.decode()
        assert res.returncode == 2 and "Traceback" not in err, err
        assert err.strip().splitlines() == [err.strip()] and flag in err, err
    assert node.cli("invite", "create", "--endpoint", "[::1]:7400", "--relay", "grpcs://h:443")[
        "endpoints"
    ] == ["[::1]:7400"]


def test_contact_stored_before_screening_is_screened_at_start(procs: ProcGroup) -> None:
    """A state.db written by an older version may hold a friend's crafted card."""
    node = procs.node("n")
    node.stop()
    other = NodeIdentity.generate()
    store = Store.open(node.state_dir / "state.db")
    try:
        spray = ["unix:/run/victim.sock", *(f"127.0.0.1:{p}" for p in range(1, 5000))]
        store.add_friend(Friend(node_id=other.node_id, public_key=other.public_key, endpoints=spray))
    finally:
        store.close()
    node.start()
    (friend,) = node.cli("friends", "list")
    assert friend["endpoints"] == spray[1:33]
    assert "dropped 4968 endpoint(s)" in node.log_path.read_text()
