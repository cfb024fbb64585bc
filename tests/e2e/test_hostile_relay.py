"""Attacks by the relay itself (DESIGN §7): real ``tmax-node`` processes relay
through ``EvilRelay``, a scripted host that records every frame and drops,
holds, forges or injects frames as each test scripts it.

What must hold: nothing the relay does makes a sender believe a wrong
outcome, suppresses a friend's message, or lets the relay act as a node.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.evil_relay import DROP, FORWARD, EvilRelay, Sent
from tests.harness import Node, ProcGroup, befriend, wait_for
from tmax_core import envelope as env
from tmax_core.client import JsonNodeClient
from tmax_core.crypto import parse_node_id
from tmax_core.identity import NodeIdentity, load
from tmax_core.invites import decode_invite, decode_signed_invite
from tmax_core.proto import mesh_pb2

FAST = {
    "TMAX_MESH_MESSAGES_RETRY_INITIAL": "200ms",
    "TMAX_MESH_MESSAGES_RETRY_MAX": "1s",
    "TMAX_MESH_RELAY_RECONNECT_MAX": "1s",
    "TMAX_MESH_DISABLE_PLUGINS": "direct",
}


@pytest.fixture
def relay() -> Iterator[EvilRelay]:
    with EvilRelay() as r:
        yield r


def api(node: Node) -> JsonNodeClient:
    return JsonNodeClient(Path(node.ready["socket"]))


def node_id(node: Node) -> bytes:
    return parse_node_id(node.node_id)


def public_key(node: Node) -> bytes:
    return bytes.fromhex(node.cli("node", "info")["public_key"])


def start(procs: ProcGroup, relay: EvilRelay, *names: str) -> list[Node]:
    nodes = [procs.node(name, "--relay", relay.url, env=FAST) for name in names]
    wait_for(lambda: {node_id(n) for n in nodes} <= relay.registered(), what="nodes registered at the relay")
    return nodes


def final_status(node: Node, message_id: str) -> dict:
    def final() -> dict | None:
        with api(node) as c:
            state = c.msg_status(message_id)
        return state if state["status"] in ("delivered", "failed") else None

    return wait_for(final, timeout=30, what=f"message {message_id} to be final")


def held_send(relay: EvilRelay, sender: bytes, message_id: bytes) -> Sent:
    return wait_for(
        lambda: next((s for s in relay.sends if s.sender == sender and s.message_id == message_id), None),
        what="the relay to see the message",
    )


def test_relay_forges_a_rejection_with_junk_under_a_real_message_id(
    procs: ProcGroup, relay: EvilRelay
) -> None:
    """The relay holds A's message X, sends B junk carrying X's header, and
    hands A the REJECTED ack B signed for the junk. A must not take it as
    X's outcome: X is delivered once the relay lets it through."""
    a, b = start(procs, relay, "a", "b")
    befriend(b, a)
    a_id = node_id(a)
    relay.on_send = lambda s: DROP if s.sender == a_id else FORWARD
    sent = a.cli("msg", "send", "--to", b.node_id, "the real X")
    x = bytes.fromhex(sent["message_id"])
    real = held_send(relay, a_id, x)
    real_env = mesh_pb2.Envelope.FromString(real.data)
    junk = mesh_pb2.Envelope(header=real_env.header, ciphertext=os.urandom(64), signature=os.urandom(65))
    relay.deliver(node_id(b), a_id, x, junk.SerializeToString())
    forged = wait_for(
        lambda: next((s for s in relay.acks if s.message_id == x), None), what="B's ack for the junk"
    )
    forged_body = mesh_pb2.AckBody.FromString(mesh_pb2.SignedAck.FromString(forged.data).body)
    assert forged_body.status == mesh_pb2.ACK_STATUS_REJECTED
    relay.on_send = lambda s: FORWARD  # from now on the relay behaves
    state = final_status(a, sent["message_id"])
    assert state["status"] == "delivered", state
    assert [m["body"] for m in b.cli("inbox", "list")] == ["the real X"]


def test_friend_reuses_a_message_id_to_suppress_anothers_message(procs: ProcGroup, relay: EvilRelay) -> None:
    """Friend C of B learns the id of A's message X (the relay saw it) and
    sends B its own message under X first. B must still take A's X: a
    message is (sender, message_id), and DUPLICATE only answers the same sender."""
    a, b, c = start(procs, relay, "a", "b", "c")
    befriend(b, a)
    befriend(b, c)
    a_id, b_id = node_id(a), node_id(b)
    relay.on_send = lambda s: DROP if s.sender == a_id else FORWARD
    sent = a.cli("msg", "send", "--to", b.node_id, "from A")
    x = bytes.fromhex(sent["message_id"])
    held = held_send(relay, a_id, x)
    c_identity: NodeIdentity = load(c.state_dir)
    from_c = env.seal(
        c_identity,
        to_node_id=b_id,
        to_public_key=public_key(b),
        scope="message",
        content_type="text/plain",
        body=b"from C",
        message_id=x,
    )
    relay.deliver(b_id, c_identity.node_id, x, from_c)
    wait_for(lambda: "from C" in [m["body"] for m in b.cli("inbox", "list")], what="C's message at B")
    relay.on_send = lambda s: FORWARD
    relay.forward(held)
    state = final_status(a, sent["message_id"])
    assert state["status"] == "delivered", state
    inbox = b.cli("inbox", "list")
    assert sorted(m["body"] for m in inbox) == ["from A", "from C"], inbox
    assert {m["from_node_id"] for m in inbox} == {a.node_id, c.node_id}
    # B's user deleting C's copy cannot take A's with it: an id two senders
    # used needs --from, and then only that sender's message goes.
    refused = b.run("inbox", "delete", x.hex())
    assert refused.returncode != 0 and b"used by 2 senders" in refused.stderr, refused
    assert b.cli("inbox", "delete", x.hex(), "--from", c.node_id) == {"deleted": 1}
    assert [m["body"] for m in b.cli("inbox", "list")] == ["from A"]


def _length_delimited(data: bytes) -> Iterator[bytes]:
    """Every length-delimited field of a protobuf message, recursively: all
    the byte strings a relay can pick out of a frame without any key."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        wire = key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            n, pos = _varint(data, pos)
            value = data[pos : pos + n]
            pos += n
            yield value
            with contextlib.suppress(IndexError, ValueError):
                yield from _length_delimited(value)
        else:
            raise ValueError("not a protobuf message")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _tokens_in_clear(frame: bytes) -> list[bytes]:
    tokens = []
    for value in _length_delimited(frame):
        try:
            decode_signed_invite(value)
        except Exception:
            continue
        tokens.append(value)
    return tokens


def test_relay_copies_the_invite_token_to_hijack_first_contact(procs: ProcGroup, relay: EvilRelay) -> None:
    """B accepts A's invite; its first contact crosses the relay. The relay
    looks for the token in everything it can read and, if it finds it, makes
    first contact with its own key first. The token must not be readable, so
    B becomes A's friend and the relay's key does not."""
    a, b = start(procs, relay, "a", "b")
    a_id, b_id = node_id(a), node_id(b)
    thief = NodeIdentity.generate()
    stolen: list[bytes] = []

    def steal(sent: Sent) -> str:
        if sent.sender != b_id or stolen:
            return FORWARD
        tokens = _tokens_in_clear(sent.data)
        if not tokens:
            return FORWARD
        stolen.append(tokens[0])
        hijack = env.seal(
            thief,
            to_node_id=a_id,
            to_public_key=a_pub,
            scope="message",
            content_type="text/plain",
            body=b"I am B",
            invite=tokens[0],
        )
        relay.deliver(a_id, thief.node_id, env.parse(hijack, 1 << 20).message_id, hijack)
        return FORWARD

    a_pub = public_key(a)
    relay.on_send = steal
    token = a.invite()
    signature = mesh_pb2.SignedInvite.FromString(decode_invite(token).raw).signature
    b.cli("invite", "accept", token, "--alias", "a")
    wait_for(lambda: any(s.sender == b_id for s in relay.sends), what="B's first contact at the relay")
    wait_for(
        lambda: b.node_id in {f["node_id"] for f in a.cli("friends", "list")}, what="B to become A's friend"
    )
    assert stolen == []
    assert not any(signature in frame for frame in relay.frames), "the token's signature crossed the relay"
    assert thief.node_id_hex not in {f["node_id"] for f in a.cli("friends", "list")}
