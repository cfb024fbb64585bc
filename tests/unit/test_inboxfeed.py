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
