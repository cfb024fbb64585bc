"""Protocol helpers shared by ``tmax-host`` and the node's relay transport:
the registration signature, relay URLs, addresses and a token bucket.

The registration signature covers a fixed length-prefixed encoding (DESIGN §5),
never a re-serialization of the parsed ``Register`` frame::

    sign(tmax-mesh/v1/host-register,
         host_id, nonce, relay_url, tls_cert_sha256, node_id,
         endpoints_encoding(endpoints), allow_digest(lookup_allow))

``relay_url`` is the URL the node dialed and ``tls_cert_sha256`` the SHA-256 of
the certificate it saw there (empty without TLS). A host accepts a
registration only for one of its own public URLs and its own certificate: a
malicious relay that forwards another host's challenge to a node gets a
signature that the other host refuses (``wrong_url`` / ``wrong_certificate``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from tmax_core import crypto, endpoints, netaddr
from tmax_core.crypto import Domain
from tmax_core.endpoints import endpoint_problem
from tmax_core.identity import NodeIdentity
from tmax_core.plugin.helpers import is_wildcard_host
from tmax_mesh_relay.proto import host_pb2

DEFAULT_PORT = 7447
NONCE_LEN = 32
MAX_ENDPOINTS = endpoints.MAX_ENDPOINTS
"""Advertised endpoints per registration, and endpoints per lookup answer (as invites)."""
MAX_ENDPOINT_LEN = 256
MAX_HOST_ID_LEN = 64
MAX_RELAY_URL_LEN = 512
MAX_BATCH_ID_LEN = 16
"""Bytes of the id a node gives a RelaySendBatch (echoed in its AckBatch)."""
DEFAULT_MAX_LOOKUP_ALLOW = 1000
"""Ids in one lookup allow list (``tmax-host --max-lookup-allow``); a node sends at most this many."""


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
    host_id: bytes,
    nonce: bytes,
    relay_url: str,
    cert_sha256: bytes,
    node_id: bytes,
    endpoints: list[str],
    allow: list[bytes],
) -> tuple[bytes, ...]:
    return (
        host_id,
        nonce,
        relay_url.encode(),
        cert_sha256,
        node_id,
        endpoints_encoding(endpoints),
        allow_digest(allow),
    )


def make_register(
    identity: NodeIdentity,
    challenge: host_pb2.Challenge,
    endpoints: list[str],
    allow: list[bytes],
    *,
    relay_url: str,
    cert_sha256: bytes = b"",
) -> host_pb2.Register:
    """A signed ``Register`` answering ``challenge`` on the host dialed as ``relay_url``
    (``cert_sha256``: the SHA-256 of its TLS certificate, empty without TLS)."""
    parts = _register_parts(
        challenge.host_id, challenge.nonce, relay_url, cert_sha256, identity.node_id, endpoints, allow
    )
    return host_pb2.Register(
        node_id=identity.node_id,
        public_key=identity.public_key,
        endpoints=endpoints,
        lookup_allow=allow,
        signature=identity.sign(Domain.HOST_REGISTER, *parts),
        relay_url=relay_url,
        tls_cert_sha256=cert_sha256,
        takes_frames=True,
    )


def check_node_ids(ids: Sequence[bytes], limit: int, what: str) -> None:
    if len(ids) > limit:
        raise RegisterError("bad_registration", f"{what}: {len(ids)} ids, the limit is {limit}")
    if any(len(i) != crypto.NODE_ID_LEN for i in ids):
        raise RegisterError("bad_registration", f"{what}: every node id must be 20 bytes")


class HostIdentity:
    """What a host accepts registrations for: its public URLs and its TLS certificate."""

    def __init__(self, host_id: bytes, public_urls: list[str], cert_sha256: bytes = b"") -> None:
        self.host_id = host_id
        self.public_urls = list(public_urls)
        self.cert_sha256 = cert_sha256
        self._keys = frozenset(url_key(parse_relay_url(u)) for u in public_urls)

    def accepts_url(self, url: str) -> bool:
        try:
            return url_key(parse_relay_url(url)) in self._keys
        except ValueError:
            return False


def verify_register(reg: host_pb2.Register, host: HostIdentity, nonce: bytes, max_allow: int) -> None:
    """Shape, this host's URL and certificate, id↔key binding and signature over
    *this* stream's challenge; raises RegisterError. The cheap checks come first:
    a refused registration costs no public-key operation."""
    if len(reg.node_id) != crypto.NODE_ID_LEN or len(reg.public_key) != crypto.PUBLIC_KEY_LEN:
        raise RegisterError("bad_registration", "node_id must be 20 bytes and public_key 33 bytes")
    if len(reg.endpoints) > MAX_ENDPOINTS:
        raise RegisterError(
            "bad_registration", f"{len(reg.endpoints)} endpoints, the limit is {MAX_ENDPOINTS}"
        )
    for endpoint in reg.endpoints:
        try:
            check_endpoint(endpoint)
        except ValueError as err:
            raise RegisterError("bad_registration", f"endpoint {endpoint[:80]!r}: {err}") from None
    check_node_ids(reg.lookup_allow, max_allow, "lookup_allow")
    allow = list(reg.lookup_allow)  # converted from protobuf once, after the size check
    if not reg.relay_url:
        raise RegisterError("wrong_url", "the registration names no relay URL (a node older than this host?)")
    if len(reg.relay_url) > MAX_RELAY_URL_LEN or not host.accepts_url(reg.relay_url):
        raise RegisterError(
            "wrong_url",
            f"signed for {reg.relay_url[:120]!r}; this host is {', '.join(host.public_urls)} "
            "(its operator sets them with --public-url)",
        )
    if reg.tls_cert_sha256 != host.cert_sha256:
        raise RegisterError("wrong_certificate", "signed for another TLS certificate than this host's")
    try:
        bound = crypto.address_from_public_key(reg.public_key) == reg.node_id
    except ValueError:
        bound = False
    if not bound:
        raise RegisterError("id_key_mismatch", "node_id is not the address of public_key")
    parts = _register_parts(
        host.host_id,
        nonce,
        reg.relay_url,
        reg.tls_cert_sha256,
        reg.node_id,
        list(reg.endpoints),
        allow,
    )
    if not crypto.verify(reg.signature, reg.public_key, Domain.HOST_REGISTER, *parts):
        raise RegisterError("bad_signature", "signature does not match this connection's challenge")


def check_endpoint(endpoint: str) -> None:
    """An advertised endpoint must be a TCP ``HOST:PORT`` a friend may dial, by
    the rules nodes apply to every endpoint handed to them
    (:func:`tmax_core.endpoints.endpoint_problem`). A wildcard host
    (``0.0.0.0``, ``[::]``, empty) is allowed here: it stands for the address
    the host observes and is never answered as is (see
    :func:`dialable_endpoints`). ``ValueError`` says why not."""
    if len(endpoint) > MAX_ENDPOINT_LEN:
        raise ValueError(f"longer than {MAX_ENDPOINT_LEN} characters")
    host, sep, port = endpoint.rpartition(":")
    if sep and is_wildcard_host(host) and port.isdigit() and 0 < int(port) < 65536:
        return
    problem = endpoint_problem(endpoint)
    if problem is not None:
        raise ValueError(problem)


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


def url_key(url: RelayUrl) -> tuple[bool, str, int]:
    """What makes two relay URLs the same host: scheme, host (case-insensitive), port."""
    return (url.tls, url.host.lower(), url.port)


def certificate_sha256(url: RelayUrl, ca_file: str | None, timeout: float = 10.0) -> bytes:
    """SHA-256 of the DER certificate the host at ``url`` presents, fetched with a
    verified TLS handshake of its own (``ca_file`` or the system roots, host name
    checked). gRPC in Python does not show a client the server's certificate, so
    the node fetches it just before dialing; a host that presents another
    certificate on the gRPC connection refuses the registration
    (``wrong_certificate``) and the node tries again. Raises ``ConnectionError``."""
    context = ssl.create_default_context(cafile=ca_file or None)
    context.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((url.host, url.port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=url.host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as err:
        raise ConnectionError(f"TLS handshake with {url.target}: {err}") from None
    if not der:
        raise ConnectionError(f"TLS handshake with {url.target}: no certificate")
    return hashlib.sha256(der).digest()


def same_host(a: str, b: str) -> bool:
    """Whether two relay URLs name the same host (scheme, host and port compared, case-insensitive)."""
    try:
        pa, pb = parse_relay_url(a), parse_relay_url(b)
    except ValueError:
        return False
    return url_key(pa) == url_key(pb)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def peer_ip(peer: str) -> str:
    """The IP of a gRPC peer string (``ipv4:1.2.3.4:5678``, ``ipv6:[::1]:5678``,
    gRPC's percent-encoded ``ipv6:%5B::1%5D:5678``); '' if none."""
    ip = netaddr.peer_ip(peer)
    return "" if ip is None else str(ip)


def dialable_endpoints(advertised: list[str], observed_ip: str) -> list[str]:
    """Advertised endpoints, plus the observed IP with each advertised *port*
    (at most ``MAX_ENDPOINTS`` in all).

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
    return list(dict.fromkeys(out))[:MAX_ENDPOINTS]
