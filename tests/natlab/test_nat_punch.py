"""TCP hole punching through real NAT (DESIGN §16): two nodes, each behind its
own router, no peer listener, both on one relay host. The host learns each
punch port's mapping and tells both when to dial; what happens then depends
on the routers' NAT types."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import ProcGroup, wait_for
from tests.natlab.lab import NatLab
from tests.natlab.punching import direct_view, punched, send, start_pair

pytestmark = pytest.mark.natlab


def test_cone_to_cone_punched_and_delivered_direct(natlab: NatLab, procs: ProcGroup, tmp_path: Path) -> None:
    pair = start_pair(natlab, procs, tmp_path)
    for node in (pair.a, pair.b):
        wait_for(lambda n=node: punched(n), what=f"{node.state_dir.name} punched")
    sent = [send(pair.a, pair.b.node_id, "a to b"), send(pair.b, "a", "b to a")]
    assert [(s["status"], s["path"]) for s in sent] == [("delivered", "direct")] * 2, sent
    assert pair.b.inbox_bodies() == ["a to b"] and pair.a.inbox_bodies() == ["b to a"]
    view = direct_view(pair.a)
    assert view["punch"]["attempts"] >= 1 and view["punch"]["last_failure"] is None, view


@pytest.mark.parametrize(("ra", "rb"), [("public", "cone"), ("cone", "public")])
def test_public_and_cone_direct_without_listener(
    natlab: NatLab, procs: ProcGroup, tmp_path: Path, ra: str, rb: str
) -> None:
    natlab.set_nat_type(ra, router="ra")
    natlab.set_nat_type(rb, router="rb")
    pair = start_pair(natlab, procs, tmp_path)
    for node in (pair.a, pair.b):
        wait_for(lambda n=node: punched(n), what=f"{node.state_dir.name} punched")
    sent = [send(pair.a, pair.b.node_id, "a to b"), send(pair.b, "a", "b to a")]
    assert [(s["status"], s["path"]) for s in sent] == [("delivered", "direct")] * 2, sent
    assert pair.b.inbox_bodies() == ["a to b"] and pair.a.inbox_bodies() == ["b to a"]


@pytest.mark.parametrize(("ra", "rb"), [("symmetric", "cone"), ("symmetric", "symmetric")])
def test_symmetric_stays_on_relay(natlab: NatLab, procs: ProcGroup, tmp_path: Path, ra: str, rb: str) -> None:
    natlab.set_nat_type(ra, router="ra")
    natlab.set_nat_type(rb, router="rb")
    pair = start_pair(natlab, procs, tmp_path)
    # A punch was tried, and failed (the symmetric side's mapping differs per flow).
    for node in (pair.a, pair.b):
        wait_for(
            lambda n=node: direct_view(n).get("punch", {}).get("last_failure"),
            what=f"{node.state_dir.name}'s first punch to fail",
        )
    bodies = [f"a{i}" for i in range(3)]
    sent = [send(pair.a, pair.b.node_id, body) for body in bodies] + [send(pair.b, "a", "b0")]
    assert [(s["status"], s["path"]) for s in sent] == [("delivered", "relay")] * 4, sent
    assert pair.b.inbox_bodies() == bodies and pair.a.inbox_bodies() == ["b0"]
    view = direct_view(pair.a)
    assert view["path"] == "unreachable" and view["via"] is None, view
