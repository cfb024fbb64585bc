"""Exactly-once delivery across a recipient crash (DESIGN §9): at-least-once
retries from the sender's outbox plus dedup at the recipient."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from pathlib import Path

from tests.harness import ProcGroup, befriend, free_port, wait_for
from tmax_core.client import AsyncJsonNodeClient, JsonNodeClient
from tmax_core.errors import MeshError

N = 1000
KILL_AFTER = 50  # messages in B's inbox when it is killed


def statuses(sock: Path, ids: list[str]) -> Counter[str]:
    """Every message's sender-side status, asked concurrently over the async client."""

    async def ask() -> list[dict]:
        async with AsyncJsonNodeClient(sock) as client:
            return await asyncio.gather(*(client.msg_status(mid) for mid in ids))

    return Counter(m["status"] for m in asyncio.run(ask()))


def test_exactly_once(procs: ProcGroup) -> None:
    # B (the recipient) keeps one endpoint across its restart; A learns it from B's invite.
    # The invite grants A a rate far above this test's; the loopback source bucket is opened up too.
    b = procs.node(
        "b",
        "--peer-listen",
        f"127.0.0.1:{free_port()}",
        env={"TMAX_MESH_RATELIMIT_SOURCE_RATE": "100000", "TMAX_MESH_RATELIMIT_SOURCE_BURST": "100000"},
    )
    a = procs.node("a", "--peer-listen", "127.0.0.1:0", env={"TMAX_MESH_MESSAGES_RETRY_MAX": "2s"})
    befriend(b, a, "--rate", "100000", "--burst", "100000")
    a_sock = a.state_dir / "node.sock"
    b_sock = b.state_dir / "node.sock"

    ids: list[str] = []
    errors: list[BaseException] = []

    def send_all() -> None:
        try:
            with JsonNodeClient(a_sock) as client:
                for i in range(N):
                    ids.append(client.msg_send(b.node_id, f"message {i:04d}".encode())["message_id"])
        except BaseException as err:  # reported by the main thread
            errors.append(err)

    sender = threading.Thread(target=send_all, name="sender")
    sender.start()
    try:

        def b_has_some() -> bool:
            try:
                with JsonNodeClient(b_sock, timeout=5) as client:
                    return client.inbox_unread()["unread"] >= KILL_AFTER
            except MeshError:
                return False

        wait_for(b_has_some, timeout=60, interval=0.01, what=f"B to receive {KILL_AFTER} messages")
        sent_at_kill = len(ids)
        b.kill()  # SIGKILL: no chance to flush or say goodbye
        assert not b.alive()
        b.start()
    finally:
        sender.join(120)
    assert not errors, errors
    assert len(ids) == N and len(set(ids)) == N
    assert sent_at_kill < N, "the kill should land in the middle of the send"

    with JsonNodeClient(a_sock) as client:
        wait_for(
            lambda: client.node_status()["outbox"]["delivered"] >= N + 1,  # + the first-contact hello
            timeout=90,
            interval=0.25,
            what="every message to be delivered",
        )
    assert statuses(a_sock, ids) == {"delivered": N}

    with JsonNodeClient(b_sock) as client:
        inbox = client.inbox_list()
    counts = Counter(m["message_id"] for m in inbox)
    assert len(inbox) == N, f"{len(inbox)} messages in B's inbox"
    assert set(counts) == set(ids)
    assert max(counts.values()) == 1
    assert sorted(m["body"] for m in inbox) == [f"message {i:04d}" for i in range(N)]
    assert all(m["from_node_id"] == a.node_id for m in inbox)
    for node in (a, b):
        log = node.log_path.read_text(errors="replace")
        assert "Traceback" not in log, f"{node.state_dir.name} logged a traceback:\n{log[-3000:]}"
