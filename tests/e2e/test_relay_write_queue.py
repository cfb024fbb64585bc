"""Real processes: a stranger cannot drop a healthy node's stream with a few big
RelaySends followed by an AckSend to it while the node is not reading them yet
(the ack's write used to report the result of the oldest frames queued, not its
own, and a False made the host drop the node as broken)."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.hostqueue import ACK_SENDS, FILLING_BODY, scrape, sender_waits_for_room
from tests.e2e.test_relay_abuse import Clients, N, Raw, clients, relay, seal  # noqa: F401 (fixture)
from tests.harness import ProcGroup
from tests.polling import wait_for_async
from tmax_core.identity import NodeIdentity
from tmax_mesh_relay.client import HostSession
from tmax_mesh_relay.proto import host_pb2

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.mark.parametrize("count", [3, 5, 8])
async def test_stranger_drops_a_reading_node_with_big_envelopes_and_an_ack(
    procs: ProcGroup,
    clients: Clients,  # noqa: F811 (the fixture imported above)
    count: int,
) -> None:
    """How many envelopes it took depended on how much gRPC buffers before a write to
    a node that is not reading blocks (5 on the development machine: ~5.5 MB)."""
    clients.host = procs.host("host", "--metrics-listen", "127.0.0.1:0")
    victim_id = NodeIdentity.generate()
    session = await HostSession.open(clients.host.listen)
    await session.register(victim_id, [], [])  # reads nothing until the host is stuck on it
    attacker, attacker_id = await clients.node()  # not in the victim's allow list

    # Envelopes just under --max-frame-bytes: a Deliver of one leaves no room for the
    # ack in the coalesced write the ack's task makes.
    async def attack() -> None:
        for n in range(count):  # the node is not reading yet: a write blocks, the next waits
            await relay(attacker, victim_id, seal(attacker_id, victim_id, bytes([n]) * FILLING_BODY))
        ack = host_pb2.AckSend(to=victim_id.node_id, message_id=b"m" * 16, ack=b"k" * 16)
        await attacker.write(N(ack_send=ack))

    attacking = asyncio.create_task(attack())  # its writes may wait for the host to read

    async def stuck() -> bool:
        """The host took the ack in behind the waiting Delivers, or cannot read it
        before the node reads (its read loop waits for room on the node's queue)."""
        samples = await scrape(clients.host)
        return samples.get(ACK_SENDS, 0.0) >= 1 or sender_waits_for_room(samples)

    await wait_for_async(stuck, 10, 0.02, what="the host to take the ack or stop reading the attacker")
    victim = Raw(session)  # only now does the node read (well within --write-timeout 5 s)
    clients.sessions.append(victim)
    await asyncio.wait_for(attacking, 10)
    got: list[str] = []
    while "ack" not in got:
        try:
            f = await asyncio.wait_for(victim.frames.get(), 4)
        except TimeoutError:
            raise AssertionError(f"victim heard nothing for 4 s (< --write-timeout) after {got}") from None
        assert f is not None, f"the victim's healthy stream was dropped: {victim.end!r} after {got}"
        inner = f.frames.frames if f.HasField("frames") else [f]
        got.extend(g.WhichOneof("frame") for g in inner if g.WhichOneof("frame") != "ping")
    assert got == ["deliver"] * count + ["ack"]
