"""Direct upgrade through real NAT, with the relay as the fallback (DESIGN §11).

C is on the public segment and listens on a wildcard (so its listener is in no
invite and no contact card); A is behind a masquerading router without a
listener; both use a relay host on the public segment. A learns where to dial
C only from the host's rendezvous lookup (C's observed IP + advertised port)
and upgrades; C cannot dial A (no listener, and A is behind NAT) and stays on
the relay. When C's listener is firewalled, A's next message still arrives,
once, through the relay; when the firewall goes away, A upgrades again.

Two nodes behind two NATs: ``test_nat_direct.py::test_nat_direct_fails_fast_between_nats``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Node, ProcGroup, befriend, wait_for
from tests.natlab.lab import RELAY_NODE_ENV, C, NatLab, start_relay_host
from tmax_core.client import JsonNodeClient

pytestmark = pytest.mark.natlab

ENV = {**RELAY_NODE_ENV, "TMAX_MESH_DIRECT_PROBE_INTERVAL": "1s", "TMAX_MESH_RELAY_RECONNECT_MAX": "1s"}


def status(node: Node) -> dict[str, Any]:
    # The local API is a Unix socket: reachable from outside the namespace.
    with JsonNodeClient(Path(node.ready["socket"])) as c:
        return c.node_status()


def transport(node: Node, name: str) -> dict[str, Any]:
    return next(t for t in status(node)["transports"] if t["name"] == name)


def start_pair(
    natlab: NatLab, procs: ProcGroup, tmp_path: Path, probe_interval: str = "1s"
) -> tuple[Node, Node, str]:
    """C (public, wildcard listener) invites A (behind NAT, no listener); both on the relay.
    Returns them and the endpoint A should find for C."""
    _host, url = start_relay_host(natlab, procs, tmp_path / "host")
    env = {**ENV, "TMAX_MESH_DIRECT_PROBE_INTERVAL": probe_interval}
    node_c = procs.node(
        "c", "--peer-listen", "0.0.0.0:0", "--relay", url, env=env, prefix=natlab.prefix_for("c")
    )
    node_a = procs.node("a", "--relay", url, env=env, prefix=natlab.prefix_for("a"))
    assert node_c.ready["peer_listen"].startswith("0.0.0.0:") and node_a.ready["peer_listen"] is None
    for node in (node_a, node_c):
        wait_for(
            lambda n=node: transport(n, "relay")["state"] == "connected",
            what=f"{node.state_dir.name} registered",
        )
    friend_c = befriend(node_c, node_a, alias="c")
    assert friend_c["endpoints"] == []  # a wildcard listener is not advertised
    c_endpoint = f"{C}:{node_c.ready['peer_listen'].rpartition(':')[2]}"
    return node_a, node_c, c_endpoint


def wait_path(node: Node, key: str, path: str, endpoint: str) -> None:
    def reached() -> bool:
        view = transport(node, "direct")["friends"].get(key)
        return bool(view) and view["path"] == path and view["endpoints"] == [endpoint]

    wait_for(reached, what=f"{node.state_dir.name}'s direct path to {key} to be {path}")


def send(node: Node, to: str, body: str) -> dict[str, Any]:
    return node.cli("msg", "send", "--to", to, "--wait", "--timeout", "30", body)


def test_nat_upgrade_to_public_listener(natlab: NatLab, procs: ProcGroup, tmp_path: Path) -> None:
    node_a, node_c, c_endpoint = start_pair(natlab, procs, tmp_path)

    # A found C's public endpoint through the host and probed it across its NAT.
    wait_path(node_a, "c", "direct", c_endpoint)
    sent = send(node_a, "c", "a to c")
    assert (sent["status"], sent["path"]) == ("delivered", "direct"), sent

    # C -> A: A has no listener (and is behind NAT): relay, and C knows no direct endpoint for A.
    sent = send(node_c, node_a.node_id, "c to a")
    assert (sent["status"], sent["path"]) == ("delivered", "relay"), sent
    assert transport(node_c, "direct")["friends"] == {}

    assert [m["body"] for m in node_c.cli("inbox", "list")] == ["a to c"]
    assert [m["body"] for m in node_a.cli("inbox", "list")] == ["c to a"]
    counters = status(node_a)["counters"]
    assert counters["send:delivered:direct"] == 1 and counters["send:delivered:relay"] == 1  # + hello


def test_nat_firewalled_listener_falls_back_and_upgrades_again(
    natlab: NatLab, procs: ProcGroup, tmp_path: Path
) -> None:
    # Probes every 3 s here: the first firewalled message must meet the
    # established direct connection before a probe notices the firewall.
    node_a, node_c, c_endpoint = start_pair(natlab, procs, tmp_path, probe_interval="3s")
    port = c_endpoint.rpartition(":")[2]
    wait_path(node_a, "c", "direct", c_endpoint)
    with JsonNodeClient(Path(node_a.ready["socket"])) as api:

        def send_api(body: str) -> dict[str, Any]:
            return api.msg_wait(api.msg_send("c", body.encode())["message_id"], 30)

        sent = send_api("before")
        assert (sent["status"], sent["path"]) == ("delivered", "direct"), sent

        # Firewall C's listener (the established connection included): silently dropped.
        natlab.exec("c", "nft", "add", "table", "inet", "fwtest", check=True)
        natlab.exec(
            "c", "nft", "add", "chain", "inet", "fwtest", "input",
            "{ type filter hook input priority 0; policy accept; }", check=True,
        )  # fmt: skip
        natlab.exec(
            "c", "nft", "add", "rule", "inet", "fwtest", "input", "tcp", "dport", port, "drop", check=True
        )
        try:
            # The next message tries the direct connection, gives up, and the relay delivers it.
            # What gave up is the connection's liveness pings (within about
            # direct.dial_timeout), not the batch's call deadline ("no answer in
            # time"): the open stream failed, or, if the pings found the path dead
            # before the message was sent, dialling again timed out.
            sent = send_api("firewalled")
            assert (sent["status"], sent["path"]) == ("delivered", "relay"), sent
            log = node_a.log_path.read_text(errors="replace")
            failed = re.search(r"send to \S+ via direct failed: " + re.escape(c_endpoint) + ": (.*)", log)
            assert failed is not None, log[-3000:]
            reason = failed.group(1)
            assert reason.startswith("UNAVAILABLE") or reason == "dial timed out", failed.group(0)
            # The endpoint is now known to be broken: later messages go straight to the relay.
            wait_path(node_a, "c", "unreachable", c_endpoint)
            sent = send(node_a, "c", "still firewalled")
            assert (sent["status"], sent["path"]) == ("delivered", "relay"), sent
        finally:
            natlab.exec("c", "nft", "delete", "table", "inet", "fwtest", check=True)

    # The firewall is gone: the next probe round upgrades again.
    wait_path(node_a, "c", "direct", c_endpoint)
    sent = send(node_a, "c", "after")
    assert (sent["status"], sent["path"]) == ("delivered", "direct"), sent

    # Nothing lost, nothing twice.
    assert [m["body"] for m in node_c.cli("inbox", "list")] == [
        "before",
        "firewalled",
        "still firewalled",
        "after",
    ]
    counters = status(node_a)["counters"]
    assert counters["send:delivered:direct"] == 2, counters
    assert counters["send:delivered:relay"] == 3, counters  # the hello and the two firewalled
