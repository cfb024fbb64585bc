"""The tests' one polling helper (tests/polling.py)."""

from __future__ import annotations

import itertools

import pytest

from tests.polling import poll, wait_for, wait_for_async


def test_wait_for_returns_the_first_truthy_answer() -> None:
    answers = iter([0, [], "ready", "later"])
    assert wait_for(lambda: next(answers), what="the third answer") == "ready"


def test_a_timeout_names_what_was_awaited() -> None:
    with pytest.raises(AssertionError, match=r"timed out after 0.05s waiting for the moon"):
        wait_for(lambda: False, 0.05, 0.01, what="the moon")


def test_poll_gives_up_quietly_with_the_last_answer() -> None:
    looks = itertools.count()
    assert poll(lambda: next(looks) < 0 and "never", 0.05, 0.01) is False
    assert next(looks) > 2  # it kept looking until the deadline


async def test_wait_for_async_awaits_a_coroutine_predicate() -> None:
    looks = itertools.count(1)

    async def third_look() -> int:
        n = next(looks)
        return n if n >= 3 else 0

    assert await wait_for_async(third_look, what="the third look") == 3


async def test_wait_for_async_times_out_naming_what() -> None:
    with pytest.raises(AssertionError, match="waiting for a frame that never comes"):
        await wait_for_async(lambda: None, 0.05, what="a frame that never comes")
