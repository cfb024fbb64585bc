"""The lab itself: masquerade, no inbound from the public side, LANs isolated."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.harness import ProcGroup
from tests.natlab.lab import PUB, RA_WAN, RB_WAN, A, B, C, NatLab, peer_echo_server, tcp_probe

pytestmark = pytest.mark.natlab


def test_topology_masquerade_and_isolation(natlab: NatLab, procs: ProcGroup, tmp_path: Path) -> None:
    pub = procs.add(peer_echo_server(natlab, "pub", PUB, tmp_path)).start()
    in_a = procs.add(peer_echo_server(natlab, "a", A, tmp_path)).start()
    in_b = procs.add(peer_echo_server(natlab, "b", B, tmp_path)).start()
    pub_addr, a_addr, b_addr = pub.ready["listen"], in_a.ready["listen"], in_b.ready["listen"]
    a_port = a_addr.rpartition(":")[2]

    # Outbound from both LANs works, and the public side sees the router's WAN address.
    ok, seen = tcp_probe(natlab, "a", pub_addr)
    assert ok, seen
    assert seen.split()[0] == RA_WAN
    ok, seen = tcp_probe(natlab, "b", pub_addr)
    assert ok, seen
    assert seen.split()[0] == RB_WAN
    ok, seen = tcp_probe(natlab, "c", pub_addr)  # C is public: not translated
    assert ok, seen
    assert seen.split()[0] == C

    # Inside the LAN, a sees itself.
    ok, seen = tcp_probe(natlab, "a", a_addr)
    assert ok and seen.split()[0] == A, seen

    # C gets a route to a's LAN through its router: the router must still drop
    # the unsolicited connection (forward chain), as it drops one to its own
    # WAN address (input chain).
    natlab.exec("c", "ip", "route", "add", "10.99.1.0/24", "via", RA_WAN, check=True)
    try:
        probes = {
            "c -> a private": ("c", a_addr),
            "pub -> a private": ("pub", a_addr),
            "c -> router a WAN": ("c", f"{RA_WAN}:{a_port}"),
            "a -> b private": ("a", b_addr),
            "b -> a private": ("b", a_addr),
        }
        with ThreadPoolExecutor(len(probes)) as pool:
            results = dict(
                zip(
                    probes,
                    pool.map(lambda p: tcp_probe(natlab, p[0], p[1], timeout=1.0), probes.values()),
                    strict=True,
                )
            )
    finally:
        natlab.exec("c", "ip", "route", "del", "10.99.1.0/24", check=True)
    leaks = {name: out for name, (ok, out) in results.items() if ok}
    assert not leaks, f"connections that the NAT must block went through: {leaks}"


def test_nat_type_knob(natlab: NatLab, procs: ProcGroup, tmp_path: Path) -> None:
    """Cone (default) keeps the source port; symmetric maps each flow to a random port."""
    pub = procs.add(peer_echo_server(natlab, "pub", PUB, tmp_path)).start()
    ports = (41001, 41002)
    seen = [tcp_probe(natlab, "a", pub.ready["listen"], source_port=p) for p in ports]
    assert all(ok for ok, _ in seen), seen
    assert [int(out.split()[1]) for _, out in seen] == list(ports)

    natlab.set_nat_type("symmetric")
    seen = [tcp_probe(natlab, "a", pub.ready["listen"], source_port=p + 10) for p in ports]
    assert all(ok for ok, _ in seen), seen
    assert [int(out.split()[1]) for _, out in seen] != [p + 10 for p in ports]


def test_nat_type_per_router_and_public(natlab: NatLab, procs: ProcGroup, tmp_path: Path) -> None:
    """The routers can differ; a ``public`` router forwards inbound connections to its host."""
    natlab.set_nat_type("public", router="ra")
    natlab.set_nat_type("symmetric", router="rb")
    assert natlab.nat_types == {"ra": "public", "rb": "symmetric"} and natlab.nat_type == "mixed"
    behind_a = procs.add(peer_echo_server(natlab, "a", "0.0.0.0", tmp_path)).start()
    port = behind_a.ready["listen"].rpartition(":")[2]
    # Unsolicited, from the public segment, to A's router: reaches A (source kept: no SNAT inbound).
    ok, out = tcp_probe(natlab, "c", f"{RA_WAN}:{port}")
    assert ok and out.split()[0] == C, out
    # B's symmetric router still drops unsolicited inbound traffic.
    ok, out = tcp_probe(natlab, "c", f"{RB_WAN}:{port}", timeout=0.5)
    assert not ok, out
    # A's outbound connections keep their source port (port-preserving, like cone).
    pub = procs.add(peer_echo_server(natlab, "pub", PUB, tmp_path)).start()
    ok, out = tcp_probe(natlab, "a", pub.ready["listen"], source_port=41021)
    assert ok and out.split() == [RA_WAN, "41021"], out
