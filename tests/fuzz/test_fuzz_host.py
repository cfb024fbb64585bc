"""Fuzz a real ``tmax-host`` through its Connect stream: arbitrary bytes as
frames (before and after registration) and protobuf-valid ``NodeFrame``s
with odd field values.

Contract: after each fuzzed frame the host either answers with an ``Error``
frame whose code it documents and keeps the stream (a following ping gets its
pong), or ends the stream with a status; it never crashes, never hangs, logs
no traceback, keeps its memory bounded, and afterwards still relays between
two well-behaved nodes.
"""

from __future__ import annotations

import itertools
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.common import (
    UNCAPPED_SOURCE,
    befriend_api,
    budget,
    edits,
    first_traceback,
    mutate,
    tracebacks,
    vm_rss_kb,
)
from tests.fuzz.hostwire import END_CODES, ERROR_CODES, End, RawStream, channel, stream
from tests.harness import Host, ProcGroup, wait_for
from tmax_core import envelope as env
from tmax_core.client import JsonNodeClient
from tmax_core.identity import NodeIdentity
from tmax_mesh_relay.proto import host_pb2

F = host_pb2.NodeFrame
PROBE_TIMEOUT_S = 5.0
_tokens = itertools.count(1)
# A few fixed identities: registering is cheap, but key generation per example is not free.
IDENTITIES = [NodeIdentity.generate() for _ in range(4)]


@dataclass
class HostTarget:
    host: Host
    chan: grpc.Channel
    rss_start_kb: int
    frames: int = 0


@pytest.fixture(scope="module")
def target(module_procs: ProcGroup) -> Iterator[HostTarget]:
    # Thousands of streams from one address: the per-address caps are not what is fuzzed.
    host = module_procs.host("fuzzhost", "--register-timeout", "5s", *UNCAPPED_SOURCE)
    chan = channel(host.listen)
    with stream(chan) as s:  # warm up (gRPC and the host's first connection) before measuring
        s.register(IDENTITIES[0], url=host.url)
    t = HostTarget(host, chan, vm_rss_kb(host.pid))
    try:
        yield t
    finally:
        chan.close()


def probe(s: RawStream, host: Host) -> End | None:
    """Ping after the fuzzed frame: None if the stream still answers, else how it ended.
    Every frame seen on the way must be a documented one."""
    token = next(_tokens)
    s.send(F(ping=host_pb2.Ping(time_ms=token)))
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    while True:
        try:
            item = s.recv(max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError("the host neither answered nor closed the stream (hang?)") from None
        if isinstance(item, End):
            assert item.code in END_CODES, item
            assert host.alive(), host.log()
            return item
        kind = item.WhichOneof("frame")
        if kind == "error":
            assert item.error.code in ERROR_CODES, item
        elif kind == "pong" and item.pong.time_ms == token:
            return None
        else:
            assert kind in ("pong", "queued", "lookup_result", "deliver", "ack"), item


def fuzz_after_registration(
    t: HostTarget, frame: bytes | F, identity: NodeIdentity = IDENTITIES[1]
) -> End | None:
    with stream(t.chan) as s:
        s.register(identity, url=t.host.url)
        s.send(frame)
        t.frames += 1
        return probe(s, t.host)


# -- arbitrary bytes --------------------------------------------------------------------------


@budget(400)
@given(st.binary(max_size=2000))
def test_first_frame_arbitrary_bytes(target: HostTarget, data: bytes) -> None:
    """Before registering: anything but a valid Register ends the stream."""
    with stream(target.chan) as s:
        s.expect("challenge")
        s.send(data)
        target.frames += 1
        ended = probe(s, target.host)
    assert ended is not None, "an unregistered stream answered a ping"


@budget(400)
@given(st.binary(max_size=2000))
def test_registered_arbitrary_bytes(target: HostTarget, data: bytes) -> None:
    fuzz_after_registration(target, data)


# -- odd field values -------------------------------------------------------------------------

ids = st.one_of(
    st.binary(max_size=40),
    st.binary(min_size=20, max_size=20),
    st.sampled_from([i.node_id for i in IDENTITIES]),
)


def _envelope(sender: NodeIdentity, to: NodeIdentity, ops: list | None) -> bytes:
    data = env.seal(
        sender,
        to_node_id=to.node_id,
        to_public_key=to.public_key,
        scope="message",
        content_type="text/plain",
        body=b"x",
    )
    return mutate(data, ops) if ops else data


envelopes = st.one_of(
    st.binary(max_size=600),
    st.tuples(st.sampled_from(range(4)), st.sampled_from(range(4)), st.none() | edits).map(
        lambda a: _envelope(IDENTITIES[a[0]], IDENTITIES[a[1]], a[2])
    ),
)

frames = st.one_of(
    st.builds(lambda to, e: F(relay_send=host_pb2.RelaySend(to=to, envelope=e)), ids, envelopes),
    st.builds(
        lambda to, mid, ack: F(ack_send=host_pb2.AckSend(to=to, message_id=mid, ack=ack)),
        ids,
        st.binary(max_size=40),
        st.one_of(st.binary(max_size=300), st.just(b"a" * (env.MAX_ACK_BYTES + 1))),
    ),
    st.builds(lambda t: F(ping=host_pb2.Ping(time_ms=t)), st.integers(0, 2**64 - 1)),
    st.builds(lambda t: F(pong=host_pb2.Pong(time_ms=t)), st.integers(0, 2**64 - 1)),
    st.builds(lambda target: F(lookup=host_pb2.Lookup(target=target)), ids),
    st.builds(
        lambda allow: F(set_lookup_allow=host_pb2.SetLookupAllow(node_ids=allow)),
        st.lists(ids, max_size=50) | st.just([b"\x01" * 20] * 10_001),
    ),
    st.builds(
        lambda nid, pub, eps, allow, sig: F(
            register=host_pb2.Register(
                node_id=nid, public_key=pub, endpoints=eps, lookup_allow=allow, signature=sig
            )
        ),
        ids,
        st.binary(max_size=70),
        st.lists(st.text(max_size=300), max_size=10),
        st.lists(ids, max_size=5),
        st.binary(max_size=70),
    ),
    st.just(F()),
)


@budget(500)
@given(frames)
def test_registered_odd_frames(target: HostTarget, frame: F) -> None:
    ended = fuzz_after_registration(target, frame)
    # Every odd but well-formed frame gets an Error frame; the stream stays usable.
    assert ended is None, (frame, ended)


@budget(200)
@given(
    st.builds(
        lambda nid, pub, eps, allow, sig: F(
            register=host_pb2.Register(
                node_id=nid, public_key=pub, endpoints=eps, lookup_allow=allow, signature=sig
            )
        ),
        ids,
        st.one_of(st.binary(max_size=70), st.sampled_from([i.public_key for i in IDENTITIES])),
        st.lists(st.text(max_size=300), max_size=10),
        st.lists(ids, max_size=5),
        st.binary(max_size=70),
    )
)
def test_odd_registrations(target: HostTarget, frame: F) -> None:
    """Registrations with odd fields (never validly signed): refused, stream ended."""
    with stream(target.chan) as s:
        s.expect("challenge")
        s.send(frame)
        target.frames += 1
        ended = probe(s, target.host)
    assert ended is not None and ended.code == "UNAUTHENTICATED", ended


@budget(100)
@given(st.lists(st.one_of(frames, st.binary(max_size=300)), min_size=2, max_size=25))
def test_registered_frame_sequences(target: HostTarget, items: list) -> None:
    """Several odd frames back to back on one registered stream."""
    with stream(target.chan) as s:
        s.register(IDENTITIES[2], url=target.host.url)
        for item in items:
            s.send(item)
        target.frames += len(items)
        probe(s, target.host)


def test_after_campaign_host_serves_nodes(target: HostTarget, module_procs: ProcGroup) -> None:
    """The host is up, logged no traceback, grew little, and relays for real nodes."""
    assert target.host.alive()
    growth_mb = (vm_rss_kb(target.host.pid) - target.rss_start_kb) / 1024
    print(f"host RSS growth after {target.frames} fuzzed frames: {growth_mb:.1f} MB")
    assert growth_mb < 50, growth_mb
    a = module_procs.node("a", "--relay", target.host.url)
    b = module_procs.node("b", "--relay", target.host.url)
    befriend_api(a, b)
    with JsonNodeClient(a.ready["socket"]) as c:
        sent = c.msg_send(b.node_id, b"after the fuzz")
        assert c.msg_wait(sent["message_id"], 20)["status"] == "delivered"
    with JsonNodeClient(b.ready["socket"]) as c:
        wait_for(lambda: [m["body"] for m in c.inbox_list()] == ["after the fuzz"], what="the message")
    log = target.host.log_path.read_text(errors="replace")
    assert tracebacks(log) == 0, first_traceback(log)
