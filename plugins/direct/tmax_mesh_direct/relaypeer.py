"""The IP address a relay host's gRPC connection is actually connected to.

The punch port is mapped by dialling the host's observer port on the host's
IP. Resolving the relay's DNS name again for that would let a host that
controls its name (DNS rebinding) answer ``127.0.0.1`` the second time, and
so pick a local service for the node to connect to. Instead the node dials
the IP of the TCP connection its registered stream already runs on.

gRPC's Python API does not expose a client call's peer, so it is read from
gRPC's channelz registry (on by default): the sockets of the subchannels of
the channels with the relay's target. All of them were opened by gRPC for
that target, so each is a connection to the relay host.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
from collections.abc import Iterator
from typing import Any

from grpc._cython import cygrpc

log = logging.getLogger("tmax_mesh.direct")


def _top_channels() -> Iterator[dict[str, Any]]:
    start = 0
    while True:
        page = json.loads(cygrpc.channelz_get_top_channels(start))
        channels = page.get("channel", [])
        yield from channels
        if page.get("end", True) or not channels:
            return
        start = int(channels[-1]["ref"]["channelId"]) + 1


def _remote_ips(channel: dict[str, Any]) -> Iterator[tuple[int, str]]:
    """(socket id, remote IPv4) of each connected socket of ``channel``'s subchannels."""
    for sub_ref in channel.get("subchannelRef", []):
        sub = json.loads(cygrpc.channelz_get_subchannel(int(sub_ref["subchannelId"])))["subchannel"]
        for sock_ref in sub.get("socketRef", []):
            socket_id = int(sock_ref["socketId"])
            remote = json.loads(cygrpc.channelz_get_socket(socket_id))["socket"].get("remote", {})
            packed = remote.get("tcpipAddress", {}).get("ipAddress")
            if packed:
                ip = ipaddress.ip_address(base64.b64decode(packed))
                if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                    ip = ip.ipv4_mapped
                if isinstance(ip, ipaddress.IPv4Address):
                    yield socket_id, str(ip)


def relay_peer_ip(target: str) -> str | None:
    """The IPv4 address of the newest connection gRPC holds for ``target``
    (a relay's ``HOST:PORT``), or ``None`` if there is none (or channelz is
    unavailable)."""
    try:
        found = [
            conn
            for channel in _top_channels()
            if channel.get("data", {}).get("target", "").removeprefix("dns:///") == target
            for conn in _remote_ips(channel)
        ]
    except (ValueError, KeyError, TypeError, RuntimeError) as err:
        log.warning("cannot read the relay connection's address from gRPC channelz: %s", err)
        return None
    return max(found)[1] if found else None
