import base64
import contextlib
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tmax_core import crypto, invites
from tmax_core.crypto import Domain
from tmax_core.durations import parse_duration_ms
from tmax_core.errors import InviteError, InviteReason, UsageError
from tmax_core.identity import NodeIdentity
from tmax_core.model import RateLimit
from tmax_core.proto import mesh_pb2

ALICE = NodeIdentity.generate()
EVE = NodeIdentity.generate()
NOW = 1_700_000_000_000
KNOWN = {"message", "files"}


def _make(**kw):
    kw.setdefault("ttl_ms", 3_600_000)
    kw.setdefault("now_ms", NOW)
    return invites.create_invite(ALICE, **kw)


def _code(text, now=NOW, known=KNOWN):
    with pytest.raises(InviteError) as exc:
        invites.parse_invite(text, now_ms=now, known_scopes=known)
    assert "\n" not in str(exc.value)
    return exc.value.code


def _token(body: mesh_pb2.InviteBody, signer: NodeIdentity, *, body_bytes: bytes | None = None) -> str:
    bb = body.SerializeToString() if body_bytes is None else body_bytes
    raw = mesh_pb2.SignedInvite(body=bb, signature=signer.sign(Domain.INVITE, bb)).SerializeToString()
    return invites.encode_token(raw)


def _body(inv):
    return mesh_pb2.InviteBody.FromString(mesh_pb2.SignedInvite.FromString(inv.raw).body)


def test_round_trip_all_fields():
    inv = _make(
        max_uses=3,
        scopes=["message", "files"],
        relay_hosts=["grpcs://relay.example:443"],
        endpoints=["203.0.113.5:7001"],
        rate_limit=RateLimit(rate_per_s=2.5, burst=10),
        alias="alice",
    )
    assert inv.token.startswith("tmaxinv1.") and "=" not in inv.token and "\n" not in inv.token
    got = invites.parse_invite(inv.token, now_ms=NOW + 1, known_scopes=KNOWN)
    assert got == inv
    assert got.inviter_node_id == ALICE.node_id and got.inviter_public_key == ALICE.public_key
    assert got.inviter_node_id_hex == ALICE.node_id_hex
    assert len(got.token_id) == 16
    assert got.relay_hosts == ["grpcs://relay.example:443"] and got.endpoints == ["203.0.113.5:7001"]
    assert got.scopes == ["message", "files"]
    assert got.rate_limit == RateLimit(2.5, 10)
    assert (got.issued_at_ms, got.expires_at_ms, got.max_uses, got.alias) == (
        NOW,
        NOW + 3_600_000,
        3,
        "alice",
    )


def test_defaults():
    inv = _make()
    assert inv.scopes == ["message"] and inv.max_uses == 1 and inv.rate_limit is None and inv.alias is None
    assert inv.relay_hosts == [] and inv.endpoints == []
    assert _make().token_id != inv.token_id


def test_link_form_and_whitespace():
    inv = _make()
    for text in [
        inv.link,
        f"  {inv.token}\n",
        f"\t{inv.link} ",
        "tmax://invite/" + inv.token[len("tmaxinv1.") :],
    ]:
        assert invites.parse_invite(text, now_ms=NOW, known_scopes=KNOWN).token_id == inv.token_id


def test_decode_signed_invite_from_bytes():
    inv = _make()
    got = invites.decode_signed_invite(inv.raw)
    assert got == inv
    with pytest.raises(InviteError) as exc:
        invites.decode_signed_invite(inv.raw[:-10])
    assert exc.value.code == InviteReason.TRUNCATED
    with pytest.raises(InviteError):
        invites.decode_signed_invite(b"\xff" * 20)


@pytest.mark.parametrize(
    "text", ["", "   ", "hello", "tmaxinv2.abc", "TMAXINV1.abc", "https://x/invite", "0x1234"]
)
def test_bad_prefix(text):
    assert _code(text) == InviteReason.BAD_PREFIX


@pytest.mark.parametrize("payload", ["ab!d", "abc def", "a+b/", "é" * 8, "abcd.efgh"])
def test_bad_base64(payload):
    assert _code("tmaxinv1." + payload) == InviteReason.BAD_BASE64


def test_truncated_at_many_points():
    token = _make(relay_hosts=["grpc://relay:7000"]).token
    prefix_len = len("tmaxinv1.")
    cuts = [*range(prefix_len, len(token), 7), len(token) - 1, len(token) - 2, len(token) - 3]
    for cut in cuts:
        assert _code(token[:cut]) == InviteReason.TRUNCATED, cut


@pytest.mark.parametrize("payload", ["AAAA", "_____w", "garbagegarbage", "CgA", "EgA"])
def test_garbage_payload(payload):
    assert _code("tmaxinv1." + payload) in (InviteReason.MALFORMED, InviteReason.TRUNCATED)


def test_garbage_is_malformed_not_truncated():
    raw = mesh_pb2.SignedInvite(body=b"\xff\xff\xff", signature=b"s" * 65).SerializeToString()
    assert _code(invites.encode_token(raw)) == InviteReason.MALFORMED
    assert _code(invites.encode_token(b"\x18\x01")) == InviteReason.MALFORMED  # unknown field 3


def test_overlong_text():
    assert _code("tmaxinv1." + "A" * 20000) == InviteReason.MALFORMED


def test_expired():
    inv = _make(ttl_ms=1000)
    invites.parse_invite(inv.token, now_ms=NOW + 999, known_scopes=KNOWN)
    assert _code(inv.token, now=NOW + 1000) == InviteReason.EXPIRED
    # decode alone does not check expiry
    assert invites.decode_invite(inv.token).token_id == inv.token_id


def test_unknown_scope_named():
    inv = _make(scopes=["message", "shell"])
    with pytest.raises(InviteError) as exc:
        invites.parse_invite(inv.token, now_ms=NOW, known_scopes=KNOWN)
    assert exc.value.code == InviteReason.UNKNOWN_SCOPE and "shell" in str(exc.value)


def test_tampered_body():
    inv = _make()
    signed = mesh_pb2.SignedInvite.FromString(inv.raw)
    body = bytearray(signed.body)
    pos = bytes(body).index(inv.token_id)
    body[pos] ^= 0x01
    signed.body = bytes(body)
    assert _code(invites.encode_token(signed.SerializeToString())) == InviteReason.BAD_SIGNATURE


def test_tampered_fields_re_encoded():
    inv = _make()
    for change in [
        lambda b: setattr(b, "expires_at_ms", b.expires_at_ms + 10**9),
        lambda b: b.scopes.append("files"),
        lambda b: setattr(b, "max_uses", 0),
    ]:
        body = _body(inv)
        change(body)
        signed = mesh_pb2.SignedInvite.FromString(inv.raw)
        signed.body = body.SerializeToString()
        assert _code(invites.encode_token(signed.SerializeToString())) == InviteReason.BAD_SIGNATURE


def test_signed_by_another_key():
    body = _body(_make())
    assert _code(_token(body, EVE)) == InviteReason.BAD_SIGNATURE


def test_node_id_not_matching_key():
    body = _body(_make())
    body.inviter_node_id = EVE.node_id
    assert _code(_token(body, ALICE)) == InviteReason.ID_MISMATCH
    # Eve claiming Alice's id with her own key, signed by herself.
    body = _body(_make())
    body.inviter_public_key = EVE.public_key
    assert _code(_token(body, EVE)) == InviteReason.ID_MISMATCH


def test_version():
    body = _body(_make())
    body.version = 2
    assert _code(_token(body, ALICE)) == InviteReason.VERSION


@pytest.mark.parametrize(
    "change",
    [
        lambda b: setattr(b, "token_id", b"x" * 15),
        lambda b: setattr(b, "token_id", b"x" * 10_000),
        lambda b: setattr(b, "inviter_node_id", b"x" * 21),
        lambda b: setattr(b, "inviter_public_key", b"\x02" + b"\xff" * 32),
        lambda b: setattr(b, "inviter_public_key", b"\x02" * 65),
        lambda b: b.ClearField("scopes"),
        lambda b: b.scopes.append("s" * 100),
        lambda b: b.scopes.append(""),
        lambda b: b.relay_hosts.extend(["grpc://h:1"] * 40),
        lambda b: b.relay_hosts.append("h" * 600),
        lambda b: setattr(b, "alias", "a" * 500),
        lambda b: setattr(b, "expires_at_ms", b.issued_at_ms),
        lambda b: setattr(b.rate_limit, "rate_per_s", math.nan),
        lambda b: setattr(b.rate_limit, "rate_per_s", -1.0),
    ],
)
def test_absurd_fields_malformed(change):
    body = _body(_make())
    change(body)
    assert _code(_token(body, ALICE)) == InviteReason.MALFORMED


def test_bad_signature_length_malformed():
    body = _body(_make()).SerializeToString()
    raw = mesh_pb2.SignedInvite(body=body, signature=b"\x00" * 64).SerializeToString()
    assert _code(invites.encode_token(raw)) == InviteReason.MALFORMED


def test_missing_signature_truncated():
    body = _body(_make()).SerializeToString()
    raw = mesh_pb2.SignedInvite(body=body).SerializeToString()
    assert _code(invites.encode_token(raw)) == InviteReason.TRUNCATED


def test_non_str_input():
    for bad in (None, b"tmaxinv1.abc", 42):
        with pytest.raises(InviteError):
            invites.decode_invite(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kw",
    [
        {"ttl_ms": 0},
        {"ttl_ms": -5},
        {"max_uses": -1},
        {"scopes": []},
        {"scopes": [""]},
        {"relay_hosts": ["ok", 5]},
        {"rate_limit": RateLimit(0, 1)},
        {"rate_limit": RateLimit(1, 0)},
        {"ttl_ms": 2**64},
    ],
)
def test_create_invite_validation(kw):
    with pytest.raises(UsageError):
        _make(**kw)


def test_unlimited_uses():
    assert invites.decode_invite(_make(max_uses=0).token).max_uses == 0


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=400))
def test_arbitrary_text_only_invite_error(text):
    with contextlib.suppress(InviteError):
        invites.parse_invite(text, now_ms=NOW, known_scopes=KNOWN)


B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@settings(max_examples=1000, deadline=None)
@given(
    st.text(alphabet=B64URL, max_size=400),
    st.sampled_from(["tmaxinv1.", "tmax://invite/", "tmax://invite/tmaxinv1."]),
)
def test_arbitrary_base64_only_invite_error(payload, prefix):
    with contextlib.suppress(InviteError):
        invites.parse_invite(prefix + payload, now_ms=NOW, known_scopes=KNOWN)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_encoded_only_invite_error(raw):
    text = "tmaxinv1." + base64.urlsafe_b64encode(raw).decode().rstrip("=")
    with contextlib.suppress(InviteError):
        invites.parse_invite(text, now_ms=NOW, known_scopes=KNOWN)
    with contextlib.suppress(InviteError):
        invites.decode_signed_invite(raw)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_token_only_invite_error(data):
    raw = bytearray(_make(relay_hosts=["grpc://r:1"]).raw)
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] = data.draw(st.integers(0, 255))
    try:
        got = invites.decode_signed_invite(bytes(raw))
    except InviteError:
        return
    assert got.inviter_node_id == ALICE.node_id  # only a no-op change can survive


def test_node_id_helpers_accept_invite_ids():
    inv = _make()
    assert crypto.parse_node_id(inv.inviter_node_id_hex) == ALICE.node_id


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("30s", 30_000),
        ("15m", 900_000),
        ("24h", 86_400_000),
        ("7d", 604_800_000),
        ("90", 90_000),
        (" 2H ", 7_200_000),
        ("500ms", 500),
        ("1w", 604_800_000),
        ("0", 0),
        (45, 45_000),
    ],
)
def test_parse_duration(text, ms):
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "s", "-5s", "1.5h", "10y", "h24", "1 2s", None, True, -1, "9" * 30])
def test_parse_duration_rejects(text):
    with pytest.raises(UsageError):
        parse_duration_ms(text)
