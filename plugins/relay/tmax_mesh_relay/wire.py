"""Protocol helpers shared by ``tmax-host`` and the node's relay transport:
the registration signature, relay URLs, addresses and a token bucket.

The registration signature covers a fixed length-prefixed encoding (DESIGN §5),
never a re-serialization of the parsed ``Register`` frame::

    sign(tmax-mesh/v1/host-register,
         host_id, nonce, node_id, endpoints_encoding(endpoints), allow_digest(lookup_allow))
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from tmax_core import crypto
from tmax_core.config import is_wildcard_host
from tmax_core.crypto import Domain
from tmax_core.identity import NodeIdentity
from tmax_mesh_relay.proto import host_pb2

DEFAULT_PORT = 7447
NONCE_LEN = 32
MAX_ENDPOINTS = 8
MAX_ENDPOINT_LEN = 256
MAX_HOST_ID_LEN = 64


class RegisterError(Exception):
    """A registration the host refuses; ``code`` is the Error frame code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def endpoints_encoding(endpoints: list[str]) -> bytes:
    """u32 count, then u32 length + UTF-8 bytes of each endpoint, in the order sent."""
    out = [len(endpoints).to_bytes(4, "big")]
    for endpoint in endpoints:
        data = endpoint.encode()
        out.append(len(data).to_bytes(4, "big"))
        out.append(data)
    return b"".join(out)


def allow_digest(node_ids: list[bytes]) -> bytes:
    """keccak256 of the sorted, concatenated 20-byte ids (order on the wire does not matter)."""
    return crypto.keccak256(b"".join(sorted(node_ids)))


def _register_parts(
    host_id: bytes, nonce: bytes, node_id: bytes, endpoints: list[str], allow: list[bytes]
) -> tuple[bytes, ...]:
    return (host_id, nonce, node_id, endpoints_encoding(endpoints), allow_digest(allow))


def make_register(
    identity: NodeIdentity, challenge: host_pb2.Challenge, endpoints: list[str], allow: list[bytes]
) -> host_pb2.Register:
    """A signed ``Register`` answering ``challenge``."""
    signature = identity.sign(
        Domain.HOST_REGISTER,
        *_register_parts(challenge.host_id, challenge.nonce, identity.node_id, endpoints, allow),
    )
    return host_pb2.Register(
        node_id=identity.node_id,
        public_key=identity.public_key,
        endpoints=endpoints,
        lookup_allow=allow,
        signature=signature,
    )


def check_node_ids(ids: list[bytes], limit: int, what: str) -> None:
    if len(ids) > limit:
        raise RegisterError("bad_registration", f"{what}: {len(ids)} ids, the limit is {limit}")
    if any(len(i) != crypto.NODE_ID_LEN for i in ids):
        raise RegisterError("bad_registration", f"{what}: every node id must be 20 bytes")


def verify_register(reg: host_pb2.Register, host_id: bytes, nonce: bytes, max_allow: int) -> None:
    """Shape, id↔key binding and signature over *this* stream's challenge; raises RegisterError."""
    if len(reg.node_id) != crypto.NODE_ID_LEN or len(reg.public_key) != crypto.PUBLIC_KEY_LEN:
        raise RegisterError("bad_registration", "node_id must be 20 bytes and public_key 33 bytes")
    if len(reg.endpoints) > MAX_ENDPOINTS or any(len(e) > MAX_ENDPOINT_LEN for e in reg.endpoints):
        raise RegisterError(
            "bad_registration", f"at most {MAX_ENDPOINTS} endpoints of {MAX_ENDPOINT_LEN} characters"
        )
    check_node_ids(list(reg.lookup_allow), max_allow, "lookup_allow")
    try:
        bound = crypto.address_from_public_key(reg.public_key) == reg.node_id
    except ValueError:
        bound = False
    if not bound:
        raise RegisterError("id_key_mismatch", "node_id is not the address of public_key")
    parts = _register_parts(host_id, nonce, reg.node_id, list(reg.endpoints), list(reg.lookup_allow))
    if not crypto.verify(reg.signature, reg.public_key, Domain.HOST_REGISTER, *parts):
        raise RegisterError("bad_signature", "signature does not match this connection's challenge")


@dataclass(frozen=True)
class RelayUrl:
    """A parsed ``grpc://HOST:PORT`` / ``grpcs://HOST:PORT`` (bare ``HOST:PORT`` = ``grpc://``)."""

    url: str
    host: str
    port: int
    tls: bool

    @property
    def target(self) -> str:
        """The gRPC dial target (IPv6 literals in brackets)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def parse_relay_url(url: str) -> RelayUrl:
    """Parse a relay URL; ``ValueError`` with a one-line reason if it is not one."""
    text = url.strip()
    if "://" not in text:
        text = "grpc://" + text
    try:
        parts = urlsplit(text)
        port = parts.port or DEFAULT_PORT
    except ValueError as err:
        raise ValueError(f"{url!r} is not a relay URL ({err})") from None
    if parts.scheme not in ("grpc", "grpcs") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"{url!r} is not a relay URL (expected grpc://HOST:PORT or grpcs://HOST:PORT)")
    return RelayUrl(url=url.strip(), host=parts.hostname, port=port, tls=parts.scheme == "grpcs")


def same_host(a: str, b: str) -> bool:
    """Whether two relay URLs name the same host (scheme, host and port compared, case-insensitive)."""
    try:
        pa, pb = parse_relay_url(a), parse_relay_url(b)
    except ValueError:
        return False
    return (pa.tls, pa.host.lower(), pa.port) == (pb.tls, pb.host.lower(), pb.port)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def peer_ip(peer: str) -> str:
    """The IP of a gRPC peer string (``ipv4:1.2.3.4:5678``, ``ipv6:[::1]:5678``); '' if none."""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return ""
    host = rest.rpartition(":")[0]
    return host.strip("[]")


def dialable_endpoints(advertised: list[str], observed_ip: str) -> list[str]:
    """Advertised endpoints, plus the observed IP with each advertised *port*.

    A wildcard or empty advertised host is replaced by the observed IP. The
    connection's own (ephemeral) source port is never offered as dialable.
    """
    out: list[str] = []
    for endpoint in advertised:
        host, sep, port = endpoint.rpartition(":")
        if not sep or not port.isdigit():
            continue
        if not is_wildcard_host(host):
            out.append(endpoint)
        if observed_ip:
            candidate = f"[{observed_ip}]:{port}" if ":" in observed_ip else f"{observed_ip}:{port}"
            out.append(candidate)
    return list(dict.fromkeys(out))


class TokenBucket:
    """A token bucket. ``reserve`` never refuses: it returns how long to wait,
    which the host uses to pace a connection (back-pressure) rather than to
    drop its frames; ``take`` refuses instead (lookups)."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(max(burst, 1))
        self.tokens = self.burst
        self.stamp = now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, now: float) -> bool:
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def reserve(self, now: float) -> float:
        """Take one token, going into debt if needed; returns seconds to wait (0 = go)."""
        self._refill(now)
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate
