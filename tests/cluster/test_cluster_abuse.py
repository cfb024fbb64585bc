"""What one node (or two identities of one abuser) must not be able to do to a
relay cluster: knock a member off NATS, make it log tracebacks, multiply or
hoard the envelopes held for offline nodes, or grow NATS's store without bound
(the security review of issue 15's cluster)."""

from __future__ import annotations

import os

import pytest

from tests.cluster.natsproc import NatsServer
from tests.cluster.test_cluster_protocol import expect, lookup, member, metrics_of, register
from tests.e2e.test_relay import metric
from tests.harness import ProcGroup
from tmax_core.identity import NodeIdentity
from tmax_mesh_relay.cluster import node_subject
from tmax_mesh_relay.proto import host_pb2

pytestmark = pytest.mark.timeout(90)

DISCONNECTS = "tmax_host_cluster_nats_disconnects_total"


def test_node_subject_refuses_anything_but_a_node_id() -> None:
    assert node_subject(b"\x01" * 20, "d") == "tmax.node." + "01" * 20 + ".d"
    for wrong in (b"", b"\x01" * 19, b"\x01" * 3000):
        with pytest.raises(ValueError, match="not a node id"):
            node_subject(wrong, "l")


@pytest.mark.parametrize("size", [5, 3000])
async def test_a_lookup_of_a_target_that_is_no_node_id_is_malformed_and_keeps_the_member_on_nats(
    procs: ProcGroup, nats_server: NatsServer, size: int
) -> None:
    """A 3,000-byte target once became a subject beyond nats-server's control-line
    limit (the server dropped the member's connection); a 5-byte one made the
    member log a traceback and end the stream when the lookup timed out."""
    m1, m2 = member(procs, "m1", nats_server), member(procs, "m2", nats_server)
    x, y = NodeIdentity.generate(), NodeIdentity.generate()
    sx = await register(m1, x, y)
    sy = await register(m2, y, x)
    try:
        await sy.write(host_pb2.NodeFrame(lookup=host_pb2.Lookup(target=os.urandom(size))))
        assert (await expect(sy, "error")).error.code == "malformed"
        assert (await lookup(sy, x)).found  # the same stream, and m2's NATS link, still work
    finally:
        await sx.close()
        await sy.close()
    assert metric(metrics_of(m2), DISCONNECTS) == 0
    assert "Traceback" not in m2.log_path.read_text(errors="replace")


async def test_an_ack_to_a_long_id_is_malformed_and_keeps_the_member_on_nats(
    procs: ProcGroup, nats_server: NatsServer
) -> None:
    m1, m2 = member(procs, "m1", nats_server), member(procs, "m2", nats_server)
    x, y = NodeIdentity.generate(), NodeIdentity.generate()
    sx = await register(m1, x, y)
    sy = await register(m2, y, x)
    try:
        frame = host_pb2.AckSend(to=os.urandom(3000), message_id=os.urandom(16), ack=b"x")
        await sy.write(host_pb2.NodeFrame(ack_send=frame))
        assert (await expect(sy, "error")).error.code == "malformed"
        assert (await lookup(sy, x)).found
    finally:
        await sx.close()
        await sy.close()
    assert metric(metrics_of(m2), DISCONNECTS) == 0
