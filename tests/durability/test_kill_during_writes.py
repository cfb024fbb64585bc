"""SIGKILL a node many times while it is both sending and receiving heavily.

After every kill, before the restart: ``PRAGMA integrity_check`` on its
``state.db`` says ``ok`` and the keystore still loads
(``tmax_core.identity.load``) with the same node id. After the restart: the
same id, every message it had acknowledged (``msg send`` returned) is still
in its outbox, and every message it had received is still in its inbox. At
the end every acknowledged message in both directions is delivered exactly
once.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.durability.integrity import integrity_check
from tests.harness import Node, ProcGroup, free_port, wait_for
from tmax_core import identity
from tmax_core.client import JsonNodeClient
from tmax_core.errors import MeshError

KILLS = 10
BATCH = 10
ENV = {
    "TMAX_MESH_MESSAGES_RETRY_INITIAL": "100ms",
    "TMAX_MESH_MESSAGES_RETRY_MAX": "1s",
    "TMAX_MESH_RATELIMIT_RATE": "100000",
    "TMAX_MESH_RATELIMIT_BURST": "100000",
    "TMAX_MESH_RATELIMIT_SOURCE_RATE": "100000",
    "TMAX_MESH_RATELIMIT_SOURCE_BURST": "100000",
}


def stored_ids(state_dir: Path) -> tuple[set[str], set[str]]:
    """Message ids (hex) in the outbox and the inbox of a stopped node's state.db."""
    db = sqlite3.connect(f"file:{state_dir / 'state.db'}?mode=ro", uri=True)
    try:
        outbox = {r[0].hex() for r in db.execute("SELECT message_id FROM outbox")}
        inbox = {r[0].hex() for r in db.execute("SELECT message_id FROM inbox")}
    finally:
        db.close()
    return outbox, inbox


class Sender(threading.Thread):
    """Sends batches from one node to another as fast as the node takes them;
    remembers what the node acknowledged and what failed (the node was down)."""

    def __init__(self, node: Node, to: str, tag: str) -> None:
        super().__init__(name=f"send-{tag}", daemon=True)
        self.node, self.to, self.tag = node, to, tag
        self.acked: dict[str, str] = {}  # message_id -> body
        self.failed_calls = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        seq = 0
        client = None
        while not self.stop.is_set():
            bodies = [f"{self.tag} {seq + k}" for k in range(BATCH)]
            try:
                if client is None:
                    client = JsonNodeClient(self.node.state_dir / "node.sock", timeout=5)
                sent = client.msg_send_many([{"to": self.to, "body": b.encode()} for b in bodies])
            except MeshError:
                self.failed_calls += 1
                if client is not None:
                    client.close()
                    client = None
                time.sleep(0.05)
                continue
            finally:
                seq += BATCH
            with self.lock:
                self.acked.update((m["message_id"], b) for m, b in zip(sent, bodies, strict=True))
            time.sleep(0.05)
        if client is not None:
            client.close()

    def snapshot(self) -> dict[str, str]:
        with self.lock:
            return dict(self.acked)


@pytest.mark.timeout(240)
def test_sigkill_during_heavy_writes(procs: ProcGroup) -> None:
    victim = procs.node("victim", "--peer-listen", f"127.0.0.1:{free_port()}", env=ENV)
    peer = procs.node("peer", "--peer-listen", f"127.0.0.1:{free_port()}", env=ENV)
    with JsonNodeClient(victim.ready["socket"]) as v, JsonNodeClient(peer.ready["socket"]) as p:
        p.invite_accept(v.invite_create()["token"])
        wait_for(lambda: any(f["node_id"] == peer.node_id for f in v.friends_list()), what="first contact")
    victim_id = victim.node_id
    out = Sender(victim, peer.node_id, "v->p")
    inbound = Sender(peer, victim_id, "p->v")
    out.start()
    inbound.start()
    rng = random.Random()
    try:
        for k in range(KILLS):
            time.sleep(rng.uniform(0.4, 1.5))
            acked_before = out.snapshot()
            try:
                with JsonNodeClient(victim.state_dir / "node.sock", timeout=5) as c:
                    inbox_before = {m["message_id"] for m in c.inbox_list()}
            except MeshError:
                inbox_before = set()
            victim.kill()
            # While it is down: the files are sound and nothing acknowledged is missing from them.
            assert integrity_check(victim.state_dir) == "ok", f"kill {k}: state.db is damaged"
            assert identity.load(victim.state_dir).node_id_hex == victim_id, f"kill {k}: keystore"
            outbox_ids, inbox_ids = stored_ids(victim.state_dir)
            lost = set(acked_before) - outbox_ids
            assert not lost, f"kill {k}: {len(lost)} acknowledged sends are not in the outbox"
            assert inbox_before <= inbox_ids, f"kill {k}: {len(inbox_before - inbox_ids)} received lost"
            victim.start()
            assert victim.node_id == victim_id
            with JsonNodeClient(victim.state_dir / "node.sock", timeout=30) as c:
                assert inbox_before <= {m["message_id"] for m in c.inbox_list()}
                for mid in rng.sample(sorted(acked_before), min(20, len(acked_before))):
                    c.msg_status(mid)  # and the API finds them
            print(f"kill {k}: ok ({len(acked_before)} acknowledged sends, {len(inbox_before)} received kept)")
    finally:
        out.stop.set()
        inbound.stop.set()
        out.join(10)
        inbound.join(10)

    # Everything acknowledged, both ways, lands exactly once.
    def delivered(sender: Node, ids: dict[str, str]) -> bool:
        with JsonNodeClient(sender.state_dir / "node.sock", timeout=30) as c:
            counts = c.node_status()["outbox"]
        return counts.get("queued", 0) + counts.get("sent", 0) == 0

    wait_for(lambda: delivered(victim, out.acked), timeout=90, interval=0.5, what="victim's outbox to drain")
    wait_for(lambda: delivered(peer, inbound.acked), timeout=90, interval=0.5, what="peer's outbox to drain")
    for sender, receiver, ids in ((victim, peer, out.acked), (peer, victim, inbound.acked)):
        with JsonNodeClient(receiver.state_dir / "node.sock", timeout=60) as c:
            inbox = c.inbox_list()
        counts = Counter(m["body"] for m in inbox)
        dupes = {b: n for b, n in counts.items() if n > 1}
        assert not dupes, f"duplicates at {receiver.state_dir.name}: {list(dupes.items())[:5]}"
        got = {m["message_id"] for m in inbox}
        missing = set(ids) - got
        assert not missing, f"{len(missing)} acknowledged messages never reached {receiver.state_dir.name}"
        with JsonNodeClient(sender.state_dir / "node.sock", timeout=60) as c:
            assert c.node_status()["outbox"].get("failed", 0) == 0
    print(
        f"{KILLS} kills; victim sent {len(out.acked)} and received {len(inbound.acked)} acknowledged "
        f"messages, all delivered once ({out.failed_calls + inbound.failed_calls} calls refused while down)"
    )
    log = victim.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]
