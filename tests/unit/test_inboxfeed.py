"""The inbox feed: bounded per-watcher buffers, lagging watchers, close."""

from __future__ import annotations

import asyncio

import pytest

from tmax_core import inboxfeed
from tmax_core.inboxfeed import InboxFeed
from tmax_core.model import InboxMessage


def row(n: int) -> tuple[int, InboxMessage]:
    return n, InboxMessage(
        message_id=n.to_bytes(16, "big"),
        from_node_id=bytes(20),
        from_alias=None,
        sent_at_ms=n,
        received_at_ms=n,
        scope="message",
        content_type="text/plain",
        body=b"x",
    )


async def test_published_rows_reach_every_watch_in_order() -> None:
    feed = InboxFeed()
    with feed.subscribe() as w1, feed.subscribe() as w2:
        feed.publish([row(1), row(2)])
        feed.publish([row(3)])
        await asyncio.wait_for(w1.wait(), 1)
        assert [r for r, _ in w1.take()] == [1, 2, 3]
        assert [r for r, _ in w2.take()] == [1, 2, 3]
        assert w1.take() == []
        assert not w1.lagging


async def test_a_watch_past_its_buffer_lags_instead_of_growing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inboxfeed, "WATCH_BUFFER", 3)
    feed = InboxFeed()
    with feed.subscribe() as slow:
        feed.publish([row(1), row(2)])
        feed.publish([row(3), row(4)])  # would hold 4 > 3
        assert slow.lagging
        assert slow.take() == []  # dropped: the watcher catches up from the database
        feed.publish([row(5)])  # while lagging nothing is buffered
        assert slow.take() == []
        await asyncio.wait_for(slow.wait(), 1)  # but it is woken


async def test_unsubscribed_watch_gets_nothing_and_close_ends_watches() -> None:
    feed = InboxFeed()
    with feed.subscribe() as gone:
        pass
    feed.publish([row(1)])
    assert gone.take() == []
    with feed.subscribe() as w:
        feed.close()
        await asyncio.wait_for(w.wait(), 1)
        assert w.closed


class Table:
    """Committed inbox rows, as ``read_after`` sees them."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, InboxMessage]] = []
        self.reads = 0

    def commit(self, *rowids: int) -> list[tuple[int, InboxMessage]]:
        rows = [row(n) for n in rowids]
        self.rows += rows
        return rows

    async def read_after(self, rowid: int) -> list[tuple[int, InboxMessage]]:
        self.reads += 1
        return sorted(r for r in self.rows if r[0] > rowid)


async def collect(watch: inboxfeed.InboxWatch, last: int, table: Table, n: int) -> list[int]:
    got: list[int] = []

    async def run() -> None:
        async for message in inboxfeed.follow(watch, last, table.read_after):
            got.append(int.from_bytes(message.message_id, "big"))
            if len(got) == n:
                return

    await asyncio.wait_for(run(), 2)
    return got


async def test_follow_reads_rows_published_out_of_order_once() -> None:
    """A commit published after a later one (loop vs database thread): the gap
    sends the watcher to the database; the late rows are not yielded again."""
    feed, table = InboxFeed(), Table()
    with feed.subscribe() as watch:
        early = table.commit(*range(90, 101))  # committed first, published last
        feed.publish(table.commit(101, 102, 103, 104))
        feed.publish(early)
        feed.publish(table.commit(105))
        got = await collect(watch, 89, table, 16)
    assert got == list(range(90, 106))
    assert table.reads == 1


async def test_follow_uses_pushed_rows_without_reading_when_in_order() -> None:
    feed, table = InboxFeed(), Table()
    with feed.subscribe() as watch:
        feed.publish(table.commit(1, 2))
        feed.publish(table.commit(3))
        got = await collect(watch, 0, table, 3)
    assert got == [1, 2, 3]
    assert table.reads == 0


async def test_follow_catches_up_from_the_database_after_lagging(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inboxfeed, "WATCH_BUFFER", 2)
    feed, table = InboxFeed(), Table()
    with feed.subscribe() as watch:
        for n in range(1, 6):
            feed.publish(table.commit(n))
        assert watch.lagging
        got = await collect(watch, 0, table, 5)
    assert got == [1, 2, 3, 4, 5]
