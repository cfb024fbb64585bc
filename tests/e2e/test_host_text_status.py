"""Real processes: a relay host a node uses cannot make `tmax-mesh node status`
(text and JSON) unusable with an oversized error text."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.harness import ProcGroup
from tests.polling import wait_for
from tests.unit.hostilehost import HostileHost
from tmax_mesh_relay.proto import host_pb2

pytestmark = pytest.mark.timeout(90)


async def _refuse(_register: host_pb2.NodeFrame) -> AsyncIterator[host_pb2.HostFrame]:
    yield host_pb2.HostFrame(
        error=host_pb2.Error(code="bad_registration", detail="\x01" * 800_000)
    )  # 6x in JSON


def test_hostile_hosts_error_texts_do_not_break_node_status(procs: ProcGroup) -> None:
    """One host refuses every registration with an 800 KB detail of control
    characters (within the node's 4 MiB receive limit). Kept whole as
    last_error, JSON would escape each as \\u0001 and the NodeStatus reply would
    pass gRPC's 4 MiB limit. `node status` must still answer, in a few KB."""
    with HostileHost(_refuse) as one:
        node = procs.node("n", "--relay", one.url)
        wait_for(lambda: one.registrations, what="the host dialed")
        res = node.run("node", "status")
        json_res = node.run("node", "status", "--json")
    assert res.returncode == 0, res.stderr.decode(errors="replace")[:500]
    assert len(res.stdout) < 16_384, f"node status printed {len(res.stdout)} bytes"
    assert json_res.returncode == 0, json_res.stderr.decode(errors="replace")[:500]
    assert len(json_res.stdout) < 16_384, f"node status --json printed {len(json_res.stdout)} bytes"
