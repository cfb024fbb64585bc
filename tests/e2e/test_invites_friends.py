"""Invites and friends through the real CLI and daemons: the round trip,
every way a bad token is refused, single use, revocation and blocking."""

from __future__ import annotations

import base64
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

from tests.harness import Node, ProcGroup, befriend, wait_for
from tmax_core.client import JsonNodeClient
from tmax_core.clock import now_ms
from tmax_core.crypto import Domain
from tmax_core.identity import NodeIdentity
from tmax_core.invites import TOKEN_PREFIX, create_invite, decode_invite, encode_token
from tmax_core.proto import mesh_pb2


def one_line_error(res: subprocess.CompletedProcess) -> str:
    assert res.returncode != 0, res
    err = res.stderr.decode(errors="replace")
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("tmax-mesh: error: "), lines[0]
    return lines[0]


def test_invite_round_trip(procs: ProcGroup) -> None:
    a = procs.node("a")
    b = procs.node("b")
    created = a.cli("invite", "create", "--relay", "grpc://127.0.0.1:1", "--scope", "message", "--ttl", "1h")
    assert created["token"].startswith(TOKEN_PREFIX)
    assert created["uses"] == 1
    assert created["expires_at_ms"] > now_ms() + 3_500_000
    issued = a.cli("invite", "list")
    assert [(i["token_id"], i["uses_left"], i["scopes"]) for i in issued] == [
        (created["token_id"], 1, ["message"])
    ]

    friend = b.cli("invite", "accept", created["token"])
    assert friend["node_id"] == a.node_id
    assert friend["scopes"] == ["message"]
    assert friend["relay_hosts"] == ["grpc://127.0.0.1:1"]
    assert friend["blocked"] is False
    friends = b.cli("friends", "list")
    assert len(friends) == 1
    (stored,) = friends
    assert stored["node_id"] == a.node_id
    assert stored["scopes"] == ["message"]
    assert stored["relay_hosts"] == ["grpc://127.0.0.1:1"]
    assert stored["endpoints"] == []
    # The token text is what the inviter signed, field for field.
    token = decode_invite(created["token"])
    assert token.inviter_node_id.hex() == a.node_id[2:].lower()
    assert token.relay_hosts == ["grpc://127.0.0.1:1"] and token.scopes == ["message"]
    # The link form is accepted too, and accepting twice is harmless.
    again = b.cli("invite", "accept", token.link)
    assert again["node_id"] == a.node_id
    assert friend_ids(b) == {a.node_id}


def _resign(signer: NodeIdentity, body: mesh_pb2.InviteBody) -> str:
    body_bytes = body.SerializeToString()
    raw = mesh_pb2.SignedInvite(body=body_bytes, signature=signer.sign(Domain.INVITE, body_bytes))
    return encode_token(raw.SerializeToString())


def _bad_tokens() -> dict[str, tuple[str, str]]:
    """name -> (token text, fragment expected in the error line)."""
    inviter = NodeIdentity.generate()
    other = NodeIdentity.generate()
    good = create_invite(inviter, ttl_ms=3_600_000, relay_hosts=["grpc://127.0.0.1:1"])
    payload = good.token[len(TOKEN_PREFIX) :]
    signed = mesh_pb2.SignedInvite.FromString(good.raw)
    body = mesh_pb2.InviteBody.FromString(signed.body)

    tampered_body = mesh_pb2.InviteBody()
    tampered_body.CopyFrom(body)
    tampered_body.relay_hosts[0] = "grpc://evil.example:1"
    tampered = encode_token(
        mesh_pb2.SignedInvite(
            body=tampered_body.SerializeToString(), signature=signed.signature
        ).SerializeToString()
    )
    other_key = encode_token(
        mesh_pb2.SignedInvite(
            body=signed.body, signature=other.sign(Domain.INVITE, signed.body)
        ).SerializeToString()
    )
    mismatch_body = mesh_pb2.InviteBody()
    mismatch_body.CopyFrom(body)
    mismatch_body.inviter_public_key = other.public_key  # id stays the inviter's
    cut = len(payload) // 2
    cut += (1 - cut) % 4  # a length no complete base64 text has
    return {
        "garbage": (TOKEN_PREFIX + base64.urlsafe_b64encode(b"\x07" * 40).decode().rstrip("="), "malformed"),
        "words": ("please let me in", "not a tmax-mesh invite"),
        "truncated": (good.token[: len(TOKEN_PREFIX) + cut], "truncated"),
        "bad_base64": (TOKEN_PREFIX + payload[:20] + "!*$" + payload[23:], "base64"),
        "wrong_prefix": ("tmaxinv9." + payload, "not a tmax-mesh invite"),
        "expired": (
            create_invite(inviter, ttl_ms=1000, now_ms=now_ms() - 3_600_000).token,
            "expired",
        ),
        "tampered": (tampered, "signature is invalid"),
        "other_key": (other_key, "signature is invalid"),
        "id_mismatch": (_resign(other, mismatch_body), "does not match its public key"),
        "unknown_scope": (
            create_invite(inviter, ttl_ms=3_600_000, scopes=["message", "launch_missiles"]).token,
            "unknown scope 'launch_missiles'",
        ),
    }


def test_accept_rejects_bad_tokens(procs: ProcGroup) -> None:
    """Every bad token is refused with one clear line, and the lines differ --
    except for an altered body and a signature by another key, which a
    signature check cannot tell apart, and random words vs another prefix
    (neither is a tmax-mesh token)."""
    b = procs.node("b")
    cases = _bad_tokens()
    with ThreadPoolExecutor(4) as pool:
        results = dict(
            zip(cases, pool.map(lambda t: b.run("invite", "accept", t[0]), cases.values()), strict=True)
        )
    lines = {}
    for case, (_token, fragment) in cases.items():
        lines[case] = one_line_error(results[case])
        assert fragment in lines[case], (case, lines[case])
    assert lines["tampered"] == lines["other_key"]
    assert lines["words"] == lines["wrong_prefix"]
    distinct = {k: v for k, v in lines.items() if k not in ("other_key", "words")}
    assert len(set(distinct.values())) == len(distinct), lines
    assert b.cli("friends", "list") == []


def test_accepting_own_invite_is_refused(procs: ProcGroup) -> None:
    a = procs.node("a")
    line = one_line_error(a.run("invite", "accept", a.invite()))
    assert "created by this node" in line
    assert a.cli("friends", "list") == []


def friend_ids(node: Node) -> set[str]:
    with JsonNodeClient(node.state_dir / "node.sock") as client:
        return {f["node_id"] for f in client.friends_list()}


def test_single_use_invite_refuses_second_node(procs: ProcGroup) -> None:
    a = procs.node("a", "--peer-listen", "127.0.0.1:0")
    b = procs.node("b", "--peer-listen", "127.0.0.1:0")
    c = procs.node("c", "--peer-listen", "127.0.0.1:0")
    once = a.cli("invite", "create")
    b.cli("invite", "accept", once["token"])
    wait_for(lambda: b.node_id in friend_ids(a), what="B's first contact")
    active, everything = a.cli("invite", "list"), a.cli("invite", "list", "--all")
    assert active == []  # used up: no longer active
    assert [(i["token_id"], i["uses_left"]) for i in everything] == [(once["token_id"], 0)]

    # C holds a copy of the same token: accepting works offline, first contact is refused.
    c.cli("invite", "accept", once["token"])
    res = c.run("msg", "send", "--to", a.node_id, "--wait", "--timeout", "10", "--json", "hello?")
    assert res.returncode == 1, res
    sent = json.loads(res.stdout)
    assert sent["status"] == "failed" and "invite_used" in sent["error"], sent
    assert friend_ids(a) == {b.node_id}
    assert inbox_bodies(a) == []

    # A fresh invite (two uses) lets C in; its other use stays available.
    twice = a.cli("invite", "create", "--uses", "2")
    c.cli("invite", "accept", twice["token"])
    sent = c.cli("msg", "send", "--to", a.node_id, "--wait", "--timeout", "10", "now?")
    assert sent["status"] == "delivered", sent
    assert friend_ids(a) == {b.node_id, c.node_id}
    assert inbox_bodies(a) == ["now?"]
    assert [(i["token_id"], i["uses_left"]) for i in a.cli("invite", "list")] == [(twice["token_id"], 1)]
    line = one_line_error(a.run("invite", "revoke", "ab" * 16))
    assert "no invite" in line


def inbox_bodies(node: Node) -> list[str]:
    with JsonNodeClient(node.state_dir / "node.sock") as client:
        return [m["body"] for m in client.inbox_list()]


def test_block_unblock_remove_friend(procs: ProcGroup) -> None:
    a = procs.node("a", "--peer-listen", "127.0.0.1:0")
    b = procs.node("b", "--peer-listen", "127.0.0.1:0")
    befriend(a, b, "--alias", "alice", alias="al")
    assert a.cli("friends", "block", b.node_id)["blocked"] is True

    with ThreadPoolExecutor(2) as pool:
        from_b = pool.submit(
            b.run, "msg", "send", "--to", "al", "--wait", "--timeout", "10", "--json", "let me in"
        )
        from_a = pool.submit(a.run, "msg", "send", "--to", b.node_id, "hello")
    res = from_b.result()
    assert res.returncode == 1
    assert json.loads(res.stdout)["error"].startswith("rejected: blocked"), res.stdout
    assert "is blocked; unblock it first" in one_line_error(from_a.result())
    assert inbox_bodies(a) == []

    a.cli("friends", "unblock", b.node_id.lower())  # any case works
    assert b.cli("msg", "send", "--to", "al", "--wait", "--timeout", "10", "again")["status"] == "delivered"
    assert inbox_bodies(a) == ["again"]
    a.cli("friends", "remove", b.node_id)
    assert friend_ids(a) == set()
    with ThreadPoolExecutor(2) as pool:
        again = pool.submit(a.run, "friends", "remove", b.node_id)
        nobody = pool.submit(b.run, "msg", "send", "--to", "nobody", "x")
    assert "no friend" in one_line_error(again.result())
    assert "no friend" in one_line_error(nobody.result())
