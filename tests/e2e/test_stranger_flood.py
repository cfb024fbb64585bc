"""Strangers flooding a node (DESIGN §8 step 2): an envelope from a node that
is not a friend and names no active invite token id costs the recipient a
table lookup, never a public-key operation, with or without the ratelimit
plugin. How much CPU a flood costs is measured in ``bench/stranger_flood.py``;
here the node's answers show which step rejected each envelope.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import grpc
import pytest

from tests.harness import Node, ProcGroup
from tmax_core import envelope as env
from tmax_core import ingress
from tmax_core.clock import now_ms
from tmax_core.crypto import parse_node_id
from tmax_core.errors import EnvelopeError
from tmax_core.peer import DELIVER
from tmax_core.proto import mesh_pb2

FLOOD = 300


def _field(number: int, value: bytes) -> bytes:
    """A length-delimited protobuf field, written by hand so that the forged
    header can carry fields whatever the current schema calls them."""
    return bytes([number << 3 | 2, len(value)]) + value


def forged_stranger_envelope(to: bytes) -> tuple[bytes, bytes]:
    """A structurally valid envelope from a fresh, made-up node id with junk in
    the invite fields (a token in the header of old versions, a token id in the
    current one), a key that is not the sender's and a signature of noise."""
    message_id = os.urandom(16)
    header = mesh_pb2.EnvelopeHeader(
        version=env.VERSION,
        message_id=message_id,
        from_node_id=os.urandom(20),
        to_node_id=to,
        timestamp_ms=now_ms(),
        sender_public_key=b"\x02" + os.urandom(32),
        ephemeral_public_key=b"\x03" + os.urandom(32),
    ).SerializeToString()
    header += _field(8, os.urandom(120)) + _field(9, os.urandom(16)) + _field(10, os.urandom(32))
    envelope = mesh_pb2.Envelope(header=header, ciphertext=os.urandom(48), signature=os.urandom(65))
    return message_id, envelope.SerializeToString()


@pytest.fixture(params=["with ratelimit", "without ratelimit"])
def target(request: pytest.FixtureRequest, procs: ProcGroup) -> Iterator[Node]:
    env_vars = {} if request.param == "with ratelimit" else {"TMAX_MESH_DISABLE_PLUGINS": "ratelimit"}
    yield procs.node("a", "--peer-listen", "127.0.0.1:0", env=env_vars)


def test_stranger_floods_junk_invites_to_make_the_node_do_crypto(target: Node) -> None:
    """Forged stranger envelopes with rotating ids are rejected as
    ``invite_unknown`` before any crypto (not ``id_key_mismatch``,
    ``bad_signature`` or ``invite_invalid``, which come after it), and the
    node signs only a few answers to strangers: signing is a public-key
    operation too."""
    info = target.cli("node", "info")
    a_id, a_pub = parse_node_id(info["node_id"]), bytes.fromhex(info["public_key"])
    signed: list[mesh_pb2.AckBody] = []
    started = time.monotonic()
    with grpc.insecure_channel(target.ready["peer_listen"]) as channel:
        deliver = channel.unary_unary(DELIVER)
        for _ in range(FLOOD):
            message_id, data = forged_stranger_envelope(a_id)
            answer = deliver(data, timeout=10)
            try:
                body = env.verify_ack(
                    answer,
                    expected_signer_public_key=a_pub,
                    expected_signer_node_id=a_id,
                    sender_node_id=env.parse(data, 1 << 20).from_node_id,
                    message_id=message_id,
                    envelope_hashes=[env.envelope_hash(data)],
                )
            except EnvelopeError:
                continue  # unsigned: the node spent no signature on this stranger
            signed.append(body)
    elapsed = time.monotonic() - started
    reasons = {body.reason for body in signed}
    assert reasons <= {"unknown_sender", "invite_unknown"}, reasons
    budget = ingress.UNAUTHENTICATED_ANSWER_BURST + ingress.UNAUTHENTICATED_ANSWER_RATE * elapsed
    assert 0 < len(signed) <= budget, (len(signed), budget)
    assert target.cli("inbox", "list") == [] and target.cli("friends", "list") == []
