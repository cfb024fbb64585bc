"""Signed invite tokens (DESIGN §6).

Text form: ``tmaxinv1.`` + base64url (no padding) of a serialized
``SignedInvite``; the link form ``tmax://invite/<token>`` is accepted too.
:func:`decode_invite` verifies structure, signature and id↔key binding;
:func:`check_invite` adds expiry and scopes. Every failure is an
:class:`InviteError` whose ``code`` is an :class:`InviteReason`.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from tmax_core import clock, crypto
from tmax_core.crypto import Domain
from tmax_core.errors import InviteError, InviteReason, UsageError
from tmax_core.identity import NodeIdentity
from tmax_core.model import DEFAULT_SCOPE, RateLimit
from tmax_core.proto import mesh_pb2

VERSION = 1
TOKEN_PREFIX = "tmaxinv1."
LINK_PREFIX = "tmax://invite/"
TOKEN_ID_LEN = 16
MAX_TEXT_LEN = 16 * 1024
MAX_LIST_ITEMS = 32
MAX_URL_LEN = 512
MAX_SCOPE_LEN = 64
MAX_ALIAS_LEN = 128
_UINT32_MAX = 2**32 - 1
_UINT64_MAX = 2**64 - 1
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")


@dataclass(frozen=True)
class Invite:
    token: str  # text form
    raw: bytes  # serialized SignedInvite
    token_id: bytes
    inviter_node_id: bytes
    inviter_public_key: bytes
    relay_hosts: list[str]
    endpoints: list[str]
    scopes: list[str]
    rate_limit: RateLimit | None
    issued_at_ms: int
    expires_at_ms: int
    max_uses: int  # 0 = unlimited until expiry
    alias: str | None

    @property
    def link(self) -> str:
        return LINK_PREFIX + self.token

    @property
    def inviter_node_id_hex(self) -> str:
        return crypto.to_checksum(self.inviter_node_id)


def _err(code: str, message: str) -> InviteError:
    return InviteError(message, code=code)


def encode_token(raw: bytes) -> str:
    return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


# ---------------------------------------------------------------- create


def _str_list(name: str, values: Iterable[str], max_len: int) -> list[str]:
    if isinstance(values, str):
        values = [values]
    out = list(values)
    if len(out) > MAX_LIST_ITEMS:
        raise UsageError(f"too many {name} (at most {MAX_LIST_ITEMS})")
    for v in out:
        if not isinstance(v, str) or not v or len(v) > max_len:
            raise UsageError(f"invalid {name} entry {v!r}")
    return out


def create_invite(
    identity: NodeIdentity,
    *,
    ttl_ms: int,
    max_uses: int = 1,
    scopes: Iterable[str] = (DEFAULT_SCOPE,),
    relay_hosts: Iterable[str] = (),
    endpoints: Iterable[str] = (),
    rate_limit: RateLimit | None = None,
    alias: str | None = None,
    now_ms: int | None = None,
) -> Invite:
    """Build and sign an invite. Recording it as issued is the caller's job."""
    if not isinstance(ttl_ms, int) or ttl_ms <= 0:
        raise UsageError(f"invite lifetime must be positive, got {ttl_ms!r}")
    if not isinstance(max_uses, int) or not 0 <= max_uses <= _UINT32_MAX:
        raise UsageError(f"invite uses must be 0 (unlimited) or a positive number, got {max_uses!r}")
    scope_list = _str_list("scopes", scopes, MAX_SCOPE_LEN)
    if not scope_list:
        raise UsageError("an invite needs at least one scope")
    hosts = _str_list("relay hosts", relay_hosts, MAX_URL_LEN)
    eps = _str_list("endpoints", endpoints, MAX_URL_LEN)
    if alias is not None and (not isinstance(alias, str) or len(alias) > MAX_ALIAS_LEN):
        raise UsageError(f"invalid alias {alias!r}")
    if rate_limit is not None and (
        not math.isfinite(rate_limit.rate_per_s)
        or rate_limit.rate_per_s <= 0
        or not 0 < rate_limit.burst <= _UINT32_MAX
    ):
        raise UsageError(f"invalid rate limit {rate_limit!r}")
    issued = clock.now_ms() if now_ms is None else now_ms
    expires = issued + ttl_ms
    if expires > _UINT64_MAX:
        raise UsageError("invite lifetime is too long")
    body = mesh_pb2.InviteBody(
        version=VERSION,
        token_id=os.urandom(TOKEN_ID_LEN),
        inviter_node_id=identity.node_id,
        inviter_public_key=identity.public_key,
        relay_hosts=hosts,
        direct_endpoints=eps,
        scopes=scope_list,
        issued_at_ms=issued,
        expires_at_ms=expires,
        max_uses=max_uses,
        alias=alias or "",
    )
    if rate_limit is not None:
        body.rate_limit.rate_per_s = rate_limit.rate_per_s
        body.rate_limit.burst = rate_limit.burst
    body_bytes = body.SerializeToString()
    raw = mesh_pb2.SignedInvite(
        body=body_bytes, signature=identity.sign(Domain.INVITE, body_bytes)
    ).SerializeToString()
    return _build(encode_token(raw), raw, body)


def _build(token: str, raw: bytes, body: mesh_pb2.InviteBody) -> Invite:
    return Invite(
        token=token,
        raw=raw,
        token_id=body.token_id,
        inviter_node_id=body.inviter_node_id,
        inviter_public_key=body.inviter_public_key,
        relay_hosts=list(body.relay_hosts),
        endpoints=list(body.direct_endpoints),
        scopes=list(body.scopes),
        rate_limit=(
            RateLimit(rate_per_s=body.rate_limit.rate_per_s, burst=body.rate_limit.burst)
            if body.HasField("rate_limit")
            else None
        ),
        issued_at_ms=body.issued_at_ms,
        expires_at_ms=body.expires_at_ms,
        max_uses=body.max_uses,
        alias=body.alias or None,
    )


# ---------------------------------------------------------------- decode


def _read_varint(data: bytes, pos: int) -> tuple[int, int] | None:
    """(value, new_pos), or None when the data ends inside the varint."""
    value = 0
    shift = 0
    while True:
        if pos >= len(data):
            return None
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift >= 64:
            raise _err(InviteReason.MALFORMED, "invite token is malformed (bad varint)")


def _split_signed_invite(raw: bytes) -> tuple[bytes, bytes]:
    """Strict hand scan of SignedInvite{1: body, 2: signature}.

    Done by hand rather than with protobuf so that running out of bytes
    (a truncated token) is told apart from bytes that were never a token."""
    fields: dict[int, bytes] = {}
    pos = 0
    while pos < len(raw):
        tag = _read_varint(raw, pos)
        if tag is None:
            raise _err(InviteReason.TRUNCATED, "invite token is truncated (copy the whole line)")
        key, pos = tag
        field_no, wire_type = key >> 3, key & 7
        if field_no not in (1, 2) or wire_type != 2:
            raise _err(InviteReason.MALFORMED, "invite token is malformed (not a tmax-mesh invite)")
        if field_no in fields:
            raise _err(InviteReason.MALFORMED, "invite token is malformed (duplicate field)")
        length = _read_varint(raw, pos)
        if length is None:
            raise _err(InviteReason.TRUNCATED, "invite token is truncated (copy the whole line)")
        n, pos = length
        if pos + n > len(raw):
            raise _err(InviteReason.TRUNCATED, "invite token is truncated (copy the whole line)")
        fields[field_no] = raw[pos : pos + n]
        pos += n
    body = fields.get(1)
    signature = fields.get(2)
    if not body:
        raise _err(InviteReason.TRUNCATED, "invite token is truncated (no invite body)")
    if signature is None:
        raise _err(InviteReason.TRUNCATED, "invite token is truncated (no signature)")
    if len(signature) != crypto.SIGNATURE_LEN:
        raise _err(InviteReason.MALFORMED, f"invite signature must be 65 bytes, got {len(signature)}")
    return body, signature


def _check_strings(name: str, values: Iterable[str], max_len: int) -> None:
    values = list(values)
    if len(values) > MAX_LIST_ITEMS:
        raise _err(InviteReason.MALFORMED, f"invite is malformed (too many {name})")
    for v in values:
        if not v or len(v) > max_len:
            raise _err(InviteReason.MALFORMED, f"invite is malformed (bad {name} entry)")


def _decode_raw(raw: bytes, token: str) -> Invite:
    body_bytes, signature = _split_signed_invite(raw)
    try:
        body = mesh_pb2.InviteBody.FromString(body_bytes)
    except Exception:
        raise _err(InviteReason.MALFORMED, "invite body is malformed (not a valid protobuf)") from None
    if body.version != VERSION:
        raise _err(
            InviteReason.VERSION,
            f"invite version {body.version} is not supported (this node understands {VERSION})",
        )
    if len(body.token_id) != TOKEN_ID_LEN:
        raise _err(InviteReason.MALFORMED, "invite is malformed (token id must be 16 bytes)")
    if len(body.inviter_node_id) != crypto.NODE_ID_LEN:
        raise _err(InviteReason.MALFORMED, "invite is malformed (inviter node id must be 20 bytes)")
    if len(body.inviter_public_key) != crypto.PUBLIC_KEY_LEN:
        raise _err(InviteReason.MALFORMED, "invite is malformed (inviter public key must be 33 bytes)")
    _check_strings("relay hosts", body.relay_hosts, MAX_URL_LEN)
    _check_strings("endpoints", body.direct_endpoints, MAX_URL_LEN)
    _check_strings("scopes", body.scopes, MAX_SCOPE_LEN)
    if not body.scopes:
        raise _err(InviteReason.MALFORMED, "invite is malformed (no scopes)")
    if len(body.alias) > MAX_ALIAS_LEN:
        raise _err(InviteReason.MALFORMED, "invite is malformed (alias too long)")
    if body.HasField("rate_limit") and (
        not math.isfinite(body.rate_limit.rate_per_s) or body.rate_limit.rate_per_s <= 0
    ):
        raise _err(InviteReason.MALFORMED, "invite is malformed (bad rate limit)")
    if body.expires_at_ms <= body.issued_at_ms:
        raise _err(InviteReason.MALFORMED, "invite is malformed (expires before it was issued)")
    try:
        address = crypto.address_from_public_key(body.inviter_public_key)
    except ValueError:
        raise _err(InviteReason.MALFORMED, "invite is malformed (inviter public key is invalid)") from None
    if address != body.inviter_node_id:
        raise _err(InviteReason.ID_MISMATCH, "invite inviter id does not match its public key")
    if not crypto.verify(signature, body.inviter_public_key, Domain.INVITE, body_bytes):
        raise _err(InviteReason.BAD_SIGNATURE, "invite signature is invalid (token altered or forged)")
    return _build(token, raw, body)


def token_bytes(token: str) -> bytes:
    """The serialized SignedInvite of a token this node wrote (its text form),
    without verifying anything."""
    payload = token.removeprefix(TOKEN_PREFIX)
    return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))


def token_id_of(raw: bytes) -> bytes:
    """The token id of a serialized SignedInvite, without verifying anything
    (what a first-contact envelope names in its clear header)."""
    body, _signature = _split_signed_invite(raw)
    try:
        return mesh_pb2.InviteBody.FromString(body).token_id
    except Exception:
        raise _err(InviteReason.MALFORMED, "invite token is malformed (bad body)") from None


def decode_signed_invite(raw: bytes) -> Invite:
    """Decode and verify a serialized SignedInvite (as carried in an envelope)."""
    try:
        if not isinstance(raw, bytes | bytearray) or len(raw) > MAX_TEXT_LEN:
            raise _err(InviteReason.MALFORMED, "invite is malformed (bad size)")
        raw = bytes(raw)
        return _decode_raw(raw, encode_token(raw))
    except InviteError:
        raise
    except Exception as exc:  # contract: nothing but InviteError escapes
        raise _err(InviteReason.MALFORMED, f"invite is malformed ({type(exc).__name__})") from None


def decode_invite(text: str) -> Invite:
    """Parse a token or link and verify signature and id↔key binding (not expiry/scopes)."""
    try:
        return _decode_text(text)
    except InviteError:
        raise
    except Exception as exc:  # contract: nothing but InviteError escapes
        raise _err(InviteReason.MALFORMED, f"invite is malformed ({type(exc).__name__})") from None


def _decode_text(text: str) -> Invite:
    if not isinstance(text, str):
        raise _err(InviteReason.MALFORMED, "invite must be text")
    if len(text) > MAX_TEXT_LEN:
        raise _err(InviteReason.MALFORMED, f"invite is too long ({len(text)} characters)")
    s = text.strip()
    from_link = s.startswith(LINK_PREFIX)
    if from_link:
        s = s[len(LINK_PREFIX) :]
    if s.startswith(TOKEN_PREFIX):
        payload = s[len(TOKEN_PREFIX) :]
    elif from_link:
        payload = s
    else:
        raise _err(
            InviteReason.BAD_PREFIX,
            f"not a tmax-mesh invite (expected it to start with {TOKEN_PREFIX!r} or {LINK_PREFIX!r})",
        )
    payload = payload.rstrip("=")
    if not payload:
        raise _err(InviteReason.TRUNCATED, "invite token is truncated (nothing after the prefix)")
    if not _B64URL_RE.fullmatch(payload):
        raise _err(InviteReason.BAD_BASE64, "invite token contains characters that are not base64url")
    if len(payload) % 4 == 1:
        # No complete base64 encoding has this length: the line was cut off.
        raise _err(InviteReason.TRUNCATED, "invite token is truncated (copy the whole line)")
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    except (binascii.Error, ValueError):
        raise _err(InviteReason.BAD_BASE64, "invite token is not valid base64url") from None
    return _decode_raw(raw, TOKEN_PREFIX + payload)


# ---------------------------------------------------------------- policy checks


def check_invite(invite: Invite, *, now_ms: int, known_scopes: Collection[str]) -> None:
    """Expiry and scope checks (the parts that depend on time and local config)."""
    if now_ms >= invite.expires_at_ms:
        raise _err(InviteReason.EXPIRED, "invite has expired; ask the inviter for a new one")
    for scope in invite.scopes:
        if scope not in known_scopes:
            raise _err(
                InviteReason.UNKNOWN_SCOPE,
                f"invite grants unknown scope {scope!r} (known: {', '.join(sorted(known_scopes))})",
            )


def parse_invite(text: str, *, now_ms: int, known_scopes: Collection[str]) -> Invite:
    """:func:`decode_invite` + :func:`check_invite`."""
    invite = decode_invite(text)
    check_invite(invite, now_ms=now_ms, known_scopes=known_scopes)
    return invite
