"""What a stranger, or a registered node, can hold on the host's punch
observer port (security review 2, items 3-5)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from tests.polling import wait_for_async
from tests.unit.test_punch_host import Setup, kinds
from tmax_mesh_relay.proto import host_pb2
from tmax_mesh_relay.punch import MAX_UNAUTHENTICATED_PER_SOURCE, OBSERVE_READ_TIMEOUT_S

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    async with Setup.running() as s:
        yield s


async def closed_by_host(stream: Stream, within: float) -> bool:
    """Whether the host ends ``stream`` within ``within`` seconds."""
    reader, _writer = stream
    try:
        return await asyncio.wait_for(reader.read(), within) == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False


async def connect(setup: Setup) -> Stream:
    assert setup.coordinator.port is not None
    stream = await asyncio.open_connection("127.0.0.1", setup.coordinator.port)
    setup.writers.append(stream[1])
    return stream


async def test_a_connection_from_a_source_without_a_token_is_closed_at_once(setup: Setup) -> None:
    assert await closed_by_host(await connect(setup), within=0.5)


async def test_idle_strangers_do_not_keep_a_node_from_mapping(setup: Setup) -> None:
    squatters = [await connect(setup) for _ in range(200)]  # before any token: closed at once
    assert all([await closed_by_host(s, within=1) for s in squatters])
    a = setup.node()
    assert await setup.map(a)


async def test_one_source_holds_a_bounded_number_of_connections_for_a_short_time(setup: Setup) -> None:
    a = setup.node()
    await setup.coordinator.on_listen(a, host_pb2.PunchListen())  # a token is out for 127.0.0.1
    silent = [await connect(setup) for _ in range(MAX_UNAUTHENTICATED_PER_SOURCE)]
    await wait_for_async(
        lambda: setup.coordinator._unauthenticated_total == MAX_UNAUTHENTICATED_PER_SOURCE,
        what="the silent connections waiting for their token",
    )
    assert await closed_by_host(await connect(setup), within=0.5)  # one too many from this source
    started = time.monotonic()
    assert all([await closed_by_host(s, within=OBSERVE_READ_TIMEOUT_S + 2) for s in silent])
    assert time.monotonic() - started < OBSERVE_READ_TIMEOUT_S + 1


async def test_a_node_writing_on_its_held_connection_loses_it(setup: Setup) -> None:
    a = setup.node()
    await setup.map(a)
    writer = setup.writers[-1]
    writer.write(b"x" * 65536)
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    await wait_for_async(lambda: a.node_id not in setup.coordinator.mapped, what="the mapping dropped")


async def test_held_connections_are_capped_at_max_held(setup: Setup) -> None:
    setup.coordinator.max_held = 1
    a, b = setup.node(), setup.node()
    await setup.map(a)
    await setup.coordinator.on_listen(b, host_pb2.PunchListen())
    token = b.frames[-1].punch_token
    stream = await connect(setup)
    stream[1].write(token.token)
    assert await closed_by_host(stream, within=2)
    assert "punch_mapped" not in kinds(b) and list(setup.coordinator.mapped) == [a.node_id]


async def test_a_stream_that_ends_takes_its_token_with_it(setup: Setup) -> None:
    a = setup.node()
    await setup.coordinator.on_listen(a, host_pb2.PunchListen())
    assert setup.coordinator._token_sources == {"127.0.0.1": 1}
    await setup.coordinator.on_listen(a, host_pb2.PunchListen())  # asked again: replaced
    assert setup.coordinator._token_sources == {"127.0.0.1": 1} and len(setup.coordinator.tokens) == 1
    setup.coordinator.forget(a)
    assert setup.coordinator.tokens == {} and setup.coordinator._token_sources == {}
    assert await closed_by_host(await connect(setup), within=0.5)


@pytest.mark.parametrize("wildcard", ["0.0.0.0", "[::]"])
async def test_a_wildcard_observer_takes_ipv4_and_ipv6_on_one_port(wildcard: str) -> None:
    s = Setup()
    port = await s.coordinator.start(wildcard)
    try:
        for ip in ("127.0.0.1", "::1"):
            reader, writer = await asyncio.open_connection(ip, port)  # refused if not listening
            assert await closed_by_host((reader, writer), within=1)  # no token for it: closed at once
            writer.close()
    finally:
        await s.coordinator.stop()
