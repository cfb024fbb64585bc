"""The one way tests wait for a condition: poll it until it is truthy, and on
timeout fail saying what was awaited. Sync (``wait_for``, for processes and
threads) and async (``wait_for_async``, inside an event loop) share the same
schedule; ``poll`` and ``poll_async`` are the forms that give up quietly, for
callers that carry on after a timeout (escalate to SIGKILL, report and go on)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

DEFAULT_TIMEOUT_S = 20.0


def _pauses(timeout: float, interval: float) -> Iterator[float]:
    """How long to sleep before each next look, until ``timeout`` has passed."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        yield min(interval, left)


def _timed_out(timeout: float, what: str) -> AssertionError:
    return AssertionError(f"timed out after {timeout}s waiting for {what}")


def poll(predicate: Callable[[], Any], timeout: float = DEFAULT_TIMEOUT_S, interval: float = 0.05) -> Any:
    """Call ``predicate`` until it returns something truthy and return that;
    after ``timeout``, return its last (falsy) answer."""
    for pause in _pauses(timeout, interval):
        if value := predicate():
            return value
        time.sleep(pause)
    return predicate()  # one last look at the deadline


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = DEFAULT_TIMEOUT_S,
    interval: float = 0.05,
    *,
    what: str,
) -> Any:
    """``poll``, failing with ``what`` (required: the failure must say what
    never happened) if the condition never holds."""
    if value := poll(predicate, timeout, interval):
        return value
    raise _timed_out(timeout, what)


async def poll_async(
    predicate: Callable[[], Any | Awaitable[Any]], timeout: float = DEFAULT_TIMEOUT_S, interval: float = 0.01
) -> Any:
    """``poll`` inside an event loop; ``predicate`` may be a coroutine function."""

    async def look() -> Any:
        value = predicate()
        return await value if inspect.isawaitable(value) else value

    for pause in _pauses(timeout, interval):
        if value := await look():
            return value
        await asyncio.sleep(pause)
    return await look()


async def wait_for_async(
    predicate: Callable[[], Any | Awaitable[Any]],
    timeout: float = DEFAULT_TIMEOUT_S,
    interval: float = 0.01,
    *,
    what: str,
) -> Any:
    """``poll_async``, failing with ``what`` if the condition never holds."""
    if value := await poll_async(predicate, timeout, interval):
        return value
    raise _timed_out(timeout, what)
