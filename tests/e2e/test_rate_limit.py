"""End to end: the ``ratelimit`` plugin in real ``tmax-node`` processes.

* ``test_rate_limit_enforced``: a friend whose invite granted 1 msg/s, burst 3,
  bursts beyond its bucket; the extra messages are refused with
  ``rate_limited``, which the *sender* sees (``msg send --wait`` and
  ``msg status``), and the friend is accepted again once tokens refill.
* ``test_forged_flood_cannot_starve_a_friend``: envelopes that claim to come
  from friend X (X's id and public key, signed by someone else) are sent
  straight to the recipient's PeerService. In this loopback test the forger
  and X share one source (127.0.0.1), so *source* keying cannot tell them
  apart; what the test shows is the real guarantee: the friend bucket is
  charged only after the signature verified, so a flood many times X's burst
  leaves X's whole burst intact (every genuine message lands on its first
  attempt).
* ``test_source_bucket_throttles_before_crypto``: a flood from one source is
  refused with ``rate_limited`` once the source bucket is empty, before any
  signature check. A friend on that same source is delayed too (the limit of
  keying direct traffic by IP) but still delivered once the source refills.
"""

from __future__ import annotations

import json
import os

import grpc

from tests.harness import Node, ProcGroup, befriend, wait_for
from tmax_core import envelope as env
from tmax_core.client import JsonNodeClient
from tmax_core.clock import now_ms
from tmax_core.crypto import Domain, parse_node_id
from tmax_core.identity import NodeIdentity
from tmax_core.peer import DELIVER
from tmax_core.proto import mesh_pb2

LISTEN = ("--peer-listen", "127.0.0.1:0")


def send(node: Node, to: str, body: str, *args: str) -> dict:
    """``msg send --json``; returns the parsed result whatever the exit code."""
    res = node.run("msg", "send", "--to", to, *args, body, "--json")
    out = res.stdout.decode().strip()
    assert out, f"msg send printed nothing ({res.returncode}): {res.stderr.decode()}\n{node.log()}"
    result = json.loads(out)
    assert (res.returncode == 0) == (result["status"] == "delivered"), result
    return result


def forged_envelope(claimed: bytes, claimed_key: bytes, to: bytes) -> bytes:
    """An envelope claiming to be from ``claimed`` (its real id and public key),
    signed by a fresh key: it parses, passes the prechecks, and fails the signature."""
    forger = NodeIdentity.generate()
    ephemeral = NodeIdentity.generate().public_key
    header = mesh_pb2.EnvelopeHeader(
        version=env.VERSION,
        message_id=os.urandom(16),
        from_node_id=claimed,
        to_node_id=to,
        timestamp_ms=now_ms(),
        sender_public_key=claimed_key,
        ephemeral_public_key=ephemeral,
    ).SerializeToString()
    ciphertext = os.urandom(64)  # never decrypted: the signature check fails first
    signature = forger.sign(Domain.ENVELOPE, header, ciphertext)
    return mesh_pb2.Envelope(header=header, ciphertext=ciphertext, signature=signature).SerializeToString()


def flood(target: Node, claimed: Node | None, count: int) -> list[str]:
    """Send ``count`` forged envelopes to ``target``'s PeerService; return the
    ack reasons ("unanswered" for an empty answer: the node signs answers to
    envelopes that did not authenticate only within a budget)."""
    to = parse_node_id(target.node_id)
    if claimed is not None:
        claimed_id = parse_node_id(claimed.node_id)
        claimed_key = bytes.fromhex(claimed.cli("node", "info")["public_key"])
    else:
        stranger = NodeIdentity.generate()
        claimed_id, claimed_key = stranger.node_id, stranger.public_key
    envelopes = [forged_envelope(claimed_id, claimed_key, to) for _ in range(count)]
    reasons = []
    with grpc.insecure_channel(target.ready["peer_listen"]) as channel:
        deliver = channel.unary_unary(DELIVER)  # raw bytes in and out
        for envelope in envelopes:
            ack = deliver(envelope, timeout=10)
            if not ack:
                reasons.append("unanswered")
                continue
            body = mesh_pb2.AckBody.FromString(mesh_pb2.SignedAck.FromString(ack).body)
            assert body.status == mesh_pb2.ACK_STATUS_REJECTED
            reasons.append(body.reason)
    return reasons


def test_rate_limit_enforced(procs: ProcGroup) -> None:
    a = procs.node("a", *LISTEN)
    b = procs.node("b", *LISTEN)
    befriend(a, b, "--rate", "1", "--burst", "3")  # A grants B 1 msg/s, burst 3
    # B bursts 8 messages at once, each with a 1 s ttl, through its local API
    # (one process: 8 CLI start-ups would take longer than the bucket's refill).
    with JsonNodeClient(b.ready["socket"]) as client:
        ids = [client.msg_send(a.node_id, f"burst-{i}".encode(), ttl_ms=1000)["message_id"] for i in range(8)]
        results = [client.msg_wait(mid, 10.0) for mid in ids]
    delivered = [r for r in results if r["status"] == "delivered"]
    failed = [r for r in results if r["status"] != "delivered"]
    # 3 from the burst, and whatever refilled (1/s) before the 1 s ttls ran out
    assert 3 <= len(delivered) <= 5 and len(failed) >= 3, results
    for r in failed:
        # the sender sees why: the ttl ran out while A refused with rate_limited
        assert r["status"] == "failed", r
        assert "rejected: rate_limited" in r["error"] and "retry after" in r["error"], r
    shown = b.cli("msg", "status", failed[0]["message_id"])  # what the user sees
    assert shown["status"] == "failed" and "rejected: rate_limited" in shown["error"], shown
    burst_bodies = [x for x in a.inbox_bodies() if x.startswith("burst-")]
    assert sorted(burst_bodies) == sorted(f"burst-{ids.index(r['message_id'])}" for r in delivered)
    # once tokens refill, B is accepted again (no fixed sleep: --wait returns
    # when A accepted, after outbox retries if the bucket was still empty)
    after = send(b, a.node_id, "after-refill", "--wait", "--timeout", "20")
    assert after["status"] == "delivered", after
    wait_for(lambda: "after-refill" in a.inbox_bodies(), what="the message after the refill in A's inbox")


def test_forged_flood_cannot_starve_a_friend(procs: ProcGroup) -> None:
    a = procs.node("a", *LISTEN)
    b = procs.node("b", *LISTEN)
    # burst 3 and a slow refill (one token per 5 s): during this test B's
    # bucket holds what the flood left of it, give or take a fraction of a token
    befriend(a, b, "--rate", "0.2", "--burst", "3")
    # 60 envelopes claiming to be B (20x B's burst), from B's own source (127.0.0.1)
    reasons = flood(a, b, 60)
    # none was charged to B's bucket: every one got as far as the signature check
    assert set(reasons) <= {"bad_signature", "unanswered"} and "bad_signature" in reasons, reasons
    with JsonNodeClient(b.ready["socket"]) as client:
        # B's genuine burst is intact: 3 messages at once, each accepted on its first attempt
        ids = [client.msg_send(a.node_id, f"genuine-{i}".encode())["message_id"] for i in range(3)]
        results = [client.msg_wait(mid, 10.0) for mid in ids]
        assert [(r["status"], r["attempts"]) for r in results] == [("delivered", 1)] * 3, results
        # ... and it really was B's whole bucket: a 4th message is refused
        fourth = client.msg_send(a.node_id, b"genuine-3")["message_id"]
        shown = wait_for(
            lambda: (s := client.msg_status(fourth))["error"] and s,
            what="the 4th message to be refused",
        )
    # A refused it before any crypto. The flood, claiming B, may have used up
    # the few answers A signs per second for envelopes claiming B that did not
    # verify: then the refusal comes unsigned, and B simply tries again later.
    refused = ("rejected: rate_limited", "unverifiable batch ack")
    assert shown["status"] == "queued" and any(r in shown["error"] for r in refused), shown
    assert sorted(x for x in a.inbox_bodies() if x.startswith("genuine-")) == [
        "genuine-0",
        "genuine-1",
        "genuine-2",
    ]


def test_source_bucket_throttles_before_crypto(procs: ProcGroup) -> None:
    a = procs.node(
        "a",
        *LISTEN,
        env={"TMAX_MESH_RATELIMIT_SOURCE_BURST": "10", "TMAX_MESH_RATELIMIT_SOURCE_RATE": "0.5"},
    )
    b = procs.node("b", *LISTEN)
    befriend(a, b)  # B's hello takes one token of A's bucket for 127.0.0.1
    reasons = flood(a, b, 30)
    # the first envelopes cost A a signature check each; once the source bucket
    # is empty the rest are refused before any crypto
    assert set(reasons) <= {"bad_signature", "rate_limited"}, reasons
    assert reasons.count("bad_signature") <= 11, reasons
    assert reasons.count("rate_limited") >= 19, reasons
    first_limited = reasons.index("rate_limited")
    assert reasons[first_limited:].count("bad_signature") <= 1, reasons  # at most one refilled token
    # B shares that source here (loopback), so B is delayed too: the documented
    # limit of keying direct traffic by IP. Its message still gets through once
    # the source refills (the outbox retries rate_limited).
    r = send(b, a.node_id, "after-flood", "--wait", "--timeout", "30")
    assert r["status"] == "delivered", r
