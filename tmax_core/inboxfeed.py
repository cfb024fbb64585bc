"""Live fan-out of newly stored inbox messages to ``inbox watch`` streams.

The inbox sink publishes the rows it has just committed; each watch keeps
them in a bounded buffer, so a new message reaches a watcher without another
database query. The database stays the source of truth, and :func:`follow`
reads from it whenever the pushed rows cannot be trusted to be complete:

* a watch that falls further behind than its buffer drops the buffer and is
  marked *lagging*;
* rows arrive out of order: commits are serialized, so rowids grow in commit
  order, but one commit's rows can be published after a later commit's (a
  small commit runs on the event loop and publishes at once, while an earlier
  one on the database thread still waits for its callback). A pushed row past
  a gap means rows committed before it are not here yet.

Either way the watcher reads the rows after the last one it yielded. Memory
stays bounded per watcher, nothing is missed, nothing is yielded twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

from tmax_core.model import InboxMessage

WATCH_BUFFER = 4096  # rows held per watcher before it catches up from the database

Row = tuple[int, InboxMessage]  # (inbox rowid, message)


class InboxWatch:
    """One watcher's view of the feed."""

    def __init__(self) -> None:
        self.rows: deque[Row] = deque()
        self.lagging = False
        self.closed = False
        self._wake = asyncio.Event()

    def take(self) -> list[Row]:
        """The buffered rows, oldest first (empties the buffer)."""
        rows = list(self.rows)
        self.rows.clear()
        return rows

    async def wait(self) -> None:
        await self._wake.wait()
        self._wake.clear()

    def offer(self, rows: list[Row]) -> None:
        if not self.lagging:
            if len(self.rows) + len(rows) > WATCH_BUFFER:
                self.lagging = True
                self.rows.clear()
            else:
                self.rows.extend(rows)
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()


class InboxFeed:
    def __init__(self) -> None:
        self._watches: set[InboxWatch] = set()

    def publish(self, rows: list[Row]) -> None:
        """Rows just committed to the inbox, in rowid order."""
        if rows:
            for watch in self._watches:
                watch.offer(rows)

    def close(self) -> None:
        """The node is stopping: every watch ends."""
        for watch in self._watches:
            watch.close()

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[InboxWatch]:
        watch = InboxWatch()
        self._watches.add(watch)
        try:
            yield watch
        finally:
            self._watches.discard(watch)


async def follow(
    watch: InboxWatch, last: int, read_after: Callable[[int], Awaitable[list[Row]]]
) -> AsyncIterator[InboxMessage]:
    """New messages in rowid order, each once: those after rowid ``last``.

    ``read_after(rowid)`` reads the committed rows after ``rowid`` from the
    database. Until the watch is closed."""
    while not watch.closed:
        await watch.wait()
        if watch.lagging:
            watch.lagging = False
            watch.take()  # the read below returns these too
            rows = await read_after(last)
        else:
            rows = watch.take()
        for rowid, message in rows:
            if rowid <= last:
                continue
            if rowid > last + 1:  # past a gap: read what was committed before it
                for rowid_read, message_read in await read_after(last):
                    last = rowid_read
                    yield message_read
                continue
            last = rowid
            yield message
