"""Coalesces concurrent sends into shared outbox commits.

Each local-API ``MsgSend`` carries one message. Committed one by one, every
message pays a transaction, a sealing pass and a send attempt of its own
(a batch of one, one signed ack). :class:`SendQueue` lets concurrent callers
share that work the way one ``MsgSendBatch`` does: the groups waiting when a
commit starts go to the outbox together, one transaction for them all, sealed
together and sent in one batch.

gRPC hands the node its calls one at a time, each a thread wake-up after the
last, so concurrent calls seldom meet by themselves. A lone call (none
committed just before it) is committed at once, so an idle node answers as
fast as before; when calls arrive back to back (a commit starting within
``BUSY_GAP_S`` of the previous one's end: about 1,000 calls/s or more), the
queue first waits ``GATHER_S`` for the calls on their way, which then share
the commit. Each of those calls waits up to that much longer, but costs the
node less, so a saturated node answers more of them (issue 17: node A's CPU
per unary message about 30 % lower, bench/README.md).

What each caller sees does not change:

- a call returns only once its own messages are committed (durable);
- each caller gets its own entries back, or its own error: when a shared
  commit fails, each group is committed again on its own, so a bad message
  (e.g. a TTL the database cannot store) refuses only its caller's group, and
  a group stays all-or-nothing;
- a caller cancelled before its group was taken stores nothing; one cancelled
  later does not affect the others (its messages are committed and sent).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

FLUSH_MAX = 1024
"""Messages per shared commit, at most (a larger group still goes whole)."""
BUSY_GAP_S = 0.001
"""A commit starting within this long of the previous one's end is busy:
calls are arriving back to back."""
GATHER_S = 0.002
"""How long a busy commit waits for the calls on their way first."""


@dataclass
class _Group(Generic[T]):
    """One caller's messages and the future its call waits on."""

    items: list[T]
    future: asyncio.Future[list[T]]


class SendQueue(Generic[T]):
    """Runs ``commit`` over the groups of concurrent :meth:`submit` calls,
    one shared call at a time (see the module docstring)."""

    def __init__(
        self,
        commit: Callable[[list[T]], Awaitable[list[T]]],
        *,
        max_items: int = FLUSH_MAX,
        gather_s: float = GATHER_S,
    ) -> None:
        """``commit(items)`` commits ``items`` all or none and returns them."""
        self._commit = commit
        self._max_items = max_items
        self._gather_s = gather_s
        self._queue: deque[_Group[T]] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._last_end = float("-inf")  # loop time the last flush ended

    async def submit(self, items: list[T]) -> list[T]:
        """Commit ``items`` (all or none), sharing the commit with concurrent
        callers; returns what ``commit`` returned for them."""
        loop = asyncio.get_running_loop()
        group: _Group[T] = _Group(items, loop.create_future())
        self._queue.append(group)
        if self._flusher is None:
            # A task starts on the next loop pass: calls arriving in this one join it.
            self._flusher = loop.create_task(self._flush_all(), name="send-queue")
        return await group.future

    async def stop(self) -> None:
        """Cancel the commit under way, if any, and every call still waiting
        (the node is stopping). A commit already handed to the database may
        still land: its messages are then sent after the next start."""
        flusher = self._flusher
        if flusher is not None:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)

    async def _flush_all(self) -> None:
        loop = asyncio.get_running_loop()
        busy = loop.time() - self._last_end < BUSY_GAP_S
        try:
            while self._queue:
                if busy:
                    await asyncio.sleep(self._gather_s)
                await self._flush(self._take())
                busy = True  # calls arrived during that commit: more are on their way
        finally:
            self._last_end = loop.time()
            self._flusher = None
            for group in self._queue:  # left only if cancelled (the node stopping)
                group.future.cancel()
            self._queue.clear()

    def _take(self) -> list[_Group[T]]:
        """The waiting groups whose callers still wait, up to ``max_items``
        messages (at least one group)."""
        groups: list[_Group[T]] = []
        count = 0
        while self._queue and (not groups or count + len(self._queue[0].items) <= self._max_items):
            group = self._queue.popleft()
            if not group.future.done():  # done already: its caller was cancelled, store nothing
                groups.append(group)
                count += len(group.items)
        return groups

    async def _flush(self, groups: list[_Group[T]]) -> None:
        if len(groups) > 1:
            try:
                done = await self._commit([item for group in groups for item in group.items])
            except asyncio.CancelledError:
                _cancel(groups)
                raise
            except Exception:
                # Commit each group on its own below (outbox rows are written by
                # message id, so a row the failed call may have left is rewritten).
                pass
            else:
                start = 0
                for group in groups:
                    _resolve(group, done[start : start + len(group.items)])
                    start += len(group.items)
                return
        for i, group in enumerate(groups):
            try:
                _resolve(group, await self._commit(group.items))
            except asyncio.CancelledError:
                _cancel(groups[i:])
                raise
            except Exception as err:
                if not group.future.done():
                    group.future.set_exception(err)


def _resolve(group: _Group[T], result: list[T]) -> None:
    if not group.future.done():
        group.future.set_result(result)


def _cancel(groups: list[_Group[T]]) -> None:
    for group in groups:
        group.future.cancel()
