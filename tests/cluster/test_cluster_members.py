"""A member reads the other members' entries of the ``tmax_members`` bucket as
a flat list of URLs each, and skips any other value: a JSON value that is not a
list had raised TypeError, and one nested deeper than the recursion limit a
RecursionError, out of ``Members.join`` (a traceback at start) and out of
``refresh`` (ending the member's refresh task, so its own entry expired)."""

from __future__ import annotations

import nats
import pytest
from prometheus_client import CollectorRegistry

from tests.cluster.natsproc import NatsServer
from tmax_mesh_relay.clustermetrics import ClusterMetrics
from tmax_mesh_relay.members import BUCKET, MAX_BYTES, MAX_VALUE_SIZE, TTL_S, Members, open_bucket

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    "value", [b"5", b"null", b"true", b"[[]]", b"[" * 60_000], ids=["5", "null", "true", "nested", "deep"]
)
async def test_an_entry_that_is_not_a_list_is_skipped(nats_server: NatsServer, value: bytes) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        kv = await open_bucket(nc, BUCKET, 1, TTL_S, max_bytes=MAX_BYTES, max_value_size=MAX_VALUE_SIZE)
        await kv.put("another-member", value)
        metrics = ClusterMetrics(CollectorRegistry(), connected=lambda: True)
        members = await Members.join(nc, "me", ["grpc://127.0.0.1:1"], metrics, 1)
        assert members.urls == ["grpc://127.0.0.1:1"]
        await members.refresh()
        assert members.urls == ["grpc://127.0.0.1:1"]
    finally:
        await nc.close()
