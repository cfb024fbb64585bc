"""The send coalescer (tmax_core/sendqueue.py): concurrent callers share one
commit, yet each gets its own result, its own error and its own cancellation;
and through a node on a real state database, a message the database refuses
fails only its own caller."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

import pytest

from tests.unit.nodefakes import core_config
from tmax_core.identity import NodeIdentity
from tmax_core.model import DEFAULT_SCOPE, Friend, InviteScope, OutgoingMessage
from tmax_core.node import Node
from tmax_core.plugin.manager import create_plugin_manager
from tmax_core.sendqueue import SendQueue
from tmax_core.store import Store


class FakeOutbox:
    """A commit that is all or nothing, like a transaction: it refuses the
    whole call if any item is ``"bad"``. With ``hold`` set, each commit waits
    for ``release`` (a commit in flight)."""

    def __init__(self, hold: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.stored: list[str] = []
        self.hold = hold
        self.release = asyncio.Event()
        self.in_flight = asyncio.Event()

    async def commit(self, items: list[str]) -> list[str]:
        self.calls.append(list(items))
        if self.hold:
            self.in_flight.set()
            await self.release.wait()
            self.release.clear()
        if "bad" in items:
            raise ValueError("bad message")
        self.stored += items
        return [item.upper() for item in items]


async def test_calls_in_one_loop_pass_share_one_commit_and_get_their_own_results() -> None:
    outbox = FakeOutbox()
    queue = SendQueue(outbox.commit)
    results = await asyncio.gather(queue.submit(["a"]), queue.submit(["b", "c"]), queue.submit(["d"]))
    assert results == [["A"], ["B", "C"], ["D"]]
    assert outbox.calls == [["a", "b", "c", "d"]]


async def test_a_lone_call_is_committed_at_once() -> None:
    """No gathering wait when nothing was committed just before: with an hour's
    gathering time, the call still returns."""
    outbox = FakeOutbox()
    queue = SendQueue(outbox.commit, gather_s=3600)
    assert await asyncio.wait_for(queue.submit(["a"]), 10) == ["A"]


async def test_calls_arriving_while_a_commit_is_in_flight_share_the_next_one() -> None:
    outbox = FakeOutbox(hold=True)
    queue = SendQueue(outbox.commit, gather_s=0)
    first = asyncio.ensure_future(queue.submit(["a"]))
    await outbox.in_flight.wait()
    outbox.in_flight.clear()
    later = [asyncio.ensure_future(queue.submit([x])) for x in ("b", "c", "d")]
    outbox.release.set()
    assert await first == ["A"]
    await outbox.in_flight.wait()  # the second commit, with everything that waited
    outbox.release.set()
    assert await asyncio.gather(*later) == [["B"], ["C"], ["D"]]
    assert outbox.calls == [["a"], ["b", "c", "d"]]


async def test_a_bad_message_refuses_only_its_callers_group() -> None:
    outbox = FakeOutbox()
    queue = SendQueue(outbox.commit)
    results = await asyncio.gather(
        queue.submit(["a"]), queue.submit(["b", "bad"]), queue.submit(["c"]), return_exceptions=True
    )
    assert results[0] == ["A"] and results[2] == ["C"]
    assert isinstance(results[1], ValueError)
    # The shared commit failed whole; then each group on its own: "b" went
    # with its group's bad message, and nothing was stored twice.
    assert outbox.stored == ["a", "c"]
    assert outbox.calls[0] == ["a", "b", "bad", "c"]


async def test_an_error_for_everyone_reaches_every_caller() -> None:
    async def broken(items: list[str]) -> list[str]:
        raise OSError("disk full")

    queue = SendQueue(broken)
    results = await asyncio.gather(queue.submit(["a"]), queue.submit(["b"]), return_exceptions=True)
    assert [type(r) for r in results] == [OSError, OSError]


async def test_a_caller_cancelled_before_its_commit_stores_nothing_and_the_others_go_on() -> None:
    outbox = FakeOutbox(hold=True)
    queue = SendQueue(outbox.commit, gather_s=0)
    first = asyncio.ensure_future(queue.submit(["a"]))
    await outbox.in_flight.wait()
    outbox.in_flight.clear()
    cancelled = asyncio.ensure_future(queue.submit(["b"]))
    kept = asyncio.ensure_future(queue.submit(["c"]))
    await asyncio.sleep(0)  # both are queued behind the commit in flight
    cancelled.cancel()
    outbox.release.set()
    assert await first == ["A"]
    await outbox.in_flight.wait()
    outbox.release.set()
    assert await kept == ["C"]
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert outbox.calls == [["a"], ["c"]]


async def test_a_caller_cancelled_during_its_commit_does_not_fail_the_others() -> None:
    outbox = FakeOutbox(hold=True)
    queue = SendQueue(outbox.commit)
    cancelled = asyncio.ensure_future(queue.submit(["a"]))
    kept = asyncio.ensure_future(queue.submit(["b"]))
    await outbox.in_flight.wait()  # both in one commit
    cancelled.cancel()
    outbox.release.set()
    assert await kept == ["B"]
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert outbox.stored == ["a", "b"]  # committed: it is sent like the rest


async def test_stop_cancels_the_commit_under_way_and_the_calls_waiting() -> None:
    outbox = FakeOutbox(hold=True)
    queue = SendQueue(outbox.commit, gather_s=0)
    in_flight = asyncio.ensure_future(queue.submit(["a"]))
    await outbox.in_flight.wait()
    waiting = asyncio.ensure_future(queue.submit(["b"]))
    await asyncio.sleep(0)  # queued behind the commit in flight
    await queue.stop()
    for call in (in_flight, waiting):
        with pytest.raises(asyncio.CancelledError):
            await call
    assert outbox.calls == [["a"]]
    # Nothing is left stuck: a later call is committed.
    outbox.hold = False
    assert await queue.submit(["c"]) == ["C"]


async def test_a_commit_takes_at_most_max_items_but_never_splits_a_group() -> None:
    outbox = FakeOutbox()
    queue = SendQueue(outbox.commit, max_items=3, gather_s=0)
    results = await asyncio.gather(
        queue.submit(["a", "b"]), queue.submit(["c", "d"]), queue.submit(["e", "f", "g", "h"])
    )
    assert results == [["A", "B"], ["C", "D"], ["E", "F", "G", "H"]]
    assert outbox.calls == [["a", "b"], ["c", "d"], ["e", "f", "g", "h"]]


# ---------------------------------------------------------------- through a node


@pytest.fixture
async def node(tmp_path: Path):
    """A node on a real state database, not started (no transports: the
    messages stay queued in the outbox)."""
    n = Node(
        state_dir=tmp_path,
        config=core_config(),
        pm=create_plugin_manager(load_entrypoints=False),
        identity=NodeIdentity.generate(),
        store=Store.open(tmp_path / "state.db"),
        socket_path=tmp_path / "node.sock",
    )
    n.scopes[DEFAULT_SCOPE] = InviteScope(DEFAULT_SCOPE, "plain messages")
    try:
        yield n
    finally:
        await n.stop()


async def test_concurrent_sends_on_a_node_fail_only_the_one_the_database_refuses(node: Node) -> None:
    other = NodeIdentity.generate()
    friend = Friend(node_id=other.node_id, public_key=other.public_key, alias="bob")
    node.friends[friend.node_id] = friend
    sends = [
        node.send_many([OutgoingMessage("bob", b"one")]),
        # An expiry time SQLite cannot store: refused when committed, not before.
        node.send_many([OutgoingMessage("bob", b"two"), OutgoingMessage("bob", b"x", ttl_ms=1 << 63)]),
        node.send_many([OutgoingMessage("bob", b"three")]),
    ]
    results = await asyncio.gather(*sends, return_exceptions=True)
    assert isinstance(results[1], OverflowError)
    # Both other callers' messages are committed (a call returns only then), and only they.
    counts = await node.db(node.store.outbox_counts)
    assert counts["queued"] == 2 and sum(counts.values()) == 2
    bodies = [(await node.message_status(cast(list, r)[0].message_id)).body for r in (results[0], results[2])]
    assert bodies == [b"one", b"three"]
