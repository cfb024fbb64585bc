"""Which addresses a relay host may make this node dial for hole punching.

A ``PunchGo`` names the friend's mapped address and a ``PunchToken`` the
host's observer port: both are the host's word, and a host that is hostile
(or taken over) could otherwise point the node's ``connect()`` at anything
the node can reach, a service on its own loopback or its LAN included.

An address is dialled only if it is a unicast IPv4 ``HOST:PORT`` that
:func:`tmax_core.endpoints.endpoint_problem` accepts (port 1-65535, no
wildcard, broadcast or multicast) and it is in the same *scope* as a
reference address this node saw itself:

* for a friend's mapped address, our own punch port's mapping on that host
  (two nodes behind NATs on the internet see each other as ``public``; the
  NAT lab, whose "WAN" is the carrier-grade range 100.64/10, as ``shared``;
  nodes on one machine, as ``loopback``);
* for the observer, the relay host's address of the connection already open.

So a host can point the node only at addresses of the kind it already talks
to: a host the node reaches on the internet cannot make it dial its LAN or
its loopback.
"""

from __future__ import annotations

import ipaddress

from tmax_core.endpoints import endpoint_problem

_SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)


def scope(ip: str) -> str | None:
    """``loopback``, ``link-local``, ``private``, ``shared`` or ``public``;
    ``None`` for anything else (reserved, documentation, this-network...)."""
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        return None
    if addr.is_loopback:
        return "loopback"
    if addr.is_link_local:
        return "link-local"
    if addr in _SHARED:
        return "shared"
    if addr.is_global:
        return "public"
    if addr.is_private and not addr.is_reserved and not addr.is_unspecified:
        return "private"
    return None


def parse_addr(addr: str) -> tuple[str, int]:
    """``(ip, port)`` of an IPv4 ``HOST:PORT`` the endpoint rules accept; ``ValueError`` if not."""
    problem = endpoint_problem(addr)
    host, _, port = addr.rpartition(":")
    if problem is None and scope(host) is None:
        problem = "not a unicast IPv4 address"
    if problem is not None:
        raise ValueError(f"{addr[:80]!r}: {problem}")
    return host, int(port)


def screen(addr: str, reference: str) -> tuple[str, int]:
    """``parse_addr(addr)`` if its IP is in the same scope as the IP ``reference``;
    ``ValueError`` (saying why) if not."""
    host, port = parse_addr(addr)
    theirs, ours = scope(host), scope(reference)
    if theirs != ours:
        raise ValueError(f"{addr}: a {theirs} address, and this node is reached at a {ours} one")
    return host, port
