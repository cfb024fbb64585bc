"""The cluster's hot-path publisher on a real nats-server: frames published close
together share one write to NATS, frames at a low rate go out at once, every frame
arrives in order with the connection's other publishes, and with nats-py's flusher
task gone (review 4) paced frames still go out and do not stall nats-py's own
publishes (which flush only into an empty flush queue)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import nats
import nats.errors
import pytest

from tests.cluster.natsproc import NatsServer
from tests.polling import wait_for_async
from tmax_mesh_relay.cluster import flush_all
from tmax_mesh_relay.pacedpublish import PacedPublisher

pytestmark = pytest.mark.timeout(60)

SUBJECT = "paced.test"


@asynccontextmanager
async def subscribed(url: str) -> AsyncIterator[tuple[Any, list[bytes]]]:
    """A connection to ``url`` and the payloads arriving on :data:`SUBJECT`, in order."""
    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    got: list[bytes] = []

    async def take(msg: Any) -> None:
        got.append(msg.data)

    try:
        await nc.subscribe(SUBJECT, cb=take)
        await flush_all(nc)
        yield nc, got
    finally:
        await nc.close()


async def test_a_burst_shares_writes_and_arrives_in_order(nats_server: NatsServer) -> None:
    async with subscribed(nats_server.url) as (nc, got):
        paced = PacedPublisher(nc, interval_s=0.05)
        assert paced.paced, "nats-py no longer has what PacedPublisher paces with"
        sent = []
        for i in range(300):
            if i % 50 == 49:
                # A plain publish in between keeps its place among the paced ones.
                sent.append(b"plain%d" % i)
                await nc.publish(SUBJECT, sent[-1])
            else:
                sent.append(b"%d" % i)
                await paced.publish(SUBJECT, sent[-1])
            if i % 10 == 9:
                await asyncio.sleep(0)  # frames reach a member one per loop iteration
        await wait_for_async(lambda: len(got) == len(sent), 10, what="every message to arrive")
        assert got == sent
        # 30 loop iterations with frames, paced at most once per 50 ms: far fewer
        # writes than iterations (how many depends on the machine's speed).
        assert 1 <= paced.flushes < 30


async def test_frames_at_a_low_rate_go_out_without_waiting(nats_server: NatsServer) -> None:
    async with subscribed(nats_server.url) as (nc, got):
        # An interval no test waits out: only unheld writes can arrive.
        paced = PacedPublisher(nc, interval_s=3600)
        for n in range(5):
            await paced.publish(SUBJECT, b"%d" % n)
            await wait_for_async(lambda n=n: len(got) == n + 1, 10, what=f"frame {n} to arrive")
        assert got == [b"0", b"1", b"2", b"3", b"4"]
        assert paced.flushes == 5
        paced.close()


async def test_errors_are_those_of_publish(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url, connect_timeout=2, allow_reconnect=False)
    paced = PacedPublisher(nc)
    with pytest.raises(nats.errors.MaxPayloadError):
        await paced.publish("paced.big", b"x" * (nc.max_payload + 1))
    await nc.close()
    with pytest.raises(nats.errors.ConnectionClosedError):
        await paced.publish("paced.closed", b"x")


class _PlainClient:
    """A NATS client without nats-py's private buffer: only ``publish``."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, str]] = []

    async def publish(self, subject: str, payload: bytes, reply: str = "") -> None:
        self.published.append((subject, payload, reply))


async def test_without_nats_py_internals_it_is_plain_publish() -> None:
    client = _PlainClient()
    paced = PacedPublisher(client)
    assert not paced.paced
    await paced.publish("s", b"p", reply="r")
    assert client.published == [("s", b"p", "r")]
    assert paced.flushes == 0


async def end_flusher(nc: Any) -> None:
    """End nats-py's flusher task while the connection stays up (the case its
    ``_flush_pending`` guards against by writing inline), past the server's first PING.

    nats-server PINGs a new client once about 2 s after it connects (and then every
    2 min); the PONG flushes the pending buffer inline, which would hide a frame
    left in it, so this returns once that PING is answered."""
    nc._flusher_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await nc._flusher_task
    assert nc.is_connected
    pinged = asyncio.Event()
    answer_ping = nc._process_ping

    async def seen_ping() -> None:
        await answer_ping()
        pinged.set()

    nc._process_ping = seen_ping
    await asyncio.wait_for(pinged.wait(), 10)


@pytest.mark.parametrize("publisher", ["plain", "paced"])
async def test_a_frame_goes_out_when_the_flusher_task_is_gone(
    nats_server: NatsServer, publisher: str
) -> None:
    """The plain publish is the control: nats-py itself writes inline then."""
    async with subscribed(nats_server.url) as (nc, got):
        await end_flusher(nc)
        publish = nc.publish if publisher == "plain" else PacedPublisher(nc).publish
        await publish(SUBJECT, b"frame")
        await wait_for_async(lambda: got == [b"frame"], 2, what="the frame to arrive")


async def test_a_paced_frame_does_not_stall_later_plain_publishes(nats_server: NatsServer) -> None:
    async with subscribed(nats_server.url) as (nc, got):
        await end_flusher(nc)
        paced = PacedPublisher(nc)
        await paced.publish(SUBJECT, b"paced")
        await wait_for_async(lambda: paced.flushes == 1, 2, what="the paced flush")
        await nc.publish(SUBJECT, b"plain-after")
        await wait_for_async(lambda: got == [b"paced", b"plain-after"], 2, what="nats-py's own publish")
