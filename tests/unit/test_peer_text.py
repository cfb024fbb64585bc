"""Text another party chose that a node records, shows and logs: a relay
host's connection id, and a friend's gRPC status details and ack
rejection reasons. Each reaches ``node status``, ``msg status`` and the
log escaped and cut (tmax_core.printable.bounded_printable), so it can
neither forge a log line nor grow a reply or a stored error at will."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from tests.polling import wait_for_async
from tests.unit.nodefakes import OutboxHostFake, outbox_entry
from tests.unit.relayfakes import hostile_relay
from tests.unit.test_direct_upgrade import FakeNode, FakeRelay
from tests.unit.test_outbox import REJECTED, BatchPeer, final
from tmax_core.errors import Reason
from tmax_core.identity import NodeIdentity
from tmax_core.outbox import Outbox
from tmax_core.peer import SERVICE, DirectTransport
from tmax_core.printable import HOST_TEXT_CHARS
from tmax_core.proto import mesh_pb2
from tmax_mesh_direct.upgrade import Upgrader
from tmax_mesh_relay.proto import host_pb2

pytestmark = pytest.mark.timeout(60)

FORGED = "\x1b]0;owned\x07\n2026-12-07 00:00:00,000 WARNING tmax_mesh: forged line "
ESCAPED = "\\x1b]0;owned\\x07\\n2026-12-07"
DETAILS = FORGED + "D" * 2000  # a status message stays under gRPC's 8 KiB metadata limit


def _bounded(text: str, limit: int = HOST_TEXT_CHARS + 100) -> None:
    """``text`` holds the hostile text escaped (no control character) and cut."""
    assert ESCAPED in text, text[:200]
    assert text.isprintable(), text[:200]
    assert len(text) <= limit, f"{len(text)} chars"


async def test_a_hosts_connection_id_is_escaped_and_cut(caplog: pytest.LogCaptureFixture) -> None:
    """Registered.connection_id is shown in node status and logged at INFO."""

    async def script(_register: host_pb2.NodeFrame) -> AsyncIterator[host_pb2.HostFrame]:
        yield host_pb2.HostFrame(
            registered=host_pb2.Registered(
                limits=host_pb2.Limits(max_frame_bytes=2 << 20, rate_per_s=10_000, burst=10_000),
                connection_id=FORGED + "C" * 100_000,
            )
        )
        await asyncio.Event().wait()  # the stream stays open: the link stays connected

    with caplog.at_level(logging.INFO):
        async with hostile_relay(script) as transport:
            link = transport.links[0]
            await wait_for_async(lambda: link.state == "connected", what="registered")
            shown = transport.status()["hosts"][0]["connection_id"]
    _bounded(shown, 64)
    logged = next(r.getMessage() for r in caplog.records if "registered as" in r.getMessage())
    _bounded(logged, 400)


@pytest.fixture
async def hostile_peer() -> AsyncIterator[str]:
    """A PeerService whose every call ends with an error status carrying ``DETAILS``."""

    async def refuse(_request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, DETAILS)

    handlers = {
        "Deliver": grpc.unary_unary_rpc_method_handler(refuse),
        "DeliverBatch": grpc.unary_unary_rpc_method_handler(refuse),
        "DeliverStream": grpc.stream_stream_rpc_method_handler(refuse),
    }
    server = grpc.aio.server(handlers=[grpc.method_handlers_generic_handler(SERVICE, handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


@pytest.fixture
async def direct() -> AsyncIterator[DirectTransport]:
    transport = DirectTransport(FakeNode())  # type: ignore[arg-type]
    try:
        yield transport
    finally:
        await transport.stop()


async def test_a_friends_status_details_are_escaped_and_cut_in_a_probe(
    hostile_peer: str, direct: DirectTransport
) -> None:
    """The direct plugin's probe error (the friend's path reason in node status and the log)."""
    upgrader = Upgrader(FakeNode(), FakeRelay(), direct)  # type: ignore[arg-type]
    try:
        error = await upgrader.probe(hostile_peer, FakeNode().as_friend())
    finally:
        upgrader.stop()
    assert error is not None and error.startswith("PERMISSION_DENIED "), error
    _bounded(error)


async def test_a_friends_status_details_are_escaped_and_cut_in_a_send(
    hostile_peer: str, direct: DirectTransport
) -> None:
    """A send's error (recorded for the message, shown by msg status) for one
    envelope (Deliver) and for a batch on the endpoint's stream (DeliverStream)."""
    friend = FakeNode().as_friend([hostile_peer])
    with pytest.raises(ConnectionError) as single:
        await direct.send(friend, b"envelope", 5)
    _bounded(str(single.value))
    direct.mark_healthy(hostile_peer)
    with pytest.raises(ConnectionError) as batch:
        await direct.send_batch(friend, [b"envelope"], 5)
    _bounded(str(batch.value))


class RejectingPeer(BatchPeer):
    """Answers every envelope with a signed rejection carrying ``detail``."""

    def __init__(self, signer: NodeIdentity, *, reason: str, detail: str) -> None:
        super().__init__(signer, status=REJECTED, reason=reason)
        self.detail = detail

    def entry(self, envelope: bytes) -> mesh_pb2.AckEntry:
        e = super().entry(envelope)
        e.detail = self.detail
        return e


async def test_a_friends_rejection_text_is_escaped_and_cut_in_the_error_and_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A rejection's reason and detail are the friend's text: the recorded
    error (msg status) and the 'failed' log line stay short and one line."""
    host, friend = OutboxHostFake(), NodeIdentity.generate()
    host.befriend(friend, alias="friend")
    box = Outbox(host)
    try:
        host.transports = [RejectingPeer(friend, reason=Reason.BLOCKED, detail=DETAILS * 100)]
        with caplog.at_level(logging.INFO):
            (entry,) = await box.submit_many([outbox_entry(friend.node_id)])
            result = await final(box, entry)
        assert result.status == "failed" and (result.error or "").startswith("rejected: blocked (")
        _bounded(result.error or "")
        logged = next(r.getMessage() for r in caplog.records if "failed:" in r.getMessage())
        _bounded(logged, 600)

        host.transports = [RejectingPeer(friend, reason=FORGED * 1000, detail="")]
        (entry,) = await box.submit_many([outbox_entry(friend.node_id)])
        await wait_for_async(lambda: host.store.outbox[entry.message_id].attempts, what="an attempt")
        _bounded(host.store.outbox[entry.message_id].error or "", 100)
    finally:
        await box.stop()
