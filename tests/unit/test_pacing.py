"""The relay cluster's Nagle rule (tmax_mesh_relay.pacing): writes are held only
while frames arrive faster than BUSY_GAP_S apart, and then only until INTERVAL_S
after the previous write; idle gaps end the holding."""

from __future__ import annotations

import pytest

from tmax_mesh_relay.pacing import BUSY_GAP_S, INTERVAL_S, Pacer


def arrivals(pacer: Pacer, start: float, gap: float, n: int) -> float:
    now = start
    for _ in range(n):
        now += gap
        pacer.arrived(now)
    return now


def test_at_a_thousand_messages_a_second_nothing_waits() -> None:
    pacer = Pacer()
    now = 0.0
    for _ in range(1000):
        now = arrivals(pacer, now, 0.001, 1)
        assert pacer.hold(now) == 0.0
        pacer.wrote(now)


def test_under_load_a_write_waits_until_the_interval_after_the_previous_one() -> None:
    pacer = Pacer()
    now = arrivals(pacer, 0.0, BUSY_GAP_S / 10, 50)
    pacer.wrote(now)
    now = arrivals(pacer, now, BUSY_GAP_S / 10, 1)
    assert pacer.hold(now) == pytest.approx(INTERVAL_S - BUSY_GAP_S / 10)
    assert pacer.hold(now + INTERVAL_S) == 0.0  # the interval is over


def test_a_first_write_after_a_quiet_spell_is_not_held() -> None:
    pacer = Pacer()
    now = arrivals(pacer, 0.0, BUSY_GAP_S / 10, 50)
    pacer.wrote(now)
    now = arrivals(pacer, now, 0.005, 2)  # two idle gaps: no longer under load
    assert pacer.hold(now - INTERVAL_S / 2) == 0.0


def test_no_write_has_been_made_yet() -> None:
    pacer = Pacer()
    arrivals(pacer, 0.0, BUSY_GAP_S / 10, 50)
    assert pacer.hold(0.01) == 0.0
