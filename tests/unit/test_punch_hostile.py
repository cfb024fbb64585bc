"""A hostile relay host against the node's puncher: what a PunchGo or a
PunchToken can make the node dial, and what it cannot (security review 2)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from tests.polling import wait_for_async
from tests.unit.test_punch_link import Peer, _free_port, _Node, _PeerHost
from tmax_core.peer import DirectTransport
from tmax_mesh_direct import portmap
from tmax_mesh_direct.punch import MAX_BUSY, MAX_DIAL_IN_MS, Puncher, PunchRecord
from tmax_mesh_direct.punchaddr import parse_addr, scope, screen
from tmax_mesh_direct.relaypeer import relay_peer_ip
from tmax_mesh_direct.upgrade import RELAY
from tmax_mesh_relay.proto import host_pb2

MAPPED = "100.64.0.2:40000"  # our punch port's mapping on the host, as in the NAT lab


class _Upgrader:
    def __init__(self) -> None:
        self.path: dict[bytes, str] = {}
        self.path_listeners: list[Any] = []


class _Link:
    """What the puncher uses of a HostLink."""

    def __init__(self, url: str) -> None:
        self.url = SimpleNamespace(url=url, target=url.removeprefix("grpc://"))
        self.connected = True
        self.written: list[host_pb2.NodeFrame] = []

    async def write(self, frame: host_pb2.NodeFrame) -> None:
        self.written.append(frame)


def _link(url: str = "grpc://relay.example:7447") -> Any:
    return _Link(url)


class Fixture:
    def __init__(self) -> None:
        self.friend = Peer().as_friend()
        node = _Node()
        node.friends = {self.friend.node_id: self.friend}
        self.upgrader = _Upgrader()
        self.puncher = Puncher(
            node, relay=object(), direct=DirectTransport(_PeerHost()), upgrader=self.upgrader
        )  # type: ignore[arg-type]
        self.link = _link()
        self.puncher.mapped[self.link.url.url] = MAPPED
        self.dialed: list[tuple[str, int]] = []

        async def spy(addr: tuple[str, int], dial_in_s: float) -> socket.socket:
            self.dialed.append(addr)
            raise ConnectionError("no connection (spy)")

        self.puncher._connect = spy  # type: ignore[method-assign]

    def go(self, addr: str = "100.64.0.3:40000", dial_in_ms: int = 0) -> host_pb2.PunchGo:
        return host_pb2.PunchGo(
            peer=self.friend.node_id, peer_addr=addr, dial_in_ms=dial_in_ms, attempt=b"x" * 8
        )

    def record(self) -> PunchRecord:
        return self.puncher.records.setdefault(self.friend.node_id, PunchRecord())

    async def settle(self) -> None:
        await asyncio.gather(*self.puncher._tasks, return_exceptions=True)


@pytest.fixture
async def fx() -> AsyncIterator[Fixture]:
    made = Fixture()
    yield made
    for task in list(made.puncher._tasks):
        task.cancel()
    made.puncher.ports.stop()
    made.puncher._listener.close()


# -- the address screen -----------------------------------------------------------------


def test_scopes() -> None:
    assert [scope(ip) for ip in ("127.0.0.1", "169.254.1.1", "10.1.2.3", "100.64.0.2", "8.8.8.8")] == [
        "loopback",
        "link-local",
        "private",
        "shared",
        "public",
    ]
    assert scope("240.0.0.1") is None and scope("::1") is None


@pytest.mark.parametrize(
    "addr",
    [
        "0.0.0.0:1",
        "255.255.255.255:80",
        "224.0.0.1:80",
        "127.0.0.1:0",
        "127.0.0.1:70000",
        "[::1]:80",
        "relay.example:80",
    ],
)
def test_parse_addr_refuses_what_is_not_a_unicast_ipv4_endpoint(addr: str) -> None:
    with pytest.raises(ValueError):
        parse_addr(addr)


@pytest.mark.parametrize("addr", ["127.0.0.1:6379", "10.0.0.1:80", "192.168.1.1:80", "8.8.8.8:53"])
def test_a_peer_address_outside_the_scope_of_our_own_mapping_is_refused(addr: str) -> None:
    with pytest.raises(ValueError, match="this node is reached at a shared one"):
        screen(addr, "100.64.0.2")
    assert screen("100.64.0.3:40000", "100.64.0.2") == ("100.64.0.3", 40000)


# -- PunchGo ----------------------------------------------------------------------------


async def test_unsolicited_punchgo_for_a_friend_not_on_the_relay_path_is_ignored(fx: Fixture) -> None:
    fx.puncher.on_frame(fx.link, host_pb2.HostFrame(punch_go=fx.go()))
    assert fx.puncher._tasks == set() and fx.record().attempts == 0


async def test_punchgo_from_a_host_without_our_mapping_is_a_failure_not_a_dial(fx: Fixture) -> None:
    fx.upgrader.path[fx.friend.node_id] = RELAY
    fx.puncher.on_frame(_link("grpc://evil:1"), host_pb2.HostFrame(punch_go=fx.go()))
    await fx.settle()
    assert fx.dialed == [] and "not mapped" in (fx.record().last_failure or "")


@pytest.mark.parametrize(
    "addr", ["127.0.0.1:6379", "0.0.0.0:1", "224.0.0.1:80", "127.0.0.1:70000", "10.0.0.1:22"]
)
async def test_punchgo_to_a_screened_address_backs_off_without_dialing(fx: Fixture, addr: str) -> None:
    fx.upgrader.path[fx.friend.node_id] = RELAY
    fx.puncher._on_go(fx.link, fx.go(addr))
    await fx.settle()
    record = fx.record()
    assert fx.dialed == [] and record.failures == 1 and record.last_failure
    assert record.not_before > time.monotonic()  # backing off


async def test_a_host_repeating_punchgos_gets_ever_fewer_attempts(fx: Fixture) -> None:
    """Each failed attempt doubles the backoff (1 s, 2 s, 4 s... with a 2 s window):
    of 10 PunchGos in a row, only those within one window of the backoff's end are taken."""
    fx.upgrader.path[fx.friend.node_id] = RELAY
    fx.record().failures = 1  # one failed attempt already
    for _ in range(10):
        fx.puncher._on_go(fx.link, fx.go())
        await fx.settle()
    assert 1 <= len(fx.dialed) <= 3 and fx.record().failures == 1 + len(fx.dialed)


async def test_punchgo_dial_delay_above_the_bound_is_refused(fx: Fixture) -> None:
    fx.upgrader.path[fx.friend.node_id] = RELAY
    fx.puncher._on_go(fx.link, fx.go(dial_in_ms=2**32 - 1))
    await fx.settle()
    record = fx.record()
    assert not record.busy and fx.dialed == []
    assert f"at most {MAX_DIAL_IN_MS}" in (record.last_failure or "")


async def test_unsolicited_punchgo_is_taken_only_near_our_own_next_attempt(fx: Fixture) -> None:
    fx.upgrader.path[fx.friend.node_id] = RELAY
    record = fx.record()
    record.failures = 1
    record.not_before = time.monotonic() + fx.puncher.window_s + 5  # backing off
    fx.puncher._on_go(fx.link, fx.go())
    assert fx.puncher._tasks == set()
    record.not_before = time.monotonic() + fx.puncher.window_s / 2  # due within one window: taken
    fx.puncher._on_go(fx.link, fx.go())
    await fx.settle()
    assert fx.dialed == [("100.64.0.3", 40000)] and record.failures == 2  # and it doubles the backoff


async def test_no_more_than_max_busy_friends_are_punched_at_once(fx: Fixture) -> None:
    fx.upgrader.path[fx.friend.node_id] = RELAY
    for n in range(MAX_BUSY):
        fx.puncher.records[bytes([n])] = PunchRecord(busy=True)
    fx.puncher._on_go(fx.link, fx.go())
    assert fx.puncher._tasks == set()
    assert not fx.puncher._wants_punch(fx.friend, time.monotonic())


async def test_an_answer_counts_only_from_the_host_that_was_asked(fx: Fixture) -> None:
    record = fx.record()
    record.answer = asyncio.get_running_loop().create_future()
    record.asked = fx.link
    fx.puncher._on_go(_link("grpc://other:1"), fx.go("100.64.0.9:1"))
    fx.puncher.on_frame(
        _link("grpc://other:1"),
        host_pb2.HostFrame(punch_refused=host_pb2.PunchRefused(target=fx.friend.node_id, reason="x")),
    )
    assert not record.answer.done()
    fx.puncher._on_go(fx.link, fx.go())
    assert record.answer.result().peer_addr == "100.64.0.3:40000"


# -- PunchToken and the observer connection ---------------------------------------------


class Listener:
    """A TCP service that records what it is sent; optionally writes one byte back."""

    def __init__(self, reply: bytes = b"") -> None:
        self.received = b""
        self.connections = 0
        self.closed = asyncio.Event()
        self.reply = reply

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.received += await reader.readexactly(16)
        writer.write(self.reply)
        with contextlib.suppress(ConnectionError):
            await reader.read()  # until the node closes it (with a reset)
        self.closed.set()
        writer.close()


async def test_relay_peer_ip_is_the_address_of_the_open_grpc_connection() -> None:
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    # (127.0.0.1, not "localhost": on a shared machine "localhost" may first reach
    # another process's server on [::1] at the same port number.)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        await asyncio.wait_for(channel.channel_ready(), 10)
        assert relay_peer_ip(f"127.0.0.1:{port}") == "127.0.0.1"
        assert relay_peer_ip(f"127.0.0.1:{_free_port()}") is None  # nothing open to it
    finally:
        await channel.close()
        await server.stop(None)


async def test_token_is_written_to_the_relay_connection_address_never_a_new_resolution(
    fx: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    observer = Listener(reply=b"!")
    server = await asyncio.start_server(observer.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    resolved: list[str] = []
    monkeypatch.setattr(portmap, "relay_peer_ip", lambda target: resolved.append(target) or "127.0.0.1")
    fx.puncher.on_frame(fx.link, None)  # registered: a token is due
    await wait_for_async(lambda: listens(fx.link) == 1, what="PunchListen")
    token = host_pb2.PunchToken(token=b"t" * 16, port=port)
    fx.puncher.on_frame(fx.link, host_pb2.HostFrame(punch_token=token))
    fx.puncher.on_frame(fx.link, host_pb2.HostFrame(punch_token=token))  # a second one: ignored
    # The host wrote a byte on the observer connection: the node closes it.
    await asyncio.wait_for(observer.closed.wait(), 5)
    assert resolved == ["relay.example:7447"] and observer.received == b"t" * 16
    assert observer.connections == 1
    server.close()


def listens(link: Any) -> int:
    """How many PunchListen frames (token requests) the node wrote on ``link``."""
    return sum(frame.WhichOneof("frame") == "punch_listen" for frame in link.written)


@pytest.mark.parametrize("token", [b"*1\r\n$8\r\nFLUSHALL\r\n", b"short", b""])
async def test_token_of_another_length_is_never_written(fx: Fixture, token: bytes) -> None:
    fx.puncher.on_frame(fx.link, None)
    await wait_for_async(lambda: listens(fx.link) == 1, what="PunchListen")
    fx.puncher.on_frame(fx.link, host_pb2.HostFrame(punch_token=host_pb2.PunchToken(token=token, port=6379)))
    assert not fx.puncher.ports._tokens[fx.link.url.url].done()  # still waiting for a valid one


async def test_token_not_asked_for_is_ignored(fx: Fixture, caplog: pytest.LogCaptureFixture) -> None:
    token = host_pb2.PunchToken(token=b"t" * 16, port=6379)
    fx.puncher.on_frame(fx.link, host_pb2.HostFrame(punch_token=token))
    assert "not asked for" in caplog.text and fx.puncher.ports._keepers == {}


async def test_no_relay_connection_means_no_observer_dial(
    fx: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the relay's name would now resolve to 127.0.0.1; the node never asks."""
    loop = asyncio.get_running_loop()

    async def rebinding(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the node resolved the relay's name again")

    monkeypatch.setattr(loop, "getaddrinfo", rebinding)
    ended = await fx.puncher.ports._observe(fx.link, host_pb2.PunchToken(token=b"t" * 16, port=6379))
    assert "no connection to the relay host" in ended


# -- the punch port's accept loop -------------------------------------------------------


async def test_punch_port_keeps_accepting_after_an_accept_error(
    fx: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    real = loop.sock_accept
    failures = [OSError(24, "Too many open files")]

    async def flaky(sock: socket.socket) -> Any:
        if failures:
            raise failures.pop()
        return await real(sock)

    monkeypatch.setattr(loop, "sock_accept", flaky)
    accepting = asyncio.create_task(fx.puncher._accept())
    stranger = socket.socket()
    stranger.setblocking(False)
    try:
        await loop.sock_connect(stranger, ("127.0.0.1", fx.puncher.port))
        with pytest.raises(ConnectionResetError):  # accepted and reset
            await asyncio.wait_for(loop.sock_recv(stranger, 1), 5)
        await wait_for_async(lambda: failures == [], what="the failed accept")
        assert not accepting.done()
    finally:
        accepting.cancel()
        stranger.close()


async def test_a_connection_reset_before_it_is_used_is_a_failure_not_a_traceback(fx: Fixture) -> None:
    """Seen in a soak: the punched connection was reset between connect() and
    getpeername() (ENOTCONN, an OSError that is not a ConnectionError). The
    attempt fails and backs off like any other; the socket is closed."""
    fx.upgrader.path[fx.friend.node_id] = RELAY
    handed: list[socket.socket] = []

    async def reset(addr: tuple[str, int], dial_in_s: float) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # never connected: getpeername fails
        handed.append(sock)
        return sock

    fx.puncher._connect = reset  # type: ignore[method-assign]
    fx.puncher._on_go(fx.link, fx.go())
    results = await asyncio.gather(*fx.puncher._tasks, return_exceptions=True)
    assert not [r for r in results if isinstance(r, BaseException)], results
    record = fx.record()
    assert record.failures == 1 and "not connected" in (record.last_failure or "")
    assert handed and handed[0].fileno() == -1  # closed


# -- what a host may send at any rate (review 5) ---------------------------------------------

FLOOD = 1000


def direct_log(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tmax_mesh.direct" and r.levelno >= level]


async def test_a_flood_of_unasked_punch_tokens_is_warned_about_once(
    fx: Fixture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tmax_mesh.direct")
    frame = host_pb2.HostFrame(punch_token=host_pb2.PunchToken(token=b"t" * 16, port=40000))
    for _ in range(FLOOD):
        fx.puncher.on_frame(fx.link, frame)
    warned = direct_log(caplog, logging.WARNING)
    assert len(warned) == 1, f"{len(warned)} warnings for {FLOOD} unasked tokens"


async def test_a_flood_of_the_same_punch_mapping_is_logged_once(
    fx: Fixture, caplog: pytest.LogCaptureFixture
) -> None:
    fx.puncher.mapped.clear()
    caplog.set_level(logging.INFO, logger="tmax_mesh.direct")
    frame = host_pb2.HostFrame(punch_mapped=host_pb2.PunchMapped(addr=MAPPED))
    for _ in range(FLOOD):
        fx.puncher.on_frame(fx.link, frame)
    assert fx.puncher.mapped == {fx.link.url.url: MAPPED}
    logged = direct_log(caplog, logging.INFO)
    assert len(logged) == 1, f"{len(logged)} log lines for {FLOOD} identical PunchMapped frames"


def punch_requests(link: Any) -> int:
    return sum(frame.WhichOneof("frame") == "punch_request" for frame in link.written)


async def the_other_host_is_asked(fx: Fixture, reason: str) -> None:
    """With two mapped hosts, the first refusing every ``PunchRequest`` with
    ``reason``: after its first refusal, the friend is asked for on the other."""
    refusing = fx.link  # first in the relay list, mapped
    other = _link("grpc://relay-two.example:7447")
    fx.puncher.mapped[other.url.url] = MAPPED
    fx.puncher.relay = SimpleNamespace(links=[refusing, other])  # type: ignore[assignment]
    fx.puncher.interval_s = 0.05
    fx.upgrader.path[fx.friend.node_id] = RELAY
    refuse = host_pb2.HostFrame(punch_refused=host_pb2.PunchRefused(target=fx.friend.node_id, reason=reason))

    async def refuse_every_request(frame: host_pb2.NodeFrame) -> None:
        refusing.written.append(frame)
        if frame.WhichOneof("frame") == "punch_request":
            asyncio.get_running_loop().call_soon(fx.puncher.on_frame, refusing, refuse)

    refusing.write = refuse_every_request
    loop_task = asyncio.create_task(fx.puncher._run())
    try:
        await wait_for_async(lambda: punch_requests(refusing) >= 1, what="a request to the first host")
        await wait_for_async(lambda: punch_requests(other) >= 1, what="a request to the other")
    finally:
        loop_task.cancel()
        await asyncio.gather(loop_task, return_exceptions=True)


async def test_a_host_refusing_every_punch_request_does_not_keep_the_others_from_being_asked(
    fx: Fixture,
) -> None:
    """The first mapped host once got every request: one refusing them all (hostile,
    or honest with the friend not registered there: ``not_found``) wedged punching."""
    await the_other_host_is_asked(fx, "not_found")


async def test_a_host_answering_every_punch_request_busy_does_not_keep_the_others_from_being_asked(
    fx: Fixture,
) -> None:
    """``busy`` ("the friend asked first, its PunchGo reaches you") is no failure,
    and a host saying it to every request once kept getting them all (review 6)."""
    await the_other_host_is_asked(fx, "busy")
