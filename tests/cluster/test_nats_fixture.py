"""The harness's nats-server: JetStream works once the fixture returns, and teardown stops it."""

from __future__ import annotations

import socket

import nats
import pytest

from tests.cluster.natsproc import NatsServer

pytestmark = pytest.mark.timeout(60)


async def test_nats_server_fixture_serves_jetstream_kv(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url, connect_timeout=2, allow_reconnect=False)
    try:
        kv = await nc.jetstream().create_key_value(bucket="fixture_check")
        await kv.put("k", b"v")
        assert (await kv.get("k")).value == b"v"
    finally:
        await nc.close()
    assert nats_server.store_dir.is_dir()


def test_nats_server_kill_frees_its_port(nats_server: NatsServer) -> None:
    nats_server.kill()
    assert not nats_server.alive()
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", nats_server.port))
