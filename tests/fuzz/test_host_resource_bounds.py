"""Resource bounds of ``tmax-host`` under abuse: while a separate process
floods it with registration waves, never-registering streams, oversized and
malformed frames, a real friend pair keeps exchanging messages through it,
and the host's memory stays bounded (VmRSS from /proc).

Two flood rounds: the first shows the peak and what the process keeps
afterwards (allocator arenas and caches sized by the peak); the second must
not add much on top of that — growth per round is what a leak would show.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.fuzz.common import UNCAPPED_SOURCE, befriend_api, first_traceback, tracebacks, vm_rss_kb
from tests.harness import Proc, ProcGroup
from tmax_core.client import JsonNodeClient

FLOOD_S = 8.0
FAST = {
    "TMAX_MESH_MESSAGES_RETRY_INITIAL": "200ms",
    "TMAX_MESH_MESSAGES_RETRY_MAX": "1s",
    "TMAX_MESH_RELAY_RECONNECT_MAX": "1s",
}
ROOT = Path(__file__).resolve().parents[2]
PEAK_GROWTH_MB = 150  # while the flood holds hundreds of streams open
AFTER_GROWTH_MB = 80  # kept after each round (measured ~25-47 MB on 2 shared cores)
# Added by the second, identical round. Measured -6..+20 MB: how much the first
# round's residue shrinks depends on when the allocator hands memory back, so a
# low first reading makes the second look bigger. A leak would add every round.
ROUND_GROWTH_MB = 30
SETTLE_S = 3.0


@pytest.mark.timeout(150)
def test_host_flood_bounded_memory_and_service(procs: ProcGroup, tmp_path: Path) -> None:
    # On loopback the flood and the pair share one address: lift the per-address
    # caps, so the flood stands for many addresses (the host-wide bounds are under test).
    host = procs.host("host", "--register-timeout", "2s", *UNCAPPED_SOURCE)
    a = procs.node("a", "--relay", host.url, env=FAST)
    b = procs.node("b", "--relay", host.url, env=FAST)
    befriend_api(a, b)
    with JsonNodeClient(a.ready["socket"]) as c:
        assert c.msg_wait(c.msg_send(b.node_id, b"warm-up")["message_id"], 20)["status"] == "delivered"
    baseline = vm_rss_kb(host.pid)
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.25):
            peak[0] = max(peak[0], vm_rss_kb(host.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    after: list[int] = []
    ids: dict[str, list[str]] = {"a": [], "b": []}
    lines = []
    try:
        with JsonNodeClient(a.ready["socket"]) as ca, JsonNodeClient(b.ready["socket"]) as cb:
            for rnd in range(2):
                out = tmp_path / f"flood{rnd}.json"
                argv = [sys.executable, "-m", "tests.fuzz.flood", "--target", host.listen]
                argv += ["--seconds", str(FLOOD_S), "--json", str(out)]
                flood = procs.add(
                    Proc(
                        argv,
                        tmp_path / f"flood{rnd}.ready",
                        tmp_path / "flood.log",
                        {"PYTHONPATH": str(ROOT)},
                    )
                ).start()
                # The friend pair talks all through the flood, both ways.
                i = len(ids["a"])
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
                stats = json.loads(out.read_text())
                # The flood did what it says.
                assert stats["registered"] > 300 and stats.get("error:too_large", 0) > 10, stats
                assert sum(v for k, v in stats.items() if k.startswith("malformed_ended")) > 10, stats
                assert stats.get("idle_unregistered", 0) > 50, stats
                time.sleep(SETTLE_S)
                after.append(vm_rss_kb(host.pid))
                lines.append(
                    f"round {rnd}: {stats}; RSS after {after[-1] / 1024:.1f} MB; "
                    f"pair drained {drain_s:.1f}s after the flood"
                )
    finally:
        stop.set()
        sampler.join()
    summary = (
        f"host RSS baseline {baseline / 1024:.1f} MB, peak {peak[0] / 1024:.1f} MB, "
        f"after {[round(x / 1024, 1) for x in after]} MB; {len(ids['a']) * 2} messages through the floods"
    )
    print("\n".join([*lines, summary]))

    for node, prefix in ((b, "a"), (a, "b")):
        with JsonNodeClient(node.ready["socket"]) as c:
            bodies = [m["body"] for m in c.inbox_list() if m["body"] != "warm-up"]
        assert len(bodies) == len(set(bodies)) == len(ids[prefix]), summary
    assert (peak[0] - baseline) / 1024 < PEAK_GROWTH_MB, summary
    assert (after[0] - baseline) / 1024 < AFTER_GROWTH_MB, summary
    assert (after[1] - baseline) / 1024 < AFTER_GROWTH_MB, summary
    assert (after[1] - after[0]) / 1024 < ROUND_GROWTH_MB, summary
    assert host.alive() and a.alive() and b.alive()
    log = host.log_path.read_text(errors="replace")
    assert tracebacks(log) == 0, first_traceback(log)
    with JsonNodeClient(a.ready["socket"]) as c:
        assert c.msg_wait(c.msg_send(b.node_id, b"after")["message_id"], 20)["status"] == "delivered"
