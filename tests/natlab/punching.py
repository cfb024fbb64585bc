"""Shared steps of the hole-punching lab tests and the grid (``python -m tests.natlab.grid``):
a relay host on the public segment, A and B behind their routers (each with
its own NAT type), both on the relay with no peer listener, made friends."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness import Node, ProcGroup, befriend, wait_for
from tests.natlab.lab import RELAY_NODE_ENV, NatLab, start_relay_host
from tests.polling import DEFAULT_TIMEOUT_S
from tmax_core.client import JsonNodeClient

PUNCH_ENV = {
    **RELAY_NODE_ENV,
    "TMAX_MESH_DIRECT_PUNCH": "true",
    "TMAX_MESH_DIRECT_PROBE_INTERVAL": "1s",
    "TMAX_MESH_RELAY_RECONNECT_MAX": "1s",
    "TMAX_MESH_DIRECT_PUNCH_TIMEOUT": "3s",
}


def status(node: Node) -> dict[str, Any]:
    with JsonNodeClient(Path(node.ready["socket"])) as c:
        return c.node_status()


def direct_view(node: Node) -> dict[str, Any]:
    """The node's only friend as its ``direct`` transport shows it (``{}`` if not shown)."""
    direct = next(t for t in status(node)["transports"] if t["name"] == "direct")
    friends = list(direct["friends"].values())
    return friends[0] if friends else {}


def punch_port(node: Node) -> dict[str, Any]:
    """The node's punch port as its ``direct`` transport shows it (``mapped``, ``unmapped``)."""
    return next(t for t in status(node)["transports"] if t["name"] == "direct")["punch"]


def punch_attempts(node: Node) -> int:
    return direct_view(node).get("punch", {}).get("attempts", 0)


@dataclass
class Pair:
    a: Node
    b: Node
    friends_at: float  # monotonic time B started accepting A's invite (the friendship)


def start_pair(
    natlab: NatLab,
    procs: ProcGroup,
    tmp_path: Path,
    env: dict[str, str] | None = None,
    host_args: tuple[str, ...] = (),
    register_timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Pair:
    """A (behind ra) and B (behind rb), no listeners, on one relay host (``tmax-host``
    with ``host_args``); friends. ``register_timeout_s``: how long each may take to
    register (a lossy WAN makes that slow)."""
    _host, url = start_relay_host(natlab, procs, tmp_path / "host", *host_args)
    env = {**PUNCH_ENV, **(env or {})}
    node_a = procs.node("a", "--relay", url, env=env, prefix=natlab.prefix_for("a"))
    node_b = procs.node("b", "--relay", url, env=env, prefix=natlab.prefix_for("b"))
    for node in (node_a, node_b):
        assert node.ready["peer_listen"] is None
        wait_for(
            lambda n=node: (
                next(t for t in status(n)["transports"] if t["name"] == "relay")["state"] == "connected"
            ),
            timeout=register_timeout_s,
            what=f"{node.state_dir.name} registered",
        )
    accepted = time.monotonic()  # B accepts A's invite now
    befriend(node_a, node_b, alias="a")
    return Pair(node_a, node_b, accepted)


def send(node: Node, to: str, body: str) -> dict[str, Any]:
    return node.cli("msg", "send", "--to", to, "--wait", "--timeout", "30", body)


def punched(node: Node) -> bool:
    view = direct_view(node)
    return view.get("path") == "direct" and view.get("via") == "punched"
