"""End-to-end: the ``direct`` plugin upgrades relayed traffic to a direct
connection found through the relay host's rendezvous lookup (DESIGN §11).

Both nodes listen on a wildcard (``--peer-listen 0.0.0.0:0``), so their
listener is in no invite and no contact card: the only way a friend can learn
where to dial is the host's lookup (observed IP + advertised port).

Firewalled listeners, real NAT and the fallback to the relay are in
``tests/natlab/test_nat_upgrade.py``. The host-level rules of lookups (only
the target's allow-list gets an answer, allow-list updates on the stream,
rate limit, never the ephemeral source port) are in
``tests/e2e/test_relay_abuse.py``; here a real node's allow-list is checked
against a stranger.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

from tests.harness import Node, ProcGroup, befriend, free_port, wait_for
from tests.metrics import host_metrics, metric
from tmax_core import envelope as env
from tmax_core.client import JsonNodeClient
from tmax_core.identity import NodeIdentity
from tmax_core.peer import SERVICE
from tmax_core.proto import mesh_pb2
from tmax_mesh_relay.client import HostSession
from tmax_mesh_relay.proto import host_pb2

FAST = {
    # Dialed upgrades only: on loopback a punch would always succeed (tests/natlab covers punching).
    "TMAX_MESH_DIRECT_PUNCH": "false",
    "TMAX_MESH_DIRECT_PROBE_INTERVAL": "1s",
    "TMAX_MESH_MESSAGES_RETRY_INITIAL": "200ms",
    "TMAX_MESH_MESSAGES_RETRY_MAX": "1s",
    "TMAX_MESH_RELAY_RECONNECT_MAX": "1s",
}


ACCEPTED = mesh_pb2.ACK_STATUS_ACCEPTED


def api(node: Node) -> JsonNodeClient:
    return JsonNodeClient(Path(node.ready["socket"]))


def status(node: Node) -> dict[str, Any]:
    with api(node) as c:
        return c.node_status()


def transport(st: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in st["transports"] if t["name"] == name)


def wait_registered(*nodes: Node) -> None:
    for node in nodes:
        wait_for(
            lambda n=node: transport(status(n), "relay")["state"] == "connected",
            what=f"{node.state_dir.name} registered",
        )


def friend_key(node: Node, peer: Node) -> str:
    """How ``node status`` names ``peer`` among the direct transport's friends."""
    with api(node) as c:
        friend = next(f for f in c.friends_list() if f["node_id"] == peer.node_id)
    return friend["alias"] or peer.node_id


def direct_view(node: Node, peer: Node) -> dict[str, Any] | None:
    """``transports[direct].friends[peer]`` of ``node status`` (None: no endpoint known)."""
    return transport(status(node), "direct")["friends"].get(friend_key(node, peer))


def wait_direct(node: Node, peer: Node, endpoint: str) -> dict[str, Any]:
    def upgraded() -> dict[str, Any] | None:
        view = direct_view(node, peer)
        return view if view and view["path"] == "direct" and view["healthy"] == [endpoint] else None

    return wait_for(upgraded, what=f"{node.state_dir.name} to upgrade to {endpoint}")


def counters(node: Node) -> dict[str, int]:
    return status(node)["counters"]


def port_of(endpoint: str) -> str:
    return endpoint.rpartition(":")[2]


def test_upgrade_to_direct_through_rendezvous(procs: ProcGroup) -> None:
    host = procs.host("host", "--metrics-listen", "127.0.0.1:0")
    a = procs.node("a", "--peer-listen", "0.0.0.0:0", "--relay", host.url, env=FAST)
    b = procs.node("b", "--peer-listen", "0.0.0.0:0", "--relay", host.url, env=FAST)
    for node in (a, b):
        assert node.ready["peer_listen"].startswith("0.0.0.0:"), node.ready
    a_at = f"127.0.0.1:{port_of(a.ready['peer_listen'])}"  # what the host makes of A's listener
    b_at = f"127.0.0.1:{port_of(b.ready['peer_listen'])}"
    wait_registered(a, b)

    # A wildcard listener is not dialable as bound: it is in no invite...
    friend_a = befriend(a, b, alias="a")
    assert friend_a["endpoints"] == [] and friend_a["relay_hosts"] == [host.url]
    # ...and in no contact card (B's hello carried B's card to A).
    with api(a) as c:
        assert [f["endpoints"] for f in c.friends_list()] == [[]]
    # The first exchange (B's hello) could only go through the relay.
    wait_for(lambda: counters(b).get("send:delivered:relay") == 1, what="b's hello delivered via relay")
    assert "send:delivered:direct" not in counters(b)

    # Each upgrader looks its friend up at the host and probes what it gets.
    wait_direct(b, a, a_at)
    wait_direct(a, b, b_at)

    before = host_metrics(host)
    sent = b.cli("msg", "send", "--to", "a", "--wait", "--timeout", "20", "b to a, direct")
    assert (sent["status"], sent["path"]) == ("delivered", "direct"), sent
    sent = a.cli("msg", "send", "--to", b.node_id, "--wait", "--timeout", "20", "a to b, direct")
    assert (sent["status"], sent["path"]) == ("delivered", "direct"), sent
    with api(a) as c:
        ids = [c.msg_send(b.node_id, f"a{i}".encode())["message_id"] for i in range(20)]
        finals = [c.msg_wait(i, 20) for i in ids]
    assert {(m["status"], m["path"]) for m in finals} == {("delivered", "direct")}, finals
    after = host_metrics(host)

    # Nothing went through the host while the direct messages flowed.
    for name in ("tmax_host_relayed_total", 'tmax_host_frames_in_total{type="relay_send"}'):
        assert metric(after, name) == metric(before, name), name
    assert metric(before, "tmax_host_relayed_total") >= 1  # the hello did
    assert metric(after, 'tmax_host_lookups_total{result="found"}') >= 2

    with api(a) as c:
        assert [m["body"] for m in c.inbox_list()] == ["b to a, direct"]
    with api(b) as c:
        assert sorted(m["body"] for m in c.inbox_list()) == sorted(
            ["a to b, direct", *(f"a{i}" for i in range(20))]
        )

    # `node status --json`: per-friend path state and delivered counts by path.
    st = b.cli("node", "status")
    direct = transport(st, "direct")
    assert direct["friends"]["a"] == {
        "path": "direct",
        "via": "dialed",
        "endpoints": [a_at],
        "healthy": [a_at],
    }
    assert st["counters"]["send:delivered:direct"] == 1
    assert st["counters"]["send:delivered:relay"] == 1  # the hello
    st = a.cli("node", "status")
    assert transport(st, "direct")["friends"][friend_key(a, b)]["path"] == "direct"
    assert st["counters"]["send:delivered:direct"] == 21
    assert "send:delivered:relay" not in st["counters"]


class PortForward:
    """A router's port mapping: accepts on 127.0.0.1 (``port``) and relays each
    connection to ``target`` (set once the node behind it has bound)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.target: tuple[str, int] | None = None
        self.connections = 0
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # stopped
            self.connections += 1
            try:
                if self.target is None:
                    raise OSError("nothing behind the forward yet")
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            self._open += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def stop(self) -> None:
        self.listener.close()
        for sock in self._open:
            sock.close()


def test_listener_behind_a_forwarded_port_is_dialled_where_it_advertises(procs: ProcGroup) -> None:
    """``--peer-advertise``: B listens on a port nobody can reach and tells the
    host (a wildcard: "this port at the address you see me at") and its
    invites where its router forwards from. A dials the forwarded port only."""
    host = procs.host("host")
    forward = PortForward()
    try:
        advertised = f"0.0.0.0:{forward.port}"
        b = procs.node(
            "b", "--peer-listen", "127.0.0.1:0", "--peer-advertise", advertised, "--relay", host.url, env=FAST
        )
        forward.target = ("127.0.0.1", int(port_of(b.ready["peer_listen"])))
        a = procs.node("a", "--relay", host.url, env=FAST)
        wait_registered(a, b)
        # A wildcard is in no invite; the host pairs its port with B's address.
        assert befriend(b, a, alias="b")["endpoints"] == []
        wait_direct(a, b, f"127.0.0.1:{forward.port}")
        sent = a.cli("msg", "send", "--to", "b", "--wait", "--timeout", "20", "through the forward")
        assert (sent["status"], sent["path"]) == ("delivered", "direct"), sent
        assert forward.connections >= 1
        assert direct_view(a, b)["endpoints"] == [f"127.0.0.1:{forward.port}"]  # never B's bound port
        assert b.inbox_bodies() == ["through the forward"]
        # An advertised endpoint that is dialable as written goes into invites too.
        c = procs.node(
            "c", "--peer-listen", "127.0.0.1:0", "--peer-advertise", "127.0.0.1:7400", "--relay", host.url
        )
        assert c.cli("invite", "create")["endpoints"] == ["127.0.0.1:7400"]
    finally:
        forward.stop()


async def test_lookup_gives_a_stranger_nothing(procs: ProcGroup) -> None:
    """The node's allow-list (its friends) is what the host answers lookups by."""
    host = procs.host()
    a = procs.node("a", "--peer-listen", "0.0.0.0:0", "--relay", host.url, env=FAST)
    b = procs.node("b", "--relay", host.url, env=FAST)  # no listener of its own
    wait_registered(a, b)
    befriend(a, b, alias="a")
    # The friend is answered (that is how B found A's listener)...
    wait_direct(b, a, f"127.0.0.1:{port_of(a.ready['peer_listen'])}")

    # ...a registered stranger that knows A's node id is not.
    stranger = await HostSession.open(host.listen)
    try:
        await stranger.register(NodeIdentity.generate(), ["0.0.0.0:9"], [])
        target = bytes.fromhex(a.node_id[2:])
        await stranger.write(host_pb2.NodeFrame(lookup=host_pb2.Lookup(target=target)))
        while (frame := await asyncio.wait_for(stranger.read(), 10)) is not None:
            if frame.WhichOneof("frame") == "lookup_result":
                break
        assert frame is not None
        result = frame.lookup_result
        assert result.target == target
        assert (result.found, list(result.endpoints), result.observed_ip) == (False, [], "")
    finally:
        await stranger.close()
    # B has no listener: A knows no direct endpoint for it and stays on the relay.
    assert direct_view(a, b) is None
    sent = a.cli("msg", "send", "--to", b.node_id, "--wait", "--timeout", "20", "to b")
    assert (sent["status"], sent["path"]) == ("delivered", "relay"), sent


class Impostor:
    """A PeerService on a friend's old endpoint that answers every batch with an
    ack signed by the wrong key (another node took the port, or a broken one)."""

    def __init__(self, port: int) -> None:
        self.identity = NodeIdentity.generate()
        self.batches = 0
        self.server = grpc.server(ThreadPoolExecutor(max_workers=4))
        handlers = {"DeliverStream": grpc.stream_stream_rpc_method_handler(self._stream)}
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
        assert self.server.add_insecure_port(f"127.0.0.1:{port}") == port
        self.server.start()

    def _stream(self, requests: Any, context: Any) -> Any:
        for raw in requests:
            batch = mesh_pb2.StreamedBatch.FromString(raw)
            self.batches += 1
            parsed = [env.parse(e, 1 << 20) for e in batch.envelopes]
            entries = [mesh_pb2.AckEntry(message_id=p.message_id, status=ACCEPTED) for p in parsed]
            ack = env.make_ack_batch(self.identity, to_node_id=parsed[0].from_node_id, entries=entries)
            yield mesh_pb2.StreamedAck(id=batch.id, ack=ack).SerializeToString()

    def stop(self) -> None:
        self.server.stop(grace=None)


def test_impostor_endpoint_answering_without_the_friends_signature_is_dropped(procs: ProcGroup) -> None:
    """B's invite names its listener; later B listens elsewhere and another
    PeerService answers on the old port with acks B did not sign. A's first
    message there falls back to the relay, and A stops using that endpoint:
    the next message goes straight to the relay."""
    host = procs.host("host")
    old_port = free_port()
    no_upgrades = {"TMAX_MESH_DISABLE_PLUGINS": "direct"}  # only the endpoint from the invite
    b = procs.node("b", "--peer-listen", f"127.0.0.1:{old_port}", "--relay", host.url, env=no_upgrades)
    a = procs.node("a", "--relay", host.url, env=no_upgrades)
    wait_registered(a, b)
    assert befriend(b, a, alias="b")["endpoints"] == [f"127.0.0.1:{old_port}"]
    a.stop()  # A starts again below with no connection to the old endpoint
    b.stop()
    impostor = Impostor(old_port)
    try:
        listen = b.argv.index("--peer-listen")
        b.argv = [*b.argv[:listen], "--peer-listen", "127.0.0.1:0", *b.argv[listen + 2 :]]
        b.start()
        a.start()
        wait_registered(a, b)
        first = a.cli("msg", "send", "--to", "b", "--wait", "--timeout", "20", "first")
        assert (first["status"], first["path"]) == ("delivered", "relay"), first
        assert impostor.batches == 1
        second = a.cli("msg", "send", "--to", "b", "--wait", "--timeout", "20", "second")
        assert (second["status"], second["path"]) == ("delivered", "relay"), second
        assert impostor.batches == 1  # the endpoint was not tried again
        assert direct_view(a, b)["path"] == "unreachable"
        assert "answered for" in a.log() and "without its signed ack" in a.log()
    finally:
        impostor.stop()
    assert sorted(b.inbox_bodies()) == ["first", "second"]
