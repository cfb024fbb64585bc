"""Resource bounds of ``tmax-host`` under abuse: while a separate process
floods it with registration waves, never-registering streams, oversized and
malformed frames, a real friend pair keeps exchanging messages through it,
and the host's memory stays bounded (VmRSS from /proc).
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.fuzz.common import befriend_api, tracebacks, vm_rss_kb
from tests.harness import Proc, ProcGroup, wait_for
from tmax_core.client import NodeClient
from tmax_core.errors import MeshError

FLOOD_S = 15.0
FAST = {
    "TMAX_MESH_MESSAGES_RETRY_INITIAL": "200ms",
    "TMAX_MESH_MESSAGES_RETRY_MAX": "1s",
    "TMAX_MESH_RELAY_RECONNECT_MAX": "1s",
}
ROOT = Path(__file__).resolve().parents[2]
PEAK_GROWTH_MB = 150  # while the flood holds hundreds of streams open
AFTER_GROWTH_MB = 50  # once it is over


@pytest.mark.timeout(120)
def test_host_flood_bounded_memory_and_service(procs: ProcGroup, tmp_path: Path) -> None:
    host = procs.host("host", "--register-timeout", "2s")
    a = procs.node("a", "--relay", host.url, env=FAST)
    b = procs.node("b", "--relay", host.url, env=FAST)
    befriend_api(a, b)
    with NodeClient(a.ready["socket"]) as c:
        assert c.msg_wait(c.msg_send(b.node_id, b"warm-up")["message_id"], 20)["status"] == "delivered"
    baseline = vm_rss_kb(host.pid)

    out = tmp_path / "flood.json"
    flood = procs.add(
        Proc(
            [
                sys.executable,
                "-m",
                "tests.fuzz.flood",
                "--target",
                host.listen,
                "--seconds",
                str(FLOOD_S),
                "--json",
                str(out),
            ],
            tmp_path / "flood.ready",
            tmp_path / "flood.log",
            env={"PYTHONPATH": str(ROOT)},
        )
    ).start()

    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.25):
            peak[0] = max(peak[0], vm_rss_kb(host.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # The friend pair talks all through the flood, both ways.
    ids: dict[str, list[str]] = {"a": [], "b": []}
    with NodeClient(a.ready["socket"]) as ca, NodeClient(b.ready["socket"]) as cb:
        i = 0
        while flood.alive():
            i += 1
            ids["a"].append(ca.msg_send(b.node_id, f"a{i}".encode())["message_id"])
            ids["b"].append(cb.msg_send(a.node_id, f"b{i}".encode())["message_id"])
            time.sleep(0.2)
        assert flood.proc.returncode == 0, flood.log()
        started = time.monotonic()
        for client, mids in ((ca, ids["a"]), (cb, ids["b"])):
            for mid in mids:
                left = max(1.0, 30 - (time.monotonic() - started))
                assert client.msg_wait(mid, left)["status"] == "delivered", client.msg_status(mid)
        drain_s = time.monotonic() - started
    stop.set()
    sampler.join()
    stats = json.loads(out.read_text())
    print(f"flood: {stats}")
    # The flood did what it says.
    assert stats["registered"] > 300 and stats.get("error:too_large", 0) > 10, stats
    assert sum(v for k, v in stats.items() if k.startswith("malformed_ended")) > 10, stats
    assert stats.get("idle_unregistered", 0) > 50, stats

    for node, name, prefix in ((b, "b", "a"), (a, "a", "b")):
        with NodeClient(node.ready["socket"]) as c:
            bodies = sorted(m["body"] for m in c.inbox_list() if m["body"] != "warm-up")
        assert len(bodies) == len(ids[prefix]) == len(set(bodies)), (name, len(bodies), len(ids[prefix]))

    # Memory: bounded at the peak, back near the baseline once streams are gone.
    def settled() -> bool:
        return (vm_rss_kb(host.pid) - baseline) / 1024 < AFTER_GROWTH_MB

    with contextlib.suppress(AssertionError):  # the bound is asserted below, with the figures
        wait_for(settled, timeout=20, interval=0.5, what="host memory to settle")
    after = vm_rss_kb(host.pid)
    print(
        f"host RSS: baseline {baseline / 1024:.1f} MB, peak {peak[0] / 1024:.1f} MB, "
        f"after {after / 1024:.1f} MB; "
        f"{len(ids['a']) * 2} messages through the flood, drained {drain_s:.1f}s after it"
    )
    assert (peak[0] - baseline) / 1024 < PEAK_GROWTH_MB
    assert (after - baseline) / 1024 < AFTER_GROWTH_MB
    assert host.alive()
    log = host.log_path.read_text(errors="replace")
    assert tracebacks(log) == 0, log[-5000:]
    for node in (a, b):
        assert node.alive()
    try:
        with NodeClient(a.ready["socket"]) as c:
            assert c.msg_wait(c.msg_send(b.node_id, b"after")["message_id"], 20)["status"] == "delivered"
    except MeshError as err:
        pytest.fail(f"the pair cannot talk after the flood: {err}")
