"""Relay protocol helpers: the registration signature, URLs, endpoints, the token bucket."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmax_core.identity import NodeIdentity
from tmax_core.tokenbucket import TokenBucket
from tmax_mesh_relay import wire
from tmax_mesh_relay.proto import host_pb2

HOST_ID = b"host-1"
URL = "grpc://relay.example.org:7447"
HOST = wire.HostIdentity(HOST_ID, [URL])


def challenge(nonce: bytes = b"n" * 32, host_id: bytes = HOST_ID) -> host_pb2.Challenge:
    return host_pb2.Challenge(nonce=nonce, host_id=host_id)


def test_register_round_trip_and_allow_order_does_not_matter() -> None:
    ident = NodeIdentity.generate()
    friends = [NodeIdentity.generate().node_id for _ in range(3)]
    reg = wire.make_register(ident, challenge(), ["127.0.0.1:7000"], friends, relay_url=URL)
    reg.lookup_allow[:] = list(reversed(friends))
    wire.verify_register(reg, HOST, b"n" * 32, max_allow=10)


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda r, other: setattr(r, "signature", bytes(65)), "bad_signature"),
        (lambda r, other: r.endpoints.append("10.0.0.1:1"), "bad_signature"),
        (lambda r, other: r.lookup_allow.append(other.node_id), "bad_signature"),
        (lambda r, other: setattr(r, "node_id", other.node_id), "id_key_mismatch"),
        (lambda r, other: setattr(r, "public_key", other.public_key), "id_key_mismatch"),
        (lambda r, other: setattr(r, "public_key", b"\x02" + bytes(32)), "id_key_mismatch"),
        (lambda r, other: setattr(r, "node_id", b"short"), "bad_registration"),
        (lambda r, other: r.lookup_allow.append(b"short"), "bad_registration"),
        (lambda r, other: r.endpoints.extend(["h:1"] * 33), "bad_registration"),
        (lambda r, other: r.endpoints.append("unix:/run/x.sock"), "bad_registration"),
        (lambda r, other: r.endpoints.append("unix:1234"), "bad_registration"),
        (lambda r, other: r.endpoints.append("239.1.2.3:7000"), "bad_registration"),
        (lambda r, other: setattr(r, "relay_url", "grpc://other.example.org:7447"), "wrong_url"),
        (lambda r, other: setattr(r, "relay_url", "grpcs://relay.example.org:7447"), "wrong_url"),
        (lambda r, other: setattr(r, "relay_url", ""), "wrong_url"),
        (lambda r, other: setattr(r, "relay_url", "GRPC://Relay.Example.org:7447"), "bad_signature"),
        (lambda r, other: setattr(r, "tls_cert_sha256", bytes(32)), "wrong_certificate"),
        (lambda r, other: r.endpoints.append("h" * 300 + ":1"), "bad_registration"),
    ],
)
def test_register_rejections(mutate, code: str) -> None:
    ident, other = NodeIdentity.generate(), NodeIdentity.generate()
    reg = wire.make_register(ident, challenge(), [], [], relay_url=URL)
    mutate(reg, other)
    with pytest.raises(wire.RegisterError) as info:
        wire.verify_register(reg, HOST, b"n" * 32, max_allow=10)
    assert info.value.code == code


def test_register_is_bound_to_nonce_and_host() -> None:
    ident = NodeIdentity.generate()
    reg = wire.make_register(ident, challenge(), [], [], relay_url=URL)
    for host_id, nonce in ((HOST_ID, b"m" * 32), (b"host-2", b"n" * 32)):
        with pytest.raises(wire.RegisterError, match="bad_signature"):
            wire.verify_register(reg, wire.HostIdentity(host_id, [URL]), nonce, max_allow=10)


def test_allow_list_size_is_bounded() -> None:
    ident = NodeIdentity.generate()
    allow = [NodeIdentity.generate().node_id for _ in range(3)]
    reg = wire.make_register(ident, challenge(), [], allow, relay_url=URL)
    with pytest.raises(wire.RegisterError, match="limit is 2"):
        wire.verify_register(reg, HOST, b"n" * 32, max_allow=2)


def test_endpoints_encoding_is_unambiguous() -> None:
    assert wire.endpoints_encoding(["ab", "c"]) != wire.endpoints_encoding(["a", "bc"])
    assert wire.endpoints_encoding([]) != wire.endpoints_encoding([""])


@pytest.mark.parametrize(
    ("url", "target", "tls", "loopback"),
    [
        ("grpc://127.0.0.1:7447", "127.0.0.1:7447", False, True),
        ("grpcs://relay.example.org:443", "relay.example.org:443", True, False),
        ("grpcs://relay.example.org", "relay.example.org:7447", True, False),
        ("localhost:9000", "localhost:9000", False, True),
        ("grpc://[::1]:7000", "[::1]:7000", False, True),
        ("grpc://10.1.2.3:7000/", "10.1.2.3:7000", False, False),
    ],
)
def test_parse_relay_url(url: str, target: str, tls: bool, loopback: bool) -> None:
    parsed = wire.parse_relay_url(url)
    assert (parsed.target, parsed.tls, parsed.loopback) == (target, tls, loopback)


@pytest.mark.parametrize("url", ["http://x:1", "grpc://", "grpc://h:99999", "grpc://h:1/path", "grpc://h:x"])
def test_parse_relay_url_rejects(url: str) -> None:
    with pytest.raises(ValueError, match="not a relay URL"):
        wire.parse_relay_url(url)


def test_same_host() -> None:
    assert wire.same_host("grpc://Relay.Example:7447", "relay.example")
    assert not wire.same_host("grpc://relay.example:7447", "grpcs://relay.example:7447")
    assert not wire.same_host("grpc://a:1", "not a url://")


@pytest.mark.parametrize(
    ("peer", "ip"),
    [
        ("ipv4:127.0.0.1:5000", "127.0.0.1"),
        ("ipv6:[::1]:5000", "::1"),
        ("ipv6:%5B2001:db8:1:2::5%5D:5678", "2001:db8:1:2::5"),  # as gRPC writes it
        ("unix:/tmp/s", ""),
    ],
)
def test_peer_ip(peer: str, ip: str) -> None:
    assert wire.peer_ip(peer) == ip


def test_dialable_endpoints_use_advertised_ports_only() -> None:
    assert wire.dialable_endpoints(["0.0.0.0:7000", "192.0.2.1:7001", "junk"], "198.51.100.9") == [
        "198.51.100.9:7000",
        "192.0.2.1:7001",
        "198.51.100.9:7001",
    ]
    assert wire.dialable_endpoints(["[::]:7000"], "2001:db8::1") == ["[2001:db8::1]:7000"]
    assert wire.dialable_endpoints(["127.0.0.1:7000"], "127.0.0.1") == ["127.0.0.1:7000"]
    assert wire.dialable_endpoints([], "127.0.0.1") == []


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=10, burst=2, now=0.0)
    assert bucket.take(0.0) and bucket.take(0.0) and not bucket.take(0.0)
    assert bucket.take(0.1)  # one token back after 1/rate
    paced = TokenBucket(rate=10, burst=1, now=0.0)
    assert paced.reserve(0.0) == 0.0
    assert paced.reserve(0.0) == pytest.approx(0.1)
    assert paced.reserve(0.0) == pytest.approx(0.2)  # debt accumulates: a flood waits longer
    assert paced.reserve(1.0) == 0.0  # refilled (capped at the burst)


@given(st.lists(st.text(max_size=20), max_size=5), st.lists(st.text(max_size=20), max_size=5))
def test_endpoints_encoding_injective(a: list[str], b: list[str]) -> None:
    if a != b:
        assert wire.endpoints_encoding(a) != wire.endpoints_encoding(b)


@given(st.binary(max_size=200))
def test_host_frame_parser_never_crashes_on_garbage(data: bytes) -> None:
    try:
        frame = host_pb2.NodeFrame.FromString(data)
    except Exception:
        return
    frame.WhichOneof("frame")
