from __future__ import annotations

import time

import pytest

from tmax_core.humantime import local, local_and_relative, relative, span

NOW = 1_796_408_800_272


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (42.9, "42 s"),
        (60, "1 min"),
        (3 * 60 + 59, "3 min"),
        (5 * 3600, "5 h"),
        (86400, "1 day"),
        (3 * 86400, "3 days"),
    ],
)
def test_span_uses_the_largest_whole_unit(seconds: float, text: str) -> None:
    assert span(seconds) == text


def test_relative_past_future_and_never() -> None:
    assert relative(NOW - 3 * 60_000, NOW) == "3 min ago"
    assert relative(NOW + 2 * 3_600_000, NOW) == "in 2 h"
    assert relative(NOW - 400, NOW) == "just now"
    assert relative(None, NOW) == relative(0, NOW) == "never"


def test_local_is_local_time_to_the_second() -> None:
    assert local(NOW) == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(NOW / 1000))
    assert local(None) == "-"
    assert local_and_relative(NOW - 90_000, NOW) == f"{local(NOW - 90_000)} (1 min ago)"
    assert local_and_relative(0, NOW) == "-"
