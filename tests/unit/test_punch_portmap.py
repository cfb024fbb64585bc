"""The punch port's mapping on a relay host is kept while the node is
registered there: a mapping that never came (the observer unreachable, the
token late past the host's read timeout, no token at all) or that ended is
asked for again, with a backoff, and ``node status`` says why there is none.

Before this, a node whose first mapping failed (a lossy path: the NAT lab's
20 % WAN loss) stayed unmapped until it re-registered, so it never asked for
a punch and no punch ever ended for it (a CI flake of
``test_cone_to_cone_with_loss_never_lost_or_duplicated``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from tests.polling import poll_async, wait_for_async
from tests.unit.test_punch_hostile import Fixture, listens
from tests.unit.test_punch_link import _free_port
from tmax_mesh_direct import portmap
from tmax_mesh_direct.backoff import BACKOFF_MAX_ROUNDS, doubling_backoff
from tmax_mesh_relay.proto import host_pb2

INTERVAL_S = 0.05  # the retry backoff's first step, short for the tests
MAPPED = "100.64.0.2:40000"


class Observer:
    """The host's punch observer: reads the token, then closes at once
    (``hold=False``: as the host does when the token came too late) or holds
    the connection until ``drop()``."""

    def __init__(self, hold: bool) -> None:
        self.hold = hold
        self.tokens: list[bytes] = []
        self._writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            self.tokens.append(await reader.readexactly(16))
        if self.hold:
            self._writers.append(writer)
        else:
            writer.close()

    def drop(self) -> None:
        for writer in self._writers:
            writer.close()

    def close(self) -> None:
        self.drop()
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def fx(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Fixture]:
    monkeypatch.setattr(portmap, "relay_peer_ip", lambda _target: "127.0.0.1")
    made = Fixture()
    made.puncher.relay = SimpleNamespace(links=[made.link])  # type: ignore[assignment]
    made.puncher.mapped.clear()
    made.puncher.ports.interval_s = INTERVAL_S
    made.puncher._show()  # as start() does
    yield made
    made.puncher.ports.stop()
    made.puncher._listener.close()


@pytest.fixture
async def observers() -> AsyncIterator[list[Observer]]:
    made: list[Observer] = []
    yield made
    for observer in made:
        observer.close()


def token(port: int, fill: bytes = b"t") -> host_pb2.HostFrame:
    return host_pb2.HostFrame(punch_token=host_pb2.PunchToken(token=fill * 16, port=port))


def shown(fx: Fixture) -> dict[str, Any]:
    """The ``punch`` record of the direct transport, as ``node status`` shows it."""
    return fx.puncher.direct.status_extra["punch"]


async def observer(observers: list[Observer], hold: bool) -> tuple[Observer, int]:
    made = Observer(hold)
    observers.append(made)
    return made, await made.start()


async def registered(fx: Fixture) -> None:
    fx.puncher.on_frame(fx.link, None)
    await wait_for_async(lambda: listens(fx.link) == 1, what="the first PunchListen")


async def test_a_mapping_the_host_never_made_is_asked_for_again(
    fx: Fixture, observers: list[Observer]
) -> None:
    await registered(fx)
    closing, closing_port = await observer(observers, hold=False)
    fx.puncher.on_frame(fx.link, token(closing_port))
    # The host took the token too late and closed without a mapping: the node asks again.
    await wait_for_async(lambda: listens(fx.link) == 2, what="a second PunchListen")
    assert closing.tokens == [b"t" * 16]
    unmapped = shown(fx)["unmapped"][fx.link.url.url]
    assert unmapped["failures"] == 1, unmapped
    assert unmapped["last_error"] == "the host closed the punch observer connection without a mapping"
    assert unmapped["retry_at_ms"] is not None

    holding, holding_port = await observer(observers, hold=True)
    fx.puncher.on_frame(fx.link, token(holding_port, b"u"))
    await wait_for_async(lambda: holding.tokens == [b"u" * 16], what="the second token at the observer")
    fx.puncher.on_frame(fx.link, host_pb2.HostFrame(punch_mapped=host_pb2.PunchMapped(addr=MAPPED)))
    assert shown(fx)["mapped"] == {fx.link.url.url: MAPPED} and shown(fx)["unmapped"] == {}
    assert fx.puncher._hosts() == [fx.link]  # punches are asked for there now


async def test_a_punch_socket_that_cannot_be_opened_is_a_failure_tried_again(
    fx: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of file descriptors, say: the host's keeper once died of the OSError
    (a task exception nobody read) and the punch port stayed unmapped there."""

    def no_socket(port: int) -> Any:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(portmap, "bind_punch_socket", no_socket)
    await registered(fx)
    fx.puncher.on_frame(fx.link, token(_free_port()))
    await wait_for_async(lambda: listens(fx.link) == 2, what="a second PunchListen")
    error = shown(fx)["unmapped"][fx.link.url.url]["last_error"]
    assert error == "cannot open a socket on the punch port: Too many open files", error


async def test_an_unreachable_observer_is_asked_for_again(fx: Fixture) -> None:
    await registered(fx)
    fx.puncher.on_frame(fx.link, token(_free_port()))  # nothing listens there
    await wait_for_async(lambda: listens(fx.link) == 2, what="a second PunchListen")
    error = shown(fx)["unmapped"][fx.link.url.url]["last_error"]
    assert error.startswith("cannot connect to the punch observer"), error


async def test_a_token_late_on_a_slow_stream_answers_the_one_punchlisten_asked(
    fx: Fixture, observers: list[Observer]
) -> None:
    """On a lossy path the host's token can take many seconds: the node does not
    ask again meanwhile (the late token would be taken as the answer to the
    newer request, and be one the host replaced: no mapping, ever, seen in the
    NAT lab at 30 % WAN loss); it takes the token whenever it comes."""
    await registered(fx)
    asked_again = await poll_async(lambda: listens(fx.link) > 1, timeout=20 * INTERVAL_S)
    assert not asked_again, "a second PunchListen before the first was answered"
    holding, port = await observer(observers, hold=True)
    fx.puncher.on_frame(fx.link, token(port))
    await wait_for_async(lambda: holding.tokens == [b"t" * 16], what="the late token at the observer")
    assert shown(fx)["unmapped"] == {}


async def test_a_lost_mapping_is_asked_for_again(fx: Fixture, observers: list[Observer]) -> None:
    await registered(fx)
    holding, port = await observer(observers, hold=True)
    fx.puncher.on_frame(fx.link, token(port))
    await wait_for_async(lambda: holding.tokens, what="the token at the observer")
    fx.puncher.on_frame(fx.link, host_pb2.HostFrame(punch_mapped=host_pb2.PunchMapped(addr=MAPPED)))
    assert fx.puncher.mapped == {fx.link.url.url: MAPPED}
    holding.drop()  # the mapping is gone (the host closed its end)
    await wait_for_async(lambda: listens(fx.link) == 2, what="a second PunchListen")
    assert fx.puncher.mapped == {} and fx.puncher._hosts() == []
    error = shown(fx)["unmapped"][fx.link.url.url]["last_error"]
    assert error == "the host closed the punch observer connection"


async def test_a_host_without_a_punch_observer_is_not_asked_again(fx: Fixture) -> None:
    await registered(fx)
    refused = host_pb2.PunchRefused(target=b"", reason="unavailable")
    fx.puncher.on_frame(fx.link, host_pb2.HostFrame(punch_refused=refused))
    keeper = fx.puncher.ports._keepers[fx.link.url.url]
    await wait_for_async(keeper.done, what="the mapping given up on this registration")
    assert listens(fx.link) == 1
    assert shown(fx)["unmapped"][fx.link.url.url] == {
        "failures": 1,
        "last_error": "host: unavailable",
        "retry_at_ms": None,
    }


async def test_a_link_that_went_down_is_mapped_again_only_when_it_registers(
    fx: Fixture, observers: list[Observer]
) -> None:
    await registered(fx)
    closing, port = await observer(observers, hold=False)
    fx.link.connected = False
    fx.puncher.on_frame(fx.link, token(port))
    keeper = fx.puncher.ports._keepers[fx.link.url.url]
    await wait_for_async(keeper.done, what="the keeper of the ended registration")
    assert listens(fx.link) == 1 and closing.tokens == [b"t" * 16]
    fx.link.connected = True
    fx.puncher.on_frame(fx.link, None)  # registered again
    await wait_for_async(lambda: listens(fx.link) == 2, what="the new registration's PunchListen")


@pytest.mark.parametrize(("failures", "rounds"), [(1, 1), (2, 2), (3, 4), (4, 8), (100, BACKOFF_MAX_ROUNDS)])
def test_backoff_doubles_up_to_its_cap(failures: int, rounds: int) -> None:
    assert doubling_backoff(2.0, failures) == 2.0 * rounds
