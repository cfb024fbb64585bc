"""PacedPublisher (review 4) when nats-py's flusher task is gone while the
connection is up: nats-py's own publish writes inline then (``_flush_pending``);
a paced frame must go out too, and must not leave a future in ``_flush_queue``
that nobody reads (nats-py's publish flushes only into an empty queue)."""

from __future__ import annotations

import asyncio

import nats
import pytest

from tests.cluster.natsproc import NatsServer
from tmax_mesh_relay.pacedpublish import PacedPublisher

pytestmark = pytest.mark.timeout(60)


async def _connected_without_flusher(url: str):  # type: ignore[no-untyped-def]
    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    got: list[bytes] = []

    async def take(msg) -> None:  # type: ignore[no-untyped-def]
        got.append(msg.data)

    await nc.subscribe("review4.flusher", cb=take)
    await nc.flush()
    # The flusher task ends while the connection stays up (the case nats-py's
    # _flush_pending guards against: "If the flusher task is dead ... flush inline").
    nc._flusher_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await nc._flusher_task
    assert nc.is_connected
    # nats-server PINGs a new client once about 2 s after it connects (and then
    # every 2 min); the PONG flushes the pending buffer inline, which would hide
    # a frame left in it: wait for that PING first.
    pinged = asyncio.Event()
    answer_ping = nc._process_ping

    async def seen_ping() -> None:
        await answer_ping()
        pinged.set()

    nc._process_ping = seen_ping
    await asyncio.wait_for(pinged.wait(), 10)
    return nc, got


async def _arrives(got: list[bytes], payload: bytes, timeout: float = 2.0) -> bool:
    try:
        async with asyncio.timeout(timeout):
            while payload not in got:
                await asyncio.sleep(0.01)
    except TimeoutError:
        return False
    return True


async def test_control_nats_py_publish_survives_a_dead_flusher(nats_server: NatsServer) -> None:
    nc, got = await _connected_without_flusher(nats_server.url)
    try:
        await nc.publish("review4.flusher", b"plain")
        assert await _arrives(got, b"plain")  # nats-py writes inline
    finally:
        await nc.close()


async def test_paced_frame_is_written_when_the_flusher_task_is_dead(nats_server: NatsServer) -> None:
    nc, got = await _connected_without_flusher(nats_server.url)
    try:
        paced = PacedPublisher(nc)
        await paced.publish("review4.flusher", b"paced")
        assert await _arrives(got, b"paced"), "paced frame stuck in nats-py pending buffer"
    finally:
        await nc.close()


async def test_a_paced_frame_does_not_stall_later_plain_publishes(nats_server: NatsServer) -> None:
    nc, got = await _connected_without_flusher(nats_server.url)
    try:
        paced = PacedPublisher(nc)
        await paced.publish("review4.flusher", b"paced")
        await asyncio.sleep(0.01)  # the paced flush has run: a future sits in _flush_queue
        await nc.publish("review4.flusher", b"plain-after")
        assert await _arrives(got, b"plain-after"), "nats-py's own publish no longer flushes"
    finally:
        await nc.close()
