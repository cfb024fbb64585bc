"""Fuzz the ingress pipeline through a real ``tmax-node``'s PeerService:
arbitrary bytes, mutated real envelopes from a friend, and odd batches on the
raw gRPC methods (``/tmax_mesh.v1.PeerService/Deliver``, ``DeliverBatch`` and
``DeliverStream``).

Contract: every call is answered with an ack signed by the node (rejections
carry a documented reason code), or with an empty answer where nothing in it
authenticated as a friend and the node's budget of signed answers to
strangers is spent (``tmax_core.ingress``), or, for a batch that is not an
``EnvelopeBatch`` (a stream request that is not a ``StreamedBatch``),
``INVALID_ARGUMENT``; frames beyond the gRPC size limit get
``RESOURCE_EXHAUSTED``. Never an internal error, never a hang, no traceback
in the node's log, bounded memory, and the node keeps accepting its friend's
genuine messages afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.common import budget, edits, first_traceback, mutate, tracebacks, vm_rss_kb
from tests.harness import Node, ProcGroup, wait_for
from tmax_core import envelope as env
from tmax_core import invites
from tmax_core.client import JsonNodeClient
from tmax_core.errors import EnvelopeError, Reason
from tmax_core.identity import NodeIdentity
from tmax_core.proto import mesh_pb2

DELIVER = "/tmax_mesh.v1.PeerService/Deliver"
DELIVER_BATCH = "/tmax_mesh.v1.PeerService/DeliverBatch"
DELIVER_STREAM = "/tmax_mesh.v1.PeerService/DeliverStream"
CALL_TIMEOUT_S = 10.0
REASONS = {v for k, v in vars(Reason).items() if k.isupper()}
STATUSES = {mesh_pb2.ACK_STATUS_ACCEPTED, mesh_pb2.ACK_STATUS_DUPLICATE, mesh_pb2.ACK_STATUS_REJECTED}
NODE_ENV = {
    # The pipeline, not the rate limiter, is under test: open the buckets up.
    "TMAX_MESH_RATELIMIT_SOURCE_RATE": "100000",
    "TMAX_MESH_RATELIMIT_SOURCE_BURST": "100000",
    "TMAX_MESH_RATELIMIT_RATE": "100000",
    "TMAX_MESH_RATELIMIT_BURST": "100000",
}


@dataclass
class Target:
    node: Node
    public_key: bytes
    node_id: bytes
    alice: NodeIdentity
    channel: grpc.Channel
    deliver: grpc.UnaryUnaryMultiCallable
    deliver_batch: grpc.UnaryUnaryMultiCallable
    rss_start_kb: int

    def seal(self, body: bytes = b"fuzz", **kw: object) -> bytes:
        return env.seal(
            self.alice,
            to_node_id=self.node_id,
            to_public_key=self.public_key,
            scope="message",
            content_type="text/plain",
            body=body,
            **kw,  # type: ignore[arg-type]
        )

    def ack(self, answer: bytes) -> mesh_pb2.AckBody | None:
        """The answer must be a SignedAck by the node (its body is returned) or
        empty (None: a stranger beyond the answer budget)."""
        if answer == b"":
            return None
        signed = mesh_pb2.SignedAck.FromString(answer)
        body = mesh_pb2.AckBody.FromString(signed.body)
        assert body.from_node_id == self.node_id
        assert body.status in STATUSES, body
        if body.status == mesh_pb2.ACK_STATUS_REJECTED:
            assert body.reason in REASONS, body.reason
        return body


@pytest.fixture(scope="module")
def target(module_procs: ProcGroup) -> Iterator[Target]:
    node = module_procs.node("target", "--peer-listen", "127.0.0.1:0", env=NODE_ENV)
    with JsonNodeClient(node.ready["socket"]) as c:
        info = c.node_info()
        token = c.invite_create(uses=1)["token"]
    alice = NodeIdentity.generate()
    invite = invites.decode_invite(token)
    channel = grpc.insecure_channel(
        node.ready["peer_listen"], options=[("grpc.max_send_message_length", 8 * 1024 * 1024)]
    )
    t = Target(
        node=node,
        public_key=bytes.fromhex(info["public_key"]),
        node_id=invite.inviter_node_id,
        alice=alice,
        channel=channel,
        deliver=channel.unary_unary(DELIVER),
        deliver_batch=channel.unary_unary(DELIVER_BATCH),
        rss_start_kb=0,
    )
    # First contact: Alice becomes a friend, so mutated envelopes reach the deep checks.
    first = t.seal(b"hello", invite=invite.raw)
    assert status(t.ack(t.deliver(first, timeout=CALL_TIMEOUT_S))) == mesh_pb2.ACK_STATUS_ACCEPTED
    t.rss_start_kb = vm_rss_kb(node.pid)
    try:
        yield t
    finally:
        channel.close()


def status(body: mesh_pb2.AckBody | None) -> int | None:
    return None if body is None else body.status


def batch_entries(target: Target, answer: bytes) -> dict[bytes, mesh_pb2.AckEntry]:
    """The entries of a batch answer, checked to be signed by the node."""
    sender = mesh_pb2.AckBatchBody.FromString(mesh_pb2.SignedAck.FromString(answer).body).to_node_id
    return env.verify_ack_batch(
        answer,
        expected_signer_public_key=target.public_key,
        expected_signer_node_id=target.node_id,
        sender_node_id=sender,
        max_bytes=1 << 21,
    )


def batch_sender(envelopes: list[bytes]) -> bytes | None:
    """Whose batch the node takes it for: the sender of its first envelope that parses."""
    for data in envelopes:
        try:
            return env.parse(data, 1 << 21).from_node_id
        except EnvelopeError:
            continue
    return None


def call(fn: grpc.UnaryUnaryMultiCallable, payload: bytes) -> bytes | grpc.StatusCode:
    try:
        return fn(payload, timeout=CALL_TIMEOUT_S)
    except grpc.RpcError as err:
        assert err.code() not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), err
        assert err.code() != grpc.StatusCode.DEADLINE_EXCEEDED, "the node hung on this input"
        return err.code()


@budget(600)
@given(st.binary(max_size=3000))
def test_deliver_arbitrary_bytes(target: Target, data: bytes) -> None:
    assert status(target.ack(call(target.deliver, data))) in (None, mesh_pb2.ACK_STATUS_REJECTED)


@budget(500)
@given(edits, st.binary(max_size=64))
def test_deliver_mutated_friend_envelopes(target: Target, ops: list, text: bytes) -> None:
    """A fresh genuine envelope from the friend, then edited: refused with a reason,
    or accepted only if the signed parts were untouched."""
    original = target.seal(text)
    data = mutate(original, ops)
    if status(target.ack(call(target.deliver, data))) == mesh_pb2.ACK_STATUS_ACCEPTED:
        a, b = env.parse(data, 1 << 21), env.parse(original, 1 << 21)
        assert (a.header_bytes, a.ciphertext) == (b.header_bytes, b.ciphertext)


@budget(300)
@given(st.binary(max_size=3000))
def test_deliver_batch_arbitrary_bytes(target: Target, data: bytes) -> None:
    answer = call(target.deliver_batch, data)
    if isinstance(answer, grpc.StatusCode):
        assert answer == grpc.StatusCode.INVALID_ARGUMENT
        return
    if answer:
        batch_entries(target, answer)


@budget(150)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=400),
            edits.map(lambda ops: ("mutated", ops)),
            st.just("genuine"),
            st.just("other-sender"),
        ),
        max_size=12,
    )
)
def test_deliver_batch_mixed(target: Target, items: list) -> None:
    """Batches mixing garbage, edited, genuine and foreign envelopes: one signed
    batch ack whose entries use documented statuses and reasons."""
    stranger = NodeIdentity.generate()
    envelopes = []
    for item in items:
        if item == "genuine":
            envelopes.append(target.seal(b"batched"))
        elif item == "other-sender":
            envelopes.append(
                env.seal(
                    stranger,
                    to_node_id=target.node_id,
                    to_public_key=target.public_key,
                    scope="message",
                    content_type="text/plain",
                    body=b"who am I",
                )
            )
        elif isinstance(item, tuple):
            envelopes.append(mutate(target.seal(b"m"), item[1]))
        else:
            envelopes.append(item)
    answer = call(target.deliver_batch, mesh_pb2.EnvelopeBatch(envelopes=envelopes).SerializeToString())
    assert not isinstance(answer, grpc.StatusCode), answer
    if answer == b"":  # nothing in it authenticated, and the budget for such answers is spent
        assert "genuine" not in items or batch_sender(envelopes) != target.alice.node_id
        return
    for entry in batch_entries(target, answer).values():
        assert entry.status in STATUSES
        if entry.status == mesh_pb2.ACK_STATUS_REJECTED:
            assert entry.reason in REASONS, entry.reason


@budget(150)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=300),
            st.tuples(st.integers(0, 2**64 - 1), st.lists(st.sampled_from(["genuine", "junk"]), max_size=4)),
        ),
        max_size=6,
    )
)
def test_deliver_stream_mixed(target: Target, items: list) -> None:
    """Streams of arbitrary requests and batches: each StreamedBatch is answered
    with its own id and a batch ack signed by the node; a request that is not a
    StreamedBatch ends the stream with INVALID_ARGUMENT (earlier answers may be
    missing then, never wrong)."""
    requests, sent_ids = [], []
    for item in items:
        if isinstance(item, bytes):
            raw = item
        else:
            batch_id, kinds = item
            envelopes = [target.seal(b"streamed") if k == "genuine" else b"junk" for k in kinds]
            raw = mesh_pb2.StreamedBatch(id=batch_id, envelopes=envelopes).SerializeToString()
        requests.append(raw)
        try:
            sent_ids.append(mesh_pb2.StreamedBatch.FromString(raw).id)
        except Exception:
            sent_ids.append(None)
    answers, code = [], None
    try:
        for raw in target.channel.stream_stream(DELIVER_STREAM)(iter(requests), timeout=CALL_TIMEOUT_S):
            answers.append(mesh_pb2.StreamedAck.FromString(raw))
    except grpc.RpcError as err:
        code = err.code()
    if None in sent_ids:
        assert code == grpc.StatusCode.INVALID_ARGUMENT, code
    else:
        assert code is None, code
        assert sorted(a.id for a in answers) == sorted(sent_ids)
    for answer in answers:
        assert answer.id in sent_ids
        if answer.ack:  # empty: a batch with nothing genuine, beyond the answer budget
            batch_entries(target, answer.ack)


def test_oversized_and_after_campaign(target: Target) -> None:
    """Beyond the size limits; then the node still takes its friend's messages,
    logged no traceback, and its memory stayed bounded."""
    too_big = b"\x0a" + b"\xff" * (1024 * 1024 + 70 * 1024)
    assert call(target.deliver, too_big) == grpc.StatusCode.RESOURCE_EXHAUSTED
    body = target.ack(call(target.deliver, b"\x00" * (1024 * 1024 + 1000)))  # in gRPC's limit, over ours
    if body is not None:  # (the campaign may have spent the budget of answers to strangers)
        assert (body.status, body.reason) == (mesh_pb2.ACK_STATUS_REJECTED, Reason.TOO_LARGE)
    genuine = target.seal(b"still works")
    assert status(target.ack(call(target.deliver, genuine))) == mesh_pb2.ACK_STATUS_ACCEPTED
    assert status(target.ack(call(target.deliver, genuine))) == mesh_pb2.ACK_STATUS_DUPLICATE
    with JsonNodeClient(target.node.ready["socket"]) as c:
        wait_for(lambda: any(m["body"] == "still works" for m in c.inbox_list()), what="the genuine message")
    assert target.node.alive()
    growth_mb = (vm_rss_kb(target.node.pid) - target.rss_start_kb) / 1024
    print(f"node RSS growth over the peer campaign: {growth_mb:.1f} MB")
    assert growth_mb < 50, growth_mb
    log = target.node.log_path.read_text(errors="replace")
    assert tracebacks(log) == 0, first_traceback(log)
