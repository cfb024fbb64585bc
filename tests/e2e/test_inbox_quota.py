"""A friend tries to fill the recipient's disk through its inbox (issue 13,
item 8). Real nodes, real CLI: node A runs with small byte quotas, friends B
and C send until they are over them.

Quotas (``inbox.max_bytes_per_friend``, ``inbox.max_bytes_total``) count the
unread messages of each sender; a delivery beyond them is refused with the
reason ``quota_exceeded``, which the sender's ``msg status`` shows as a final
failure. Acking or deleting messages frees their space.
"""

from __future__ import annotations

import json

from tests.e2e.test_cli import one_line_error
from tests.harness import Node, ProcGroup, befriend
from tmax_core.client import JsonNodeClient

LISTEN = ("--peer-listen", "127.0.0.1:0")
BODY = "x" * 1000
# Each 1000-byte text message is charged about 1,150 bytes (body, content
# type, scope and a per-message overhead): three fit in 4,000 bytes, five in
# 6,000.
QUOTAS = {"TMAX_MESH_INBOX_MAX_BYTES_PER_FRIEND": "4000", "TMAX_MESH_INBOX_MAX_BYTES_TOTAL": "6000"}


def send(sender: Node, to: str, body: str = BODY) -> dict:
    """``msg send --wait --json``: the outcome the sender sees (exit 1 when not delivered)."""
    res = sender.run("msg", "send", "--to", to, "--wait", "--timeout", "20", body, "--json")
    out = json.loads(res.stdout)
    assert res.returncode == (0 if out["status"] == "delivered" else 1), res
    return out


def assert_quota_exceeded(sender: Node, sent: dict) -> None:
    assert sent["status"] == "failed", f"delivered past the quota: {sent}"
    assert sent["error"].startswith("rejected: quota_exceeded"), sent
    status = sender.cli("msg", "status", sent["message_id"])
    assert status["status"] == "failed" and status["error"].startswith("rejected: quota_exceeded"), status


def test_friend_fills_the_disk_through_the_inbox(procs: ProcGroup) -> None:
    a = procs.node("a", *LISTEN, env=QUOTAS)
    b = procs.node("b", *LISTEN)
    c = procs.node("c", *LISTEN)
    befriend(a, b, alias="a")
    befriend(a, c, alias="a")

    # B sends until it is over its own quota: the fourth message does not fit.
    kept = [send(b, "a") for _ in range(3)]
    assert [s["status"] for s in kept] == ["delivered"] * 3
    refused = send(b, "a")
    assert_quota_exceeded(b, refused)
    inbox = a.cli("inbox", "list")
    assert [m["message_id"] for m in inbox] == [s["message_id"] for s in kept]

    # B's flood does not starve C: C has a quota of its own, until the total is reached.
    from_c = [send(c, "a") for _ in range(2)]
    assert [s["status"] for s in from_c] == ["delivered"] * 2
    assert_quota_exceeded(c, send(c, "a"))
    assert len(a.cli("inbox", "list")) == 5

    # Acking frees space: B can send again.
    a.cli("inbox", "ack", kept[0]["message_id"], kept[1]["message_id"])
    assert send(b, "a")["status"] == "delivered"

    # Deleting frees space too, and the messages are gone.
    deleted = a.cli("inbox", "delete", *(s["message_id"] for s in from_c))
    assert deleted == {"deleted": 2}
    assert {m["message_id"] for m in a.cli("inbox", "list")}.isdisjoint(s["message_id"] for s in from_c)
    assert send(c, "a")["status"] == "delivered"


def test_friend_fills_the_inbox_with_one_batch(procs: ProcGroup) -> None:
    """Messages sent in one call travel in batches: those that fit are stored,
    the rest refused, one by one (never the whole batch)."""
    a = procs.node("a", *LISTEN, env=QUOTAS)
    b = procs.node("b", *LISTEN)
    befriend(a, b, alias="a")
    with JsonNodeClient(b.ready["socket"]) as client:
        sent = client.msg_send_many([{"to": "a", "body": BODY.encode()} for _ in range(5)])
        results = [client.msg_wait(s["message_id"], 20) for s in sent]
    assert [r["status"] for r in results] == ["delivered"] * 3 + ["failed"] * 2, results
    for refused in results[3:]:
        assert_quota_exceeded(b, refused)
    assert [m["message_id"] for m in a.cli("inbox", "list")] == [r["message_id"] for r in results[:3]]


SESSION_QUOTAS = {
    "TMAX_MESH_DELIVERY_SINKS": '["session_mailbox"]',
    "TMAX_MESH_SESSION_MAILBOX_MAX_BYTES_PER_FRIEND": "4000",
    "TMAX_MESH_SESSION_MAILBOX_MAX_BYTES_TOTAL": "6000",
}


def test_friend_fills_the_disk_through_a_session_mailbox(procs: ProcGroup) -> None:
    a = procs.node("a", *LISTEN, env=SESSION_QUOTAS)
    b = procs.node("b", *LISTEN)
    befriend(a, b, alias="a")
    kept = [send(b, "a") for _ in range(3)]
    assert [s["status"] for s in kept] == ["delivered"] * 3
    assert_quota_exceeded(b, send(b, "a"))
    listed = a.cli("session", "list", "root")
    assert [m["message_id"] for m in listed] == [s["message_id"] for s in kept]

    # Local sessions are the node owner's own: not limited by the friends' quota.
    local = a.cli("session", "send", "--from", "planner", "--to", "root", BODY * 8)
    assert local["origin"] == "local"

    a.cli("session", "ack", "root", kept[0]["message_id"])
    assert send(b, "a")["status"] == "delivered"
    assert a.cli("session", "delete", "root", kept[1]["message_id"], kept[2]["message_id"]) == {
        "session": "root",
        "deleted": 2,
    }
    assert [send(b, "a")["status"] for _ in range(2)] == ["delivered"] * 2
    assert_quota_exceeded(b, send(b, "a"))
    assert a.cli("session", "delete", "root", "--acked") == {"session": "root", "deleted": 1}


def test_delete_bad_input_is_one_line_and_deletes_nothing(procs: ProcGroup) -> None:
    a = procs.node("a", *LISTEN)
    b = procs.node("b", *LISTEN)
    befriend(a, b, alias="a")
    kept = send(b, "a", "keep me")["message_id"]
    unknown = "00" * 16
    for args, code, says in (
        ([], 2, "give the ids of the messages to delete, or --acked"),
        ([kept, "--acked"], 2, "not both"),
        (["zz"], 2, "message id must be hex"),
        (["abcd"], 2, "must be 16 bytes"),
        ([kept, unknown], 1, f"no inbox message with id {unknown}"),
    ):
        res = a.run("inbox", "delete", *args)
        assert res.returncode == code, res
        assert says in one_line_error(res)
    res = a.run("session", "delete", "root", unknown)
    assert res.returncode == 1 and f"no message with id {unknown} in session 'root'" in one_line_error(res)
    res = a.run("session", "delete", "root")
    assert res.returncode == 2 and "--acked" in one_line_error(res)
    assert [m["message_id"] for m in a.cli("inbox", "list")] == [kept]
    # Text output for people, --acked for every read message.
    assert a.run("inbox", "delete", "--acked").stdout.decode() == "deleted 0\n"
    a.cli("inbox", "ack", "--all")
    assert a.cli("inbox", "delete", "--acked") == {"deleted": 1}
    assert a.cli("inbox", "list") == []
