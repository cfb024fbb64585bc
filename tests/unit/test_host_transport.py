"""The node's relay transport against an in-process host (a real gRPC server
on 127.0.0.1, no subprocess): send, store-and-forward acks, lookup and the
allow-list, reachability, configuration errors."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.polling import wait_for_async
from tests.unit.relayfakes import FakeNode, StartTransport, connected, relay_hosts, relay_transports, seal
from tmax_core import envelope as env
from tmax_core.errors import ConfigError
from tmax_core.model import Friend, IngressSource
from tmax_mesh_relay import wire
from tmax_mesh_relay.proto import host_pb2
from tmax_mesh_relay.transport import HostLink, RelayTransport, find_relay

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module")
async def host() -> AsyncIterator[str]:
    async with relay_hosts() as start:
        url, _hub = await start()
        yield url


@pytest_asyncio.fixture(loop_scope="module")
async def started() -> AsyncIterator[StartTransport]:
    async with relay_transports() as start:
        yield start


async def test_send_returns_the_recipients_ack(host: str, started: Any) -> None:
    a, b = FakeNode([host]), FakeNode([host])
    ta, tb = await started(a), await started(b)
    await wait_for_async(lambda: connected(ta) and connected(tb), what="both transports registered")
    assert find_relay(a) is ta and "relay" in a.reconnected  # the outbox is kicked on registration
    friend_b = a.befriend(b, [host.upper().replace("GRPC://", "grpc://")])  # same host, other spelling
    assert ta.can_reach(friend_b)
    envelope = seal(a, b)
    ack = await ta.send(friend_b, envelope, 5.0)
    message_id = env.parse(envelope, len(envelope)).message_id
    body = env.verify_ack(
        ack,
        expected_signer_public_key=b.identity.public_key,
        expected_signer_node_id=b.identity.node_id,
        sender_node_id=a.identity.node_id,
        message_id=message_id,
        envelope_hashes=[env.envelope_hash(envelope)],
    )
    assert body.status == 1
    assert b.envelopes == [(envelope, IngressSource("relay", a.node_id_hex))]
    status = ta.status()
    assert status["sent"] == 1 and status["hosts"][0]["state"] == "connected"
    assert status["hosts"][0]["registered_since_ms"] and status["hosts"][0]["last_error"] is None


async def test_offline_recipient_then_async_ack(host: str, started: Any) -> None:
    a, b = FakeNode([host]), FakeNode([host], endpoints=["0.0.0.0:7000"])
    b.befriend(a, [host])  # the host stores for b only from its friends
    ta, tb = await started(a), await started(b)
    await wait_for_async(lambda: connected(ta) and connected(tb), what="both transports registered")
    await tb.stop()
    b.transports.clear()

    async def route_dropped() -> bool:
        return not await ta.lookup(b.identity.node_id)

    # (polled within the host's lookup rate)
    await wait_for_async(route_dropped, interval=0.1, what="the host to drop b's route")
    friend_b = a.befriend(b, [host])
    assert await ta.send(friend_b, seal(a, b), 5.0) is None  # stored at the host
    assert ta.status()["queued"] == 1
    await started(b)
    await wait_for_async(lambda: a.acks, what="the asynchronous ack at a")
    _ack, sender = a.acks[0]
    assert sender == b.identity.node_id and len(b.envelopes) == 1


async def test_lookup_follows_the_allow_list(host: str, started: Any) -> None:
    a, b = FakeNode([host]), FakeNode([host], endpoints=["0.0.0.0:7000"])
    b.befriend(a, [host])  # b allows a before registering
    ta, tb = await started(a), await started(b)
    await wait_for_async(lambda: connected(ta) and connected(tb), what="both transports registered")
    a.befriend(b, [host])
    assert await ta.lookup(b.identity.node_id) == ["127.0.0.1:7000"]
    # b drops a: its listener pushes the new allow-list on the stream.
    del b.friends[a.identity.node_id]
    for listener in b.friend_listeners:
        listener()
    assert await wait_for_async(lambda: tb.links[0]._sent_allow == [], what="b's allow list sent")
    assert await ta.lookup(b.identity.node_id) == []


async def test_can_reach_needs_a_shared_registered_host(host: str, started: Any) -> None:
    a, b = FakeNode([host]), FakeNode([])
    ta = await started(a)
    friend = a.befriend(b, ["grpc://127.0.0.1:1"])
    assert not ta.can_reach(friend)  # not connected yet, and not a host we share
    await wait_for_async(lambda: connected(ta), what="a registered")
    assert not ta.can_reach(friend)
    friend.relay_hosts = []
    assert ta.can_reach(friend)  # the friend lists no host: any registered one
    with pytest.raises(ConnectionError):
        await ta.send(
            Friend(node_id=b"\x01" * 20, public_key=b"", relay_hosts=["grpc://127.0.0.2:1"]), seal(a, b), 1
        )


async def test_unreachable_host_is_reported(started: Any) -> None:
    a = FakeNode(["grpc://127.0.0.1:1"])
    ta = await started(a)
    await wait_for_async(lambda: ta.status()["hosts"][0]["last_error"], what="the host's error in a's status")
    status = ta.status()
    assert status["state"] in ("down", "connecting")
    assert "UNAVAILABLE" in status["hosts"][0]["last_error"]


async def test_no_relays_is_off(started: Any) -> None:
    ta = await started(FakeNode([]))
    assert ta.status() == {"state": "off", "hosts": [], "sent": 0, "queued": 0, "received": 0}


async def test_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"node\.relays"):
        await RelayTransport(FakeNode(["http://example.org"])).start()
    with pytest.raises(ConfigError, match="cannot read"):
        await RelayTransport(FakeNode(["grpcs://127.0.0.1:1"], ca_file=str(tmp_path / "nope.pem"))).start()
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match="no PEM certificate"):
        await RelayTransport(FakeNode(["grpcs://127.0.0.1:1"], ca_file=str(tmp_path / "bad.pem"))).start()


async def test_plaintext_to_a_remote_host_warns_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def no_dial(self: HostLink) -> None:  # this test must not dial anything
        return None

    monkeypatch.setattr(HostLink, "run", no_dial)
    relays = ["grpc://relay.example.org:7447", "grpc://127.0.0.1:7447", "grpcs://relay.example.org:443"]
    transport = RelayTransport(FakeNode(relays))
    with caplog.at_level(logging.WARNING, logger="tmax_mesh.relay"):
        await transport.start()
    await transport.stop()
    warnings = [r.getMessage() for r in caplog.records if "not loopback and not TLS" in r.getMessage()]
    assert len(warnings) == 1 and "grpc://relay.example.org:7447" in warnings[0]


async def test_an_ack_counts_only_from_the_recipient() -> None:
    """Acks and Queued answers resolve a send by (recipient, message id): another
    node's Ack carrying the same message id does not (DESIGN §7)."""
    a = FakeNode([])
    link = HostLink(RelayTransport(a), wire.parse_relay_url("grpc://127.0.0.1:1"))
    b, c, message_id = b"b" * 20, b"c" * 20, b"m" * 16
    waiting = asyncio.get_running_loop().create_future()
    link._acks[(b, message_id)] = waiting
    link._on_ack(host_pb2.Ack(**{"from": c, "message_id": message_id, "ack": b"from c"}))
    assert not waiting.done()
    link._on_ack(host_pb2.Ack(**{"from": b, "message_id": message_id, "ack": b"from b"}))
    assert waiting.result() == b"from b"
    # c's ack went the asynchronous way (verified, and refused, there)
    await wait_for_async(lambda: a.acks, what="c's ack handed to a's node")
    assert a.acks == [(b"from c", c)]


async def test_no_ack_goes_back_when_ingress_gives_none(host: str, started: Any) -> None:
    a, b = FakeNode([host]), FakeNode([host])
    ta, tb = await started(a), await started(b)
    await wait_for_async(lambda: connected(ta) and connected(tb), what="both transports registered")
    friend_b = a.befriend(b, [host])
    quiet, answered = seal(a, b, b"quiet"), seal(a, b, b"answered")
    quiet_id = env.parse(quiet, len(quiet)).message_id
    b.unanswered.add(quiet_id)
    first = asyncio.create_task(ta.send(friend_b, quiet, 5.0))
    await wait_for_async(lambda: len(b.envelopes) == 1, what="the envelope at b")
    # b's frames reach a in order: had the first been answered, its ack would be in by now.
    assert await ta.send(friend_b, answered, 5.0)
    link = ta.links[0]
    assert not link._acks[(b.identity.node_id, quiet_id)].done()
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)


async def test_a_link_going_down_during_a_write_leaves_no_unretrieved_failure() -> None:
    """The link goes down (failing every waiting send) while a send is still
    writing its frame; the send raises the write's error, and the failure set
    on its future is marked seen: asyncio logs no "Future exception was never
    retrieved" traceback into the node's log."""
    a = FakeNode([])
    link = HostLink(RelayTransport(a), wire.parse_relay_url("grpc://127.0.0.1:1"))
    writing, unblock = asyncio.Event(), asyncio.Event()

    class StuckSession:
        async def write(self, frame: host_pb2.NodeFrame) -> None:
            writing.set()
            await unblock.wait()
            raise ConnectionError("stream closed")

    link.session = StuckSession()  # type: ignore[assignment]
    link._state = "connected"
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:

        async def send_once() -> str:
            try:
                await link.relay_envelope(b"b" * 20, b"m" * 16, b"envelope", 5.0)
            except ConnectionError as err:
                return str(err)  # (the error, and the frames it holds, go with this block)
            return "sent"

        send = asyncio.create_task(send_once())
        await writing.wait()
        [waiting] = link._acks.values()
        link._down("the host went away")
        unblock.set()
        assert await send == "stream closed"
        del send, waiting
        gc.collect()
        assert not [c for c in reported if "never retrieved" in str(c.get("message"))], reported
    finally:
        loop.set_exception_handler(previous)


def _connected_link(transport: RelayTransport, url: str, members: list[str]) -> HostLink:
    link = HostLink(transport, wire.parse_relay_url(url))
    link.set_members(members)
    link._state = "connected"
    transport.links.append(link)
    return link


async def test_a_host_naming_another_as_its_member_does_not_come_before_that_host() -> None:
    """A hostile host listed first names an honest host as a cluster member: a
    friend whose card names the honest host is sent through the honest link
    first; the claim only adds a fallback."""
    node = FakeNode([])
    transport = RelayTransport(node)
    hostile = _connected_link(transport, "grpc://evil.example:7447", ["grpc://honest.example:7447"])
    honest = _connected_link(transport, "grpc://honest.example:7447", [])
    friend = Friend(node_id=b"f" * 20, public_key=b"k" * 33, relay_hosts=["grpc://HONEST.example:7447"])
    assert transport._links_for(friend) == [honest, hostile]
    elsewhere = Friend(node_id=b"g" * 20, public_key=b"k" * 33, relay_hosts=["grpc://other.example:7447"])
    assert transport._links_for(elsewhere) == []


async def test_links_are_one_cluster_only_when_each_host_names_the_other() -> None:
    """A link stands by only for a link whose host and its own name each other:
    one host's claim (hostile, or not yet confirmed by a registration on the
    other) leaves the other link dialing."""
    node = FakeNode([])
    transport = RelayTransport(node)
    claims = _connected_link(transport, "grpc://evil.example:7447", ["grpc://honest.example:7447"])
    honest = HostLink(transport, wire.parse_relay_url("grpc://honest.example:7447"))
    transport.links.append(honest)
    assert not claims.same_cluster(honest) and not honest.same_cluster(claims)
    assert transport.cover(honest) is None  # never heard from: dials
    honest.set_members(["grpc://honest.example:7447"])  # its host names only itself
    assert transport.cover(honest) is None
    honest.set_members(["grpc://honest.example:7447", "grpc://EVIL.example:7447"])  # now mutual
    assert transport.cover(honest) is claims
    assert transport.cover(claims) is None  # honest is not connected: nothing covers claims


async def test_a_hosts_member_list_is_capped_checked_and_parsed_once() -> None:
    node = FakeNode([])
    transport = RelayTransport(node)
    too_long = "grpc://m" + "x" * 600 + ":1"
    urls = ["not a url", too_long, *(f"grpc://m{i}.example:7447" for i in range(100_000))]
    link = _connected_link(transport, "grpc://h.example:7447", urls)
    assert len(link.member_urls) == 64
    assert link.member_urls[0] == "grpc://m0.example:7447"  # the bad and the overlong ones dropped
    assert link.reaches("grpc://m63.example:7447") and not link.reaches("grpc://m64.example:7447")
    friend = Friend(node_id=b"f" * 20, public_key=b"k" * 33, relay_hosts=["grpc://m5.example:7447"])
    for _ in range(10_000):  # each is a few set lookups now, not a parse of every member URL
        assert transport.can_reach(friend)
