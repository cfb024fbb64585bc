"""The cluster's hot-path publisher: frames published close together share one
write to NATS, frames at a low rate go out at once, and every frame arrives, in
order with the connection's other publishes, on a real nats-server."""

from __future__ import annotations

import asyncio

import nats
import nats.errors
import pytest

from tests.cluster.natsproc import NatsServer
from tmax_mesh_relay.pacedpublish import PacedPublisher

pytestmark = pytest.mark.timeout(60)


async def _until(condition, what: str, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)
    assert condition(), what


async def test_a_burst_shares_writes_and_arrives_in_order(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url, connect_timeout=2, allow_reconnect=False)
    try:
        got: list[bytes] = []

        async def take(msg) -> None:  # type: ignore[no-untyped-def]
            got.append(msg.data)

        await nc.subscribe("paced.test", cb=take)
        await nc.flush()
        paced = PacedPublisher(nc, interval_s=0.05)
        assert paced.paced, "nats-py no longer has what PacedPublisher paces with"
        sent = []
        for i in range(300):
            payload = str(i).encode()
            sent.append(payload)
            if i % 50 == 49:
                # A plain publish in between keeps its place among the paced ones.
                payload = b"plain" + payload
                sent[-1] = payload
                await nc.publish("paced.test", payload)
            else:
                await paced.publish("paced.test", payload)
            if i % 10 == 9:
                await asyncio.sleep(0)  # frames reach a member one per loop iteration
        await _until(lambda: len(got) == len(sent), "every message arrived")
        assert got == sent
        # 30 loop iterations with frames, paced at most once per 50 ms: far fewer
        # writes than iterations (how many depends on the machine's speed).
        assert 1 <= paced.flushes < 30
    finally:
        await nc.close()


async def test_frames_at_a_low_rate_go_out_without_waiting(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url, connect_timeout=2, allow_reconnect=False)
    try:
        got: list[bytes] = []

        async def take(msg) -> None:  # type: ignore[no-untyped-def]
            got.append(msg.data)

        await nc.subscribe("paced.quiet", cb=take)
        await nc.flush()
        # An interval no test waits out: only unheld writes can arrive.
        paced = PacedPublisher(nc, interval_s=3600)
        for n in range(5):
            await paced.publish("paced.quiet", b"%d" % n)
            await _until(lambda n=n: len(got) == n + 1, f"frame {n} arrived")
        assert got == [b"0", b"1", b"2", b"3", b"4"]
        assert paced.flushes == 5
        paced.close()
    finally:
        await nc.close()


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
