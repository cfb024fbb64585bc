"""A real tmax-host against clients that speak the protocol directly — and wrongly.

Each test starts its own ``tmax-host`` (port 0 + ready file) with the limits
it needs, and drives it with :class:`tmax_mesh_relay.client.HostSession`.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.harness import Host, ProcGroup
from tests.polling import wait_for_async
from tmax_core import envelope as env
from tmax_core.identity import NodeIdentity
from tmax_mesh_relay import wire
from tmax_mesh_relay.client import HostSession
from tmax_mesh_relay.proto import host_pb2

N = host_pb2.NodeFrame


class Raw:
    """A HostSession plus a reader task: tests wait on a queue of frames, never
    on a cancellable read (cancelling a gRPC read cancels the whole call)."""

    def __init__(self, session: HostSession) -> None:
        self.session = session
        self.challenge = session.challenge
        self.frames: asyncio.Queue[host_pb2.HostFrame | None] = asyncio.Queue()
        self.end = ""
        self.task = asyncio.create_task(self._pump())

    @property
    def registered(self) -> host_pb2.Registered:
        assert self.session.registered is not None
        return self.session.registered

    async def _pump(self) -> None:
        try:
            while (f := await self.session.read()) is not None:
                await self.frames.put(f)
            self.end = "EOF"
        except ConnectionError as err:
            self.end = str(err)
        await self.frames.put(None)

    async def write(self, frame: host_pb2.NodeFrame) -> None:
        await self.session.write(frame)

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.session.close()


class Clients:
    """Raw sessions opened by a test; all closed at teardown."""

    def __init__(self) -> None:
        self.host: Host | None = None
        self.sessions: list[Raw] = []

    async def open(self) -> Raw:
        assert self.host is not None
        raw = Raw(await HostSession.open(self.host.listen))
        self.sessions.append(raw)
        return raw

    async def node(
        self, identity: NodeIdentity | None = None, *, allow: list[bytes] = (), endpoints: list[str] = ()
    ) -> tuple[Raw, NodeIdentity]:
        assert self.host is not None
        identity = identity or NodeIdentity.generate()
        session = await HostSession.open(self.host.listen)
        await session.register(identity, list(endpoints), list(allow))
        raw = Raw(session)
        self.sessions.append(raw)
        return raw, identity

    async def registers(self) -> bool:
        """Whether a new node can register right now (the host has room for it)."""
        try:
            await self.node()
        except ConnectionError:
            return False
        return True

    async def close(self) -> None:
        for raw in self.sessions:
            await raw.close()


# One event loop for the module: grpc.aio keeps per-loop state, and a new loop
# per test leaves its poller calling into closed loops.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module")
async def clients() -> AsyncIterator[Clients]:
    c = Clients()
    try:
        yield c
    finally:
        await c.close()


def seal(
    sender: NodeIdentity, recipient: NodeIdentity, body: bytes = b"hi", message_id: bytes | None = None
) -> bytes:
    """A real envelope; the same ``message_id`` again is what an outbox retry sends."""
    return env.seal(
        sender,
        to_node_id=recipient.node_id,
        to_public_key=recipient.public_key,
        scope="message",
        content_type="text/plain",
        body=body,
        message_id=message_id,
    )


async def relay(raw: Raw, to: NodeIdentity, envelope: bytes) -> bytes:
    await raw.write(N(relay_send=host_pb2.RelaySend(to=to.node_id, envelope=envelope)))
    return env.parse(envelope, len(envelope)).message_id


async def frame(raw: Raw, kind: str | None = None, timeout: float = 5.0) -> host_pb2.HostFrame:
    """The next frame (of ``kind``, skipping pings)."""
    while True:
        f = await asyncio.wait_for(raw.frames.get(), timeout)
        assert f is not None, f"stream ended: {raw.end}"
        if f.WhichOneof("frame") == "ping":
            continue
        if kind is not None:
            assert f.WhichOneof("frame") == kind, f
        return f


async def no_frame(raw: Raw, within: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(raw.frames.get(), within)


async def ended_with(raw: Raw, code: str) -> str:
    """Read the Error frame ``code`` and then the end of the stream; returns the status text."""
    f = await frame(raw, "error")
    assert f.error.code == code, f
    assert await asyncio.wait_for(raw.frames.get(), 5.0) is None
    return raw.end


# -- registration -------------------------------------------------------------------


async def test_first_frame_must_be_register(procs: ProcGroup, clients: Clients) -> None:
    clients.host = procs.host()
    s = await clients.open()
    await s.write(N(ping=host_pb2.Ping(time_ms=1)))
    assert "UNAUTHENTICATED" in await ended_with(s, "not_registered")
    # A RelaySend before registering is refused the same way.
    s = await clients.open()
    ident = NodeIdentity.generate()
    await relay(s, ident, seal(ident, ident))
    await ended_with(s, "not_registered")


async def test_bad_signature_is_refused(procs: ProcGroup, clients: Clients) -> None:
    clients.host = procs.host()
    s = await clients.open()
    ident = NodeIdentity.generate()
    reg = wire.make_register(ident, s.challenge, [], [], relay_url=clients.host.url)
    reg.signature = bytes([reg.signature[0] ^ 1]) + reg.signature[1:]
    await s.write(N(register=reg))
    await ended_with(s, "bad_signature")
    # Signed over a different endpoint list than the one sent: also refused.
    s = await clients.open()
    reg = wire.make_register(ident, s.challenge, ["10.0.0.1:7000"], [], relay_url=clients.host.url)
    reg.endpoints[:] = ["203.0.113.7:7000"]
    await s.write(N(register=reg))
    await ended_with(s, "bad_signature")


async def test_captured_registration_replayed_on_new_connection(procs: ProcGroup, clients: Clients) -> None:
    clients.host = procs.host()
    victim = NodeIdentity.generate()
    s1 = await clients.open()
    captured = wire.make_register(victim, s1.challenge, [], [], relay_url=clients.host.url)
    await s1.write(N(register=captured))
    await frame(s1, "registered")
    # The attacker replays the exact bytes on its own connection: new nonce, so it fails...
    s2 = await clients.open()
    await s2.write(N(register=captured))
    await ended_with(s2, "bad_signature")
    # ...and the victim's route is untouched.
    sender, sender_id = await clients.node()
    await relay(sender, victim, seal(sender_id, victim, b"still mine"))
    assert (await frame(s1, "deliver")).deliver.envelope


async def test_registering_another_nodes_id(procs: ProcGroup, clients: Clients) -> None:
    clients.host = procs.host()
    victim, attacker = NodeIdentity.generate(), NodeIdentity.generate()
    # Victim's id with the attacker's key and signature: the id is not that key's address.
    s = await clients.open()
    reg = wire.make_register(attacker, s.challenge, [], [], relay_url=clients.host.url)
    reg.node_id = victim.node_id
    await s.write(N(register=reg))
    await ended_with(s, "id_key_mismatch")
    # Victim's id and public key, signed by the attacker: the signature does not match the key.
    s = await clients.open()
    reg = wire.make_register(attacker, s.challenge, [], [], relay_url=clients.host.url)
    reg.node_id, reg.public_key = victim.node_id, victim.public_key
    await s.write(N(register=reg))
    await ended_with(s, "bad_signature")


async def test_idle_unregistered_connection_is_closed(procs: ProcGroup, clients: Clients) -> None:
    clients.host = procs.host("host", "--register-timeout", "300ms")
    s = await clients.open()
    started = time.monotonic()
    await ended_with(s, "register_timeout")
    assert time.monotonic() - started < 3.0


async def test_idle_registered_connection_is_closed_when_configured(
    procs: ProcGroup, clients: Clients
) -> None:
    clients.host = procs.host("host", "--idle-timeout", "500ms")
    s, _ = await clients.node()
    assert s.registered.limits.idle_timeout_ms == 500
    await ended_with(s, "idle_timeout")


async def test_max_connections(procs: ProcGroup, clients: Clients) -> None:
    clients.host = procs.host("host", "--max-connections", "2")
    first, _ = await clients.node()
    await clients.node()
    with pytest.raises(ConnectionError, match="RESOURCE_EXHAUSTED"):
        await clients.open()
    await first.close()
    # the host notices the closed stream almost at once
    await wait_for_async(clients.registers, 5, 0.1, what="a slot to free up after a client left")


# -- relaying -----------------------------------------------------------------------------


async def test_envelope_sender_must_be_registered_id(procs: ProcGroup, clients: Clients) -> None:
    clients.host = procs.host()
    mallory, mallory_id = await clients.node()
    bob, bob_id = await clients.node()
    alice = NodeIdentity.generate()  # mallory holds an envelope alice signed (or forges one)
    message_id = await relay(mallory, bob_id, seal(alice, bob_id))
    f = await frame(mallory, "error")
    assert (f.error.code, f.error.message_id) == ("sender_mismatch", message_id)
    await no_frame(bob)
    # Mallory's stream is still usable for her own envelopes.
    await relay(mallory, bob_id, seal(mallory_id, bob_id, b"mine"))
    got = (await frame(bob, "deliver")).deliver
    assert getattr(got, "from") == mallory_id.node_id


async def test_frame_over_size_limit(procs: ProcGroup, clients: Clients) -> None:
    clients.host = procs.host("host", "--max-frame-bytes", "20000")
    a, a_id = await clients.node()
    b, b_id = await clients.node()
    big = seal(a_id, b_id, b"x" * 30_000)
    message_id = await relay(a, b_id, big)
    f = await frame(a, "error")
    assert f.error.code == "too_large" and f.error.node_id == b_id.node_id
    await no_frame(b)
    # The same stream still works, and so does everyone else.
    await relay(a, b_id, seal(a_id, b_id, b"small"))
    assert (await frame(b, "deliver")).deliver.message_id != message_id
    c, c_id = await clients.node()
    await relay(c, b_id, seal(c_id, b_id, b"from c"))
    assert getattr((await frame(b, "deliver")).deliver, "from") == c_id.node_id
    # Far beyond the limit gRPC itself ends that one stream; the host stays up.
    huge = seal(a_id, b_id, b"y" * 200_000)
    await relay(a, b_id, huge)
    assert await asyncio.wait_for(a.frames.get(), 5.0) is None
    assert "RESOURCE_EXHAUSTED" in a.end
    await relay(c, b_id, seal(c_id, b_id, b"after"))
    await frame(b, "deliver")


async def test_offline_recipient_is_queued_then_bounded(procs: ProcGroup, clients: Clients) -> None:
    clients.host = procs.host("host", "--queue-max-messages", "3")
    a, a_id = await clients.node()
    offline = NodeIdentity.generate()
    # The host stores only for a node it knows the friends of (from its last registration).
    gone, _ = await clients.node(offline, allow=[a_id.node_id])
    await gone.close()
    await gone_from_host(a, offline)
    ids = []
    for i in range(3):
        ids.append(await relay(a, offline, seal(a_id, offline, f"m{i}".encode())))
        f = await frame(a, "queued")
        assert (f.queued.message_id, f.queued.to) == (ids[-1], offline.node_id)
    # Re-sending a stored message (an outbox retry) does not store it twice.
    await relay(a, offline, seal(a_id, offline, b"m0", message_id=ids[0]))
    assert (await frame(a, "queued")).queued.message_id == ids[0]
    extra = await relay(a, offline, seal(a_id, offline, b"one too many"))
    f = await frame(a, "error")
    assert (f.error.code, f.error.message_id) == ("queue_full", extra)
    # The recipient comes online: it gets the three, oldest first, exactly once.
    b, _ = await clients.node(offline)
    assert b.registered.queued == 3
    got = [(await frame(b, "deliver")).deliver.message_id for _ in range(3)]
    assert got == ids
    await no_frame(b)


async def test_stored_messages_unacked_are_redelivered(procs: ProcGroup, clients: Clients) -> None:
    clients.host = procs.host()
    a, a_id = await clients.node()
    b_id = NodeIdentity.generate()
    b0, _ = await clients.node(b_id, allow=[a_id.node_id])
    await b0.close()
    await gone_from_host(a, b_id)
    message_id = await relay(a, b_id, seal(a_id, b_id))
    await frame(a, "queued")
    b1, _ = await clients.node(b_id)
    assert (await frame(b1, "deliver")).deliver.message_id == message_id
    await b1.close()  # gone before acking: the host keeps the message
    b2, _ = await clients.node(b_id)
    d = (await frame(b2, "deliver")).deliver
    assert d.message_id == message_id
    ack = env.make_ack(
        b_id,
        message_id=message_id,
        to_node_id=a_id.node_id,
        envelope_hash=env.envelope_hash(d.envelope),
        status=1,
    )
    await b2.write(N(ack_send=host_pb2.AckSend(to=a_id.node_id, message_id=message_id, ack=ack)))
    got = (await frame(a, "ack")).ack
    assert (got.message_id, got.ack, getattr(got, "from")) == (message_id, ack, b_id.node_id)
    await b2.close()
    b3, _ = await clients.node(b_id)
    assert b3.registered.queued == 0
    await no_frame(b3)


async def test_flooding_connection_is_throttled(procs: ProcGroup, clients: Clients) -> None:
    clients.host = procs.host("host", "--rate", "50", "--burst", "50", "--metrics-listen", "127.0.0.1:0")
    flooder, flooder_id = await clients.node()
    sink, sink_id = await clients.node()
    c, c_id = await clients.node()
    d, d_id = await clients.node()
    spam = N(relay_send=host_pb2.RelaySend(to=sink_id.node_id, envelope=seal(flooder_id, sink_id, b"spam")))

    async def flood() -> None:
        for _ in range(2000):
            await flooder.write(spam)

    received = 0

    async def drain() -> None:
        nonlocal received
        while await sink.frames.get() is not None:  # no wait_for: it can swallow a cancel
            received += 1

    started = time.monotonic()
    tasks = [asyncio.create_task(flood()), asyncio.create_task(drain())]
    try:
        # While the flood goes on, another pair's messages keep flowing promptly.
        latencies = []
        while received < 110:
            t0 = time.monotonic()
            await relay(c, d_id, seal(c_id, d_id, b"ok"))
            await frame(d, "deliver")
            latencies.append(time.monotonic() - t0)
        elapsed = time.monotonic() - started
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    # 110 frames past a burst of 50 at 50/s take at least ~1.2 s: the flooder was paced.
    assert elapsed > 1.0, elapsed
    assert max(latencies) < 1.0, max(latencies)
    metrics = urllib.request.urlopen(f"http://{clients.host.metrics}/metrics", timeout=5).read().decode()
    throttled = re.search(r"^tmax_host_throttled_total (\S+)$", metrics, re.MULTILINE)
    assert throttled and float(throttled.group(1)) > 0


# -- supersede and lookups -----------------------------------------------------------------


async def test_newer_registration_supersedes(procs: ProcGroup, clients: Clients) -> None:
    clients.host = procs.host()
    a, a_id = await clients.node()
    b_id = NodeIdentity.generate()
    b1, _ = await clients.node(b_id)
    b2, _ = await clients.node(b_id)
    b3, _ = await clients.node(b_id)  # twice, quickly
    assert "superseded" in await ended_with(b1, "superseded")
    assert "superseded" in await ended_with(b2, "superseded")
    for body in (b"one", b"two"):
        await relay(a, b_id, seal(a_id, b_id, body))
        assert (await frame(b3, "deliver")).deliver.envelope
    # The old streams' cleanup (long done) did not remove the newest route.
    await b1.close()
    await b2.close()
    await relay(a, b_id, seal(a_id, b_id, b"three"))
    await frame(b3, "deliver")


async def test_lookup_answers_only_allowed_friends(procs: ProcGroup, clients: Clients) -> None:
    clients.host = procs.host("host", "--lookup-burst", "20")
    friend_id, stranger_id = NodeIdentity.generate(), NodeIdentity.generate()
    target, target_id = await clients.node(
        allow=[friend_id.node_id], endpoints=["0.0.0.0:7000", "192.0.2.10:7001"]
    )
    friend, _ = await clients.node(friend_id)
    stranger, _ = await clients.node(stranger_id)

    async def lookup(s: Raw) -> host_pb2.LookupResult:
        await s.write(N(lookup=host_pb2.Lookup(target=target_id.node_id)))
        return (await frame(s, "lookup_result")).lookup_result

    found = await lookup(friend)
    assert found.found and found.observed_ip == "127.0.0.1"
    # Advertised endpoints, plus the observed IP with each advertised port; never the source port.
    assert list(found.endpoints) == ["127.0.0.1:7000", "192.0.2.10:7001", "127.0.0.1:7001"]
    source_port = target.registered.observed_addr.rpartition(":")[2]
    assert all(not e.endswith(":" + source_port) for e in found.endpoints)
    refused = await lookup(stranger)
    assert not refused.found and not refused.endpoints
    # The target changes its allow-list on the authenticated stream.
    await target.write(N(set_lookup_allow=host_pb2.SetLookupAllow(node_ids=[stranger_id.node_id])))
    await target.write(N(ping=host_pb2.Ping(time_ms=1)))
    await frame(target, "pong")  # the host has processed the update
    assert (await lookup(stranger)).found
    assert not (await lookup(friend)).found


async def test_lookups_are_rate_limited(procs: ProcGroup, clients: Clients) -> None:
    clients.host = procs.host("host", "--lookup-rate", "1", "--lookup-burst", "3")
    s, _ = await clients.node()
    target = NodeIdentity.generate().node_id
    for _ in range(5):
        await s.write(N(lookup=host_pb2.Lookup(target=target)))
    kinds = [(await frame(s)).WhichOneof("frame") for _ in range(5)]
    assert kinds.count("lookup_result") == 3 and kinds.count("error") == 2


async def test_health_serving(procs: ProcGroup) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    host = procs.host()
    async with grpc.aio.insecure_channel(host.listen) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "tmax_mesh.host.v1.HostService"):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


# -- attacks (issue 13) ----------------------------------------------------------------------


async def answers_until_pong(raw: Raw) -> list[str]:
    """Ping, then every frame kind the host sent before the Pong: the host
    handles one connection's frames in order, so this is exactly its answer to
    what was written before (no waiting for something not to happen)."""
    await raw.write(N(ping=host_pb2.Ping(time_ms=7)))
    kinds = []
    while (kind := (await frame(raw)).WhichOneof("frame")) != "pong":
        kinds.append(kind)
    return kinds


async def gone_from_host(asker: Raw, target: NodeIdentity) -> None:
    """Wait until the host has dropped ``target``'s route (``asker`` is a friend of it)."""

    async def gone() -> bool:
        await asker.write(N(lookup=host_pb2.Lookup(target=target.node_id)))
        return not (await frame(asker, "lookup_result")).lookup_result.found

    await wait_for_async(gone, 5, 0.05, what="the host to notice the closed stream")


async def test_stranger_fills_offline_victims_queue(procs: ProcGroup, clients: Clients) -> None:
    clients.host = procs.host("host", "--queue-max-messages", "5", "--lookup-burst", "200")
    victim_id, friend_id = NodeIdentity.generate(), NodeIdentity.generate()
    victim, _ = await clients.node(victim_id, allow=[friend_id.node_id])
    friend, _ = await clients.node(friend_id)
    await victim.close()
    await gone_from_host(friend, victim_id)
    # A stranger (not in the victim's allow list) sends tiny envelopes until the queue is full.
    stranger, stranger_id = await clients.node()
    for i in range(5):
        await relay(stranger, victim_id, seal(stranger_id, victim_id, f"junk {i}".encode()))
    await answers_until_pong(stranger)
    # The victim's friend can still leave a message.
    mine = await relay(friend, victim_id, seal(friend_id, victim_id, b"from a friend"))
    assert await answers_until_pong(friend) == ["queued"]
    back, _ = await clients.node(victim_id, allow=[friend_id.node_id])
    got = [(await frame(back, "deliver")).deliver for _ in range(back.registered.queued)]
    assert [(getattr(d, "from"), d.message_id) for d in got] == [(friend_id.node_id, mine)]


async def test_queued_answer_reveals_presence(procs: ProcGroup, clients: Clients) -> None:
    clients.host = procs.host("host", "--lookup-burst", "200")
    friend_id = NodeIdentity.generate()
    online, online_id = await clients.node(allow=[friend_id.node_id])
    offline_id = NodeIdentity.generate()
    offline, _ = await clients.node(offline_id, allow=[friend_id.node_id])
    friend, _ = await clients.node(friend_id)
    await offline.close()
    await gone_from_host(friend, offline_id)
    stranger, stranger_id = await clients.node()
    answers = {}
    for name, target in (("online", online_id), ("offline", offline_id)):
        await relay(stranger, target, seal(stranger_id, target))
        answers[name] = await answers_until_pong(stranger)
    assert answers["online"] == answers["offline"], answers
    # The online node did get the envelope (a stranger's first contact must arrive).
    assert getattr((await frame(online, "deliver")).deliver, "from") == stranger_id.node_id


async def test_friend_takes_the_whole_offline_queue(procs: ProcGroup, clients: Clients) -> None:
    clients.host = procs.host("host", "--queue-max-messages", "6", "--lookup-burst", "200")
    victim_id, f1_id, f2_id = (NodeIdentity.generate() for _ in range(3))
    victim, _ = await clients.node(victim_id, allow=[f1_id.node_id, f2_id.node_id])
    f1, _ = await clients.node(f1_id)
    f2, _ = await clients.node(f2_id)
    await victim.close()
    await gone_from_host(f1, victim_id)
    for i in range(6):
        await relay(f1, victim_id, seal(f1_id, victim_id, f"f1 {i}".encode()))
    assert await answers_until_pong(f1) == ["queued"] * 6
    # The other friend still gets its fair share (half of the queue)...
    for i in range(3):
        await relay(f2, victim_id, seal(f2_id, victim_id, f"f2 {i}".encode()))
    assert await answers_until_pong(f2) == ["queued"] * 3
    # ...and no more.
    await relay(f2, victim_id, seal(f2_id, victim_id, b"f2 over its share"))
    assert await answers_until_pong(f2) == ["error"]
    back, _ = await clients.node(victim_id)
    got = [getattr((await frame(back, "deliver")).deliver, "from") for _ in range(back.registered.queued)]
    assert sorted(got) == sorted([f1_id.node_id] * 3 + [f2_id.node_id] * 3)


async def test_one_address_takes_every_connection_slot(procs: ProcGroup, clients: Clients) -> None:
    clients.host = procs.host("host", "--max-connections", "80")
    opened = 0
    for _ in range(80):
        try:
            await clients.open()
            opened += 1
        except ConnectionError as err:
            assert "RESOURCE_EXHAUSTED" in str(err), err
    assert opened <= 64, f"one address holds {opened} of the host's 80 connections"


async def test_registration_with_oversized_allow_list(procs: ProcGroup, clients: Clients) -> None:
    clients.host = procs.host()
    s = await clients.open()
    allow = [NodeIdentity.generate().node_id[:10] * 2 for _ in range(1001)]
    await s.write(
        N(
            register=wire.make_register(
                NodeIdentity.generate(), s.challenge, [], allow, relay_url=clients.host.url
            )
        )
    )
    await ended_with(s, "bad_registration")


async def test_registration_advertises_non_tcp_endpoints(procs: ProcGroup, clients: Clients) -> None:
    clients.host = procs.host()
    for bad in ("unix:/run/victim.sock", "224.0.0.251:5353", "255.255.255.255:9", "[ff02::1]:7000", "x:0"):
        s = await clients.open()
        reg = wire.make_register(NodeIdentity.generate(), s.challenge, [bad], [], relay_url=clients.host.url)
        await s.write(N(register=reg))
        f = await frame(s)
        assert f.WhichOneof("frame") == "error" and f.error.code == "bad_registration", (bad, f)


async def test_registration_is_bound_to_the_url_the_node_dialed(procs: ProcGroup) -> None:
    host = procs.host("host", "--public-url", "grpc://relay.test:7447")
    identity = NodeIdentity.generate()
    session = await HostSession.open(host.listen)  # signs grpc://127.0.0.1:PORT: not this host's URL
    try:
        with pytest.raises(wire.RegisterError, match=r"wrong_url.*grpc://relay\.test:7447"):
            await session.register(identity, [], [])
    finally:
        await session.close()
    session = await HostSession.open(host.listen, url="grpc://RELAY.test:7447/")
    try:
        assert (await session.register(identity, [], [])).connection_id
    finally:
        await session.close()


async def test_registration_is_bound_to_the_tls_certificate(procs: ProcGroup, tmp_path: Path) -> None:
    from tests.e2e.test_relay import make_ca, make_server_cert

    ca, issuer, issuer_key = make_ca(tmp_path, "ca")
    cert, key = make_server_cert(tmp_path, issuer, issuer_key)
    host = procs.host("host", "--tls-cert", str(cert), "--tls-key", str(key))
    digest = await asyncio.to_thread(wire.certificate_sha256, wire.parse_relay_url(host.url), str(ca))
    der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    assert digest == hashlib.sha256(der).digest()
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    for sent in (bytes(32), b""):  # another certificate's hash, or none (as if plaintext)
        session = await HostSession.open(host.listen, credentials, cert_sha256=sent)
        try:
            with pytest.raises(wire.RegisterError, match="wrong_certificate"):
                await session.register(NodeIdentity.generate(), [], [])
        finally:
            await session.close()
    session = await HostSession.open(host.listen, credentials, cert_sha256=digest)
    try:
        assert (await session.register(NodeIdentity.generate(), [], [])).connection_id
    finally:
        await session.close()


async def test_connections_per_address_are_capped(procs: ProcGroup, clients: Clients) -> None:
    clients.host = procs.host("host", "--max-connections-per-ip", "3", "--metrics-listen", "127.0.0.1:0")
    first, _ = await clients.node()
    await clients.node()
    await clients.open()  # registered or not, every stream counts
    with pytest.raises(ConnectionError, match=r"RESOURCE_EXHAUSTED.*limit per address"):
        await clients.open()
    await first.close()
    # the host notices the closed stream almost at once
    await wait_for_async(clients.registers, 5, 0.1, what="a slot to free up after a client left")
    metrics = urllib.request.urlopen(f"http://{clients.host.metrics}/metrics", timeout=5).read().decode()
    assert re.search(r'^tmax_host_drops_total\{reason="max_connections_per_ip"\} [1-9]', metrics, re.M)


async def test_new_streams_per_address_are_rate_limited(procs: ProcGroup, clients: Clients) -> None:
    # 0.5/s: the three registrations below may take a while on a busy machine
    # without a token coming back meanwhile.
    clients.host = procs.host("host", "--register-rate", "0.5", "--register-burst", "3")
    for _ in range(3):
        s, _ = await clients.node()
        await s.close()  # not the connection cap: the rate of new streams
    with pytest.raises(ConnectionError, match=r"RESOURCE_EXHAUSTED.*too many new connections"):
        await clients.open()
    # a token comes back within 2 s
    await wait_for_async(clients.registers, 10, 0.1, what="the bucket to refill")


async def test_wildcard_listen_accepts_loopback_urls_only(procs: ProcGroup) -> None:
    host = procs.host("host", "--listen", "0.0.0.0:0")
    port = host.listen.rpartition(":")[2]
    assert "without --public-url" in host.log()
    for url, accepted in ((f"grpc://localhost:{port}", True), (f"grpc://192.0.2.1:{port}", False)):
        session = await HostSession.open(f"127.0.0.1:{port}", url=url)
        try:
            if accepted:
                assert (await session.register(NodeIdentity.generate(), [], [])).connection_id
            else:
                with pytest.raises(wire.RegisterError, match="wrong_url"):
                    await session.register(NodeIdentity.generate(), [], [])
        finally:
            await session.close()
