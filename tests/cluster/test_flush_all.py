"""``flush_all``: why a member flushes twice before it announces a registration,
on a real nats-server (a subscription made just before a single ``flush`` was
sometimes not in place when its PONG came: about 1 run in 30 of a test)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import nats
import pytest

from tmax_mesh_relay.cluster import flush_all

if TYPE_CHECKING:
    from tests.cluster.natsproc import NatsServer

pytestmark = pytest.mark.timeout(30)


def record_writes(nc: Any) -> list[bytes]:
    """Everything ``nc`` writes to its socket, in order (nats-py's transport)."""
    writes: list[bytes] = []
    transport = nc._transport
    write, writelines = transport.write, transport.writelines

    def recording_write(data: bytes) -> None:
        writes.append(bytes(data))
        write(data)

    def recording_writelines(lines: list[bytes]) -> None:
        writes.extend(bytes(line) for line in lines)
        writelines(lines)

    transport.write, transport.writelines = recording_write, recording_writelines
    return writes


async def noop(msg: Any) -> None:
    pass


async def test_a_ping_follows_a_subscription_just_made_only_on_the_second_flush(
    nats_server: NatsServer,
) -> None:
    nc = await nats.connect(nats_server.url, allow_reconnect=False)
    try:
        writes = record_writes(nc)
        await nc.subscribe("tmax.test.one", cb=noop)
        await nc.flush()
        wire = b"".join(writes)
        # nats-py writes flush's PING straight to the socket, ahead of its buffer.
        assert wire.find(b"PING") < wire.find(b"SUB tmax.test.one"), wire

        writes.clear()
        await nc.subscribe("tmax.test.two", cb=noop)
        await flush_all(nc)
        wire = b"".join(writes)
        assert wire.rfind(b"PING") > wire.find(b"SUB tmax.test.two"), wire
    finally:
        await nc.close()
