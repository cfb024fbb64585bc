"""Network addresses as abuse limits see them.

One IPv6 host usually owns a whole /64 (SLAAC, privacy addresses, a VPS's
routed prefix), so it can change its address at will: a limit keyed by the
full IPv6 address is one new allowance per envelope. :func:`source_key`
names a transport source the way per-source limits should count it: an IPv6
address by its /64, an IPv4 address (or an IPv4-mapped IPv6 one) by the
address. The node's ``ratelimit`` plugin and the relay host use the same
rule.
"""

from __future__ import annotations

import functools
import ipaddress
from urllib.parse import unquote

IPV6_PREFIX = 64

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def peer_ip(peer: str) -> IPAddress | None:
    """The IP in a gRPC peer string (``ipv4:1.2.3.4:5678``,
    ``ipv6:%5B2001:db8::1%5D:5678``, with or without the port) or in a bare
    address (``1.2.3.4``, ``2001:db8::1``, ``[2001:db8::1]:5678``); ``None``
    if there is none (a node id, a Unix socket)."""
    text = unquote(peer)
    kind, sep, rest = text.partition(":")
    if sep and kind in ("ipv4", "ipv6"):
        text = rest
    for candidate in (text, text.rpartition(":")[0]):
        candidate = candidate.strip("[]").partition("%")[0]  # no zone: it names a link, not a host
        try:
            return ipaddress.ip_address(candidate)
        except ValueError:
            continue
    return None


@functools.lru_cache(maxsize=4096)
def source_key(peer: str) -> str:
    """What a per-source limit counts ``peer`` as: ``1.2.3.4`` for an IPv4
    address, ``2001:db8:1:2::/64`` for any IPv6 address in that /64, and
    ``peer`` itself when it holds no IP (a relay's stamped node id).

    Cached: the rate limiter asks for every envelope, and a connection's peer
    string does not change (parsing it cost 3 µs for IPv4, 26 µs for IPv6)."""
    ip = peer_ip(peer)
    if ip is None:
        return peer
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)
