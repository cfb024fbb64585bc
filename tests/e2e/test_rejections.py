"""The ingress pipeline of a real node, attacked from outside (DESIGN §7, §8).

Envelopes are crafted here with the project's own envelope and identity code
and sent straight to node A's PeerService over a raw gRPC channel; the
answer must be an ack *signed by A* with the expected status and reason, and
nothing may land in A's inbox. Where the test needs to speak as friend B it
loads B's identity from B's state dir (the test plays B), and a throwaway
identity plays any stranger.

A runs with a tiny test-only plugin (a bare dist-info on ``PYTHONPATH``)
that registers the scope ``task_update``, so that "a registered scope the
invite did not grant" can be tested.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from tests.harness import Node, ProcGroup, befriend, free_port, wait_for
from tmax_core import envelope as env
from tmax_core.client import JsonNodeClient
from tmax_core.clock import now_ms
from tmax_core.crypto import Domain, parse_node_id
from tmax_core.errors import EnvelopeError
from tmax_core.identity import NodeIdentity, load
from tmax_core.invites import create_invite, decode_invite
from tmax_core.peer import DELIVER
from tmax_core.proto import mesh_pb2

ACCEPTED = mesh_pb2.ACK_STATUS_ACCEPTED
DUPLICATE = mesh_pb2.ACK_STATUS_DUPLICATE
REJECTED = mesh_pb2.ACK_STATUS_REJECTED

SCOPE_PLUGIN = """\
from tmax_core.model import InviteScope
from tmax_core.plugin import hookimpl


@hookimpl
def tmax_register_invite_scopes(register):
    register(InviteScope("task_update", "e2e test scope"))
"""


def scope_plugin_site(root: Path) -> Path:
    """A directory that, on PYTHONPATH, installs a plugin adding the ``task_update`` scope."""
    site = root / "site"
    info = site / "tmax_e2e_scopes-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "tmax_e2e_scopes.py").write_text(SCOPE_PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tmax-e2e-scopes\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[tmax_mesh]\ne2e_scopes = tmax_e2e_scopes\n")
    return site


@dataclass
class Mesh:
    a: Node
    b: Node
    a_id: bytes
    a_pub: bytes
    b_identity: NodeIdentity

    @property
    def a_addr(self) -> str:
        return self.a.ready["peer_listen"]

    def seal(self, sender: NodeIdentity, body: bytes = b"hello", **kw) -> tuple[bytes, bytes]:
        """A valid envelope from ``sender`` to A; returns (message_id, bytes)."""
        message_id = kw.pop("message_id", os.urandom(16))
        kw.setdefault("scope", "message")
        kw.setdefault("content_type", "text/plain")
        data = env.seal(
            sender, to_node_id=self.a_id, to_public_key=self.a_pub, body=body, message_id=message_id, **kw
        )
        return message_id, data

    def deliver(self, data: bytes, message_id: bytes) -> mesh_pb2.AckBody:
        """Send raw envelope bytes to A's PeerService; return the ack, checked to be signed by A."""
        with grpc.insecure_channel(self.a_addr) as channel:
            ack = channel.unary_unary(DELIVER)(data, timeout=10)
        try:
            sender = env.parse(data, 1 << 20).from_node_id
        except EnvelopeError:
            sender = b""
        return env.verify_ack(
            ack,
            expected_signer_public_key=self.a_pub,
            expected_signer_node_id=self.a_id,
            sender_node_id=sender,
            message_id=message_id,
            envelope_hashes=[env.envelope_hash(data)],
        )

    def inbox_ids(self) -> list[str]:
        with JsonNodeClient(self.a.state_dir / "node.sock") as client:
            return [m["message_id"] for m in client.inbox_list()]

    def friend_ids(self) -> set[str]:
        with JsonNodeClient(self.a.state_dir / "node.sock") as client:
            return {f["node_id"] for f in client.friends_list()}

    def expect_rejected(self, message_id: bytes, data: bytes, reason: str) -> mesh_pb2.AckBody:
        friends = self.friend_ids()
        ack = self.deliver(data, message_id)
        assert (mesh_pb2.AckStatus.Name(ack.status), ack.reason) == ("ACK_STATUS_REJECTED", reason), ack
        assert ack.to_node_id == env.parse(data, 1 << 20).from_node_id
        assert message_id.hex() not in self.inbox_ids()
        assert self.friend_ids() == friends
        return ack


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    root = tmp_path_factory.mktemp("rejections")
    group = ProcGroup(root)
    try:
        site = scope_plugin_site(root)
        a = group.node(
            "a",
            "--peer-listen",
            f"127.0.0.1:{free_port()}",
            env={"PYTHONPATH": str(site), "TMAX_MESH_MESSAGES_REPLAY_WINDOW": "10m"},
        )
        b = group.node("b", "--peer-listen", "127.0.0.1:0")
        befriend(a, b)  # grants B only "message"
        info = a.cli("node", "info")
        yield Mesh(
            a=a,
            b=b,
            a_id=parse_node_id(info["node_id"]),
            a_pub=bytes.fromhex(info["public_key"]),
            b_identity=load(b.state_dir),
        )
    finally:
        group.stop_all()


def test_friend_envelope_is_accepted(mesh: Mesh) -> None:
    """The baseline the other tests depart from: B's sealed envelope is accepted."""
    mid, data = mesh.seal(mesh.b_identity, b"genuine")
    ack = mesh.deliver(data, mid)
    assert ack.status == ACCEPTED and ack.reason == ""
    assert mid.hex() in mesh.inbox_ids()


def test_unknown_sender_without_invite(mesh: Mesh) -> None:
    mid, data = mesh.seal(NodeIdentity.generate())
    mesh.expect_rejected(mid, data, "unknown_sender")


def test_malformed_bytes(mesh: Mesh) -> None:
    ack = mesh.deliver(b"\x0a\x03abc definitely not an envelope", b"")
    assert ack.status == REJECTED and ack.reason == "malformed"


@pytest.mark.parametrize("where", ["r", "s", "v", "zeros"])
def test_invalid_signature(mesh: Mesh, where: str) -> None:
    mid, data = mesh.seal(mesh.b_identity)
    envelope = mesh_pb2.Envelope.FromString(data)
    sig = bytearray(envelope.signature)
    if where == "r":
        sig[5] ^= 0x01
    elif where == "s":
        sig[40] ^= 0x80
    elif where == "v":
        sig[64] = 7
    else:
        sig = bytearray(65)
    envelope.signature = bytes(sig)
    mesh.expect_rejected(mid, envelope.SerializeToString(), "bad_signature")


def test_node_id_not_matching_key(mesh: Mesh) -> None:
    """A stranger signs correctly with its own key but claims to be friend B."""
    stranger = NodeIdentity.generate()
    mid, data = mesh.seal(stranger)
    envelope = mesh_pb2.Envelope.FromString(data)
    header = mesh_pb2.EnvelopeHeader.FromString(envelope.header)
    header.from_node_id = mesh.b_identity.node_id
    envelope.header = header.SerializeToString()
    envelope.signature = stranger.sign(Domain.ENVELOPE, envelope.header, envelope.ciphertext)
    mesh.expect_rejected(mid, envelope.SerializeToString(), "id_key_mismatch")


def test_tampered_ciphertext(mesh: Mesh) -> None:
    mid, data = mesh.seal(mesh.b_identity, b"pay 10 coins")
    envelope = mesh_pb2.Envelope.FromString(data)
    ct = bytearray(envelope.ciphertext)
    ct[3] ^= 0x40
    envelope.ciphertext = bytes(ct)
    mesh.expect_rejected(mid, envelope.SerializeToString(), "bad_signature")


def test_wrong_recipient(mesh: Mesh) -> None:
    other = NodeIdentity.generate()
    mid = os.urandom(16)
    data = env.seal(
        mesh.b_identity,
        to_node_id=other.node_id,
        to_public_key=other.public_key,
        scope="message",
        content_type="text/plain",
        body=b"not for A",
        message_id=mid,
    )
    mesh.expect_rejected(mid, data, "wrong_recipient")


def test_replayed_envelope_is_stored_once(mesh: Mesh) -> None:
    mid, data = mesh.seal(mesh.b_identity, b"only once")
    assert mesh.deliver(data, mid).status == ACCEPTED
    for _ in range(3):
        ack = mesh.deliver(data, mid)
        assert ack.status == DUPLICATE and ack.reason == "", ack
    # Seen ids are persisted: a restart does not reopen the door.
    assert mesh.a.stop() == 0
    mesh.a.start()
    assert mesh.deliver(data, mid).status == DUPLICATE
    assert mesh.inbox_ids().count(mid.hex()) == 1


@pytest.mark.parametrize(("skew_ms", "label"), [(-3_600_000, "past"), (3_600_000, "future")])
def test_stale_timestamp(mesh: Mesh, skew_ms: int, label: str) -> None:
    mid, data = mesh.seal(mesh.b_identity, timestamp_ms=now_ms() + skew_ms)
    mesh.expect_rejected(mid, data, "stale_timestamp")


def test_blocked_friend(mesh: Mesh) -> None:
    mesh.a.cli("friends", "block", mesh.b.node_id)
    try:
        mid, data = mesh.seal(mesh.b_identity, b"let me in")
        mesh.expect_rejected(mid, data, "blocked")
    finally:
        mesh.a.cli("friends", "unblock", mesh.b.node_id)
    mid, data = mesh.seal(mesh.b_identity, b"welcome back")
    assert mesh.deliver(data, mid).status == ACCEPTED


def test_scope_not_granted(mesh: Mesh) -> None:
    """``task_update`` is registered on A (the test plugin), but B's invite granted only ``message``."""
    assert "e2e_scopes" in {p["name"] for p in mesh.a.cli("plugins")}
    mid, data = mesh.seal(mesh.b_identity, b"{}", scope="task_update", content_type="application/json")
    mesh.expect_rejected(mid, data, "scope_not_granted")


def test_unknown_scope(mesh: Mesh) -> None:
    mid, data = mesh.seal(mesh.b_identity, scope="launch_missiles")
    mesh.expect_rejected(mid, data, "unknown_scope")


def test_single_use_invite_replayed_by_third_node(mesh: Mesh) -> None:
    token = decode_invite(mesh.a.invite())
    first, third = NodeIdentity.generate(), NodeIdentity.generate()
    mid, data = mesh.seal(first, b"hi, I have an invite", invite=token.raw)
    ack = mesh.deliver(data, mid)
    assert ack.status == ACCEPTED, ack
    assert first.node_id_hex in mesh.friend_ids()
    # A copy of the same token, used by another node after its only use.
    mid, data = mesh.seal(third, b"me too", invite=token.raw)
    ack = mesh.expect_rejected(mid, data, "invite_used")
    assert ack.detail
    assert third.node_id_hex not in mesh.friend_ids()


def test_invite_expired_at_first_contact(mesh: Mesh) -> None:
    created = mesh.a.cli("invite", "create", "--ttl", "1s")
    wait_for(lambda: now_ms() > created["expires_at_ms"] + 50, timeout=10, what="the invite to expire")
    token = decode_invite(created["token"])
    mid, data = mesh.seal(NodeIdentity.generate(), invite=token.raw)
    mesh.expect_rejected(mid, data, "invite_expired")


def test_revoked_invite_at_first_contact(mesh: Mesh) -> None:
    created = mesh.a.cli("invite", "create")
    mesh.a.cli("invite", "revoke", created["token_id"])
    mid, data = mesh.seal(NodeIdentity.generate(), invite=decode_invite(created["token"]).raw)
    mesh.expect_rejected(mid, data, "invite_revoked")


def test_invite_signed_by_a_but_never_issued(mesh: Mesh) -> None:
    """Even a token carrying A's valid signature must be one A recorded as issued."""
    a_identity = load(mesh.a.state_dir)
    forged = create_invite(a_identity, ttl_ms=3_600_000)
    mid, data = mesh.seal(NodeIdentity.generate(), invite=forged.raw)
    mesh.expect_rejected(mid, data, "invite_unknown")


def test_invite_issued_by_another_node(mesh: Mesh) -> None:
    """Its token id is not one A issued: turned away before any crypto."""
    stranger = NodeIdentity.generate()
    their_own = create_invite(stranger, ttl_ms=3_600_000)
    mid, data = mesh.seal(stranger, invite=their_own.raw)
    mesh.expect_rejected(mid, data, "invite_unknown")


def test_first_contact_naming_a_token_id_without_its_token(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a relay could try with a token id it saw in a header: name A's
    active invite in the clear, but seal something else than its token."""
    active = decode_invite(mesh.a.invite())
    monkeypatch.setattr(env, "token_id_of", lambda _raw: active.token_id)
    mid, data = mesh.seal(NodeIdentity.generate(), invite=b"\x12\x34 not a signed invite")
    mesh.expect_rejected(mid, data, "invite_invalid")
    other = create_invite(load(mesh.a.state_dir), ttl_ms=3_600_000)  # A's signature, another token
    mid, data = mesh.seal(NodeIdentity.generate(), invite=other.raw)
    mesh.expect_rejected(mid, data, "invite_invalid")
    assert active.token_id.hex() in {i["token_id"] for i in mesh.a.cli("invite", "list")}  # still unused
