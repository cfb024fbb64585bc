"""The core token bucket (:mod:`tmax_core.tokenbucket`), used by ingress, the
relay host, the ``ratelimit`` plugin and the ``direct`` plugin's lookup pacer.
Times are passed explicitly: no sleeps."""

from __future__ import annotations

import pytest

from tmax_core.tokenbucket import TokenBucket


def test_burst_then_refill_with_retry_after() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after_ms(0.0) == 500
    assert not bucket.take(0.25)
    assert bucket.retry_after_ms(0.25) == 250
    assert bucket.take(0.5)
    assert bucket.retry_after_ms(0.5) == 500  # empty again after the take
    # refill is capped at the burst
    assert [bucket.take(3600.0) for _ in range(4)] == [True, True, True, False]


def test_retry_after_is_zero_with_a_token_and_ignores_float_noise() -> None:
    bucket = TokenBucket(rate=1.0, burst=1, now=0.0)
    assert bucket.retry_after_ms(0.0) == 0
    assert bucket.take(0.0)
    assert bucket.retry_after_ms(0.4) == 600  # 0.6000000001 s is still 600 ms


def test_clock_going_backwards_adds_nothing() -> None:
    bucket = TokenBucket(rate=1.0, burst=1, now=10.0)
    assert bucket.take(10.0)
    assert not bucket.take(0.0)
    assert not bucket.take(10.5)  # and the stamp did not move back to 0


def test_zero_burst_still_admits_one() -> None:
    bucket = TokenBucket(rate=1.0, burst=0, now=0.0)
    assert bucket.take(0.0) and not bucket.take(0.0)


def test_can_take_peeks_without_taking() -> None:
    bucket = TokenBucket(rate=1.0, burst=1, now=0.0)
    assert bucket.can_take(0.0) and bucket.can_take(0.0)
    assert bucket.take(0.0)
    assert not bucket.can_take(0.0)
    assert bucket.can_take(1.0)


def test_full_after_idle() -> None:
    bucket = TokenBucket(rate=1.0, burst=2, now=0.0)
    assert bucket.full(0.0)
    bucket.take(0.0)
    assert not bucket.full(0.5)
    assert bucket.full(1.0)


def test_reconfigure_keeps_tokens_capped_at_the_new_burst() -> None:
    bucket = TokenBucket(rate=1.0, burst=10, now=0.0)
    bucket.take(0.0)  # 9 left
    bucket.reconfigure(rate=100.0, burst=3)
    assert (bucket.rate, bucket.burst, bucket.tokens) == (100.0, 3.0, 3.0)
    bucket.reconfigure(rate=100.0, burst=50)  # a larger burst adds no tokens by itself
    assert bucket.tokens == 3.0
    assert bucket.full(1.0)  # refills at the new rate (47 tokens in 0.47 s)
    bucket.reconfigure(rate=1.0, burst=0)
    assert bucket.burst == 1.0


def test_reserve_paces_instead_of_refusing() -> None:
    paced = TokenBucket(rate=10, burst=1, now=0.0)
    assert paced.reserve(0.0) == 0.0
    assert paced.reserve(0.0) == pytest.approx(0.1)
    assert paced.reserve(0.0) == pytest.approx(0.2)  # debt accumulates
    assert paced.reserve(1.0) == 0.0
