"""Endpoints and relay URLs that other parties hand this node (DESIGN §7, §11).

A friend's contact card (first contact and every later message), an invite
and a relay host's rendezvous lookup answer all say where a node can be
dialled. Each of them is someone else's input, and dialling it costs file
descriptors and sends SYNs to whatever it names, so it is checked here first:

* at most :data:`MAX_ENDPOINTS` entries of each list (the bound invites have);
* an endpoint is a TCP ``HOST:PORT``: an IPv4 literal, a bracketed IPv6
  literal or a DNS name, port 1-65535. No gRPC target schemes (``unix:``,
  ``unix-abstract:``, ``vsock:``, ``dns:``, ``ipv4:``...), no wildcard
  (:func:`tmax_core.config.is_wildcard_host`), no multicast or broadcast;
* a relay URL is ``grpc://HOST[:PORT]`` or ``grpcs://HOST[:PORT]`` (or a bare
  ``HOST:PORT``, which the relay plugin reads as ``grpc://``), with a host
  allowed by the same rules.

Bad entries are dropped and the good ones kept (:func:`screen_endpoints`,
:func:`screen_relay_urls`), rather than the whole message refused: a card
rides on every message, and refusing the message would lose a friend's
mail over a stale or odd entry in its configuration. The caller logs what was
dropped once, when the stored contact changes.

Not checked: what a DNS name resolves to (it may name a multicast or a
private address), and subnet-directed broadcast addresses (that needs the
netmask). Loopback and private addresses are allowed: nodes on one machine
or one LAN use them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from tmax_core.config import is_wildcard_host
from tmax_core.invites import MAX_LIST_ITEMS, MAX_URL_LEN

MAX_ENDPOINTS = MAX_LIST_ITEMS
"""Most endpoints (and, separately, relay URLs) kept from one card, invite or lookup answer."""

# gRPC reads ``NAME:REST`` as a URI when NAME is one of its resolver schemes
# (``unix:80`` is a Unix socket named "80"), so no such name is a host here.
_GRPC_SCHEMES = frozenset(
    {"dns", "ipv4", "ipv6", "unix", "unix-abstract", "vsock", "xds", "google-c2p", "passthrough"}
)
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
_DNS_NAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def host_problem(host: str) -> str | None:
    """Why ``host`` (as written in ``HOST:PORT``, IPv6 in brackets) is not a
    unicast TCP host we may dial, or ``None`` if it is."""
    if is_wildcard_host(host):
        return "a wildcard address is not dialable"
    if host.startswith("[") and host.endswith("]"):
        try:
            ip6 = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return "not an IPv6 address"
        if ip6.scope_id is not None:
            return "an IPv6 zone is not allowed"
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ip6.ipv4_mapped or ip6
    elif ":" in host:
        return "an IPv6 address must be in brackets"
    else:
        try:
            ip = ipaddress.IPv4Address(host)
        except ValueError:
            if len(host) > 253 or not _DNS_NAME_RE.fullmatch(host):
                return "not an IP address or host name"
            if host.lower() in _GRPC_SCHEMES:
                return "a gRPC target scheme, not a host"
            if host.rstrip(".").rpartition(".")[2][:1].isdigit():
                # No top-level name starts with a digit; the resolver would read
                # "3758096385" or "0xe0.1" as an IPv4 address (a multicast one here).
                return "a numeric address in a form other than a.b.c.d"
            return None
    if ip.is_unspecified:
        return "a wildcard address is not dialable"
    if ip.is_multicast:
        return "a multicast address"
    if ip == _LIMITED_BROADCAST:
        return "a broadcast address"
    return None


def _port_problem(port: str) -> str | None:
    if not (port.isascii() and port.isdigit()) or len(port) > 5 or not 1 <= int(port) <= 65535:
        return "port must be 1-65535"
    return None


def endpoint_problem(endpoint: str) -> str | None:
    """Why ``endpoint`` is not a dialable TCP ``HOST:PORT``, or ``None`` if it is."""
    if not isinstance(endpoint, str) or not endpoint or len(endpoint) > MAX_URL_LEN:
        return "not HOST:PORT"
    if endpoint.partition(":")[0].lower() in _GRPC_SCHEMES:
        return "a gRPC target (unix:, dns:, ...), not HOST:PORT"
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host:
        return "not HOST:PORT"
    return _port_problem(port) or host_problem(host)


def relay_url_problem(url: str) -> str | None:
    """Why ``url`` is not a ``grpc://``/``grpcs://`` relay URL, or ``None`` if it is."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LEN:
        return "not a relay URL"
    if "://" not in url:
        return endpoint_problem(url)
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        return "not a relay URL"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "not a relay URL"
    if parts.scheme not in ("grpc", "grpcs"):
        return "scheme must be grpc:// or grpcs://"
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        return "a relay URL is grpc[s]://HOST[:PORT]"
    host, _, port = parts.netloc.rpartition(":") if parts.port is not None else (parts.netloc, "", "")
    if not host:
        return "not a relay URL"
    return (_port_problem(port) if port else None) or host_problem(host)


@dataclass(frozen=True)
class Screened:
    """What :func:`screen_endpoints` / :func:`screen_relay_urls` kept and dropped."""

    kept: list[str]
    dropped: int  # entries refused, including those over the bound
    example: str  # the first refused entry and why ("" if none)


def _screen(values: Iterable[str], problem: Callable[[str], str | None], limit: int) -> Screened:
    items = list(values)
    kept: list[str] = []
    dropped = 0
    example = ""
    for n, item in enumerate(items):
        if len(kept) >= limit:
            dropped += len(items) - n
            example = example or f"more than {limit} entries"
            break
        if item in kept:
            continue
        why = problem(item)
        if why is None:
            kept.append(item)
            continue
        dropped += 1
        example = example or f"{item[:80]!r}: {why}"
    return Screened(kept, dropped, example)


def screen_endpoints(values: Iterable[str], limit: int = MAX_ENDPOINTS) -> Screened:
    """The dialable, distinct entries of ``values`` (the first ``limit``), in order."""
    return _screen(values, endpoint_problem, limit)


def screen_relay_urls(values: Iterable[str], limit: int = MAX_ENDPOINTS) -> Screened:
    """The well-formed, distinct relay URLs of ``values`` (the first ``limit``), in order."""
    return _screen(values, relay_url_problem, limit)
