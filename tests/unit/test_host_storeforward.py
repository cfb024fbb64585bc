"""The host's bounded store-and-forward queues."""

from __future__ import annotations

from tmax_mesh_relay.storeforward import ITEM_OVERHEAD, QueueLimits, StoreAndForward


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


A, B, C = b"a" * 20, b"b" * 20, b"c" * 20


def store(**limits: float) -> tuple[StoreAndForward, Clock]:
    clock = Clock()
    return StoreAndForward(QueueLimits(**limits), clock), clock


def put(s: StoreAndForward, recipient: bytes, sender: bytes, n: int, size: int = 10) -> str | None:
    return s.put(recipient, s.new_item(sender, n.to_bytes(16, "big"), b"x" * size))


def test_fifo_and_dedup() -> None:
    s, _ = store()
    for i in range(3):
        assert put(s, B, A, i) is None
    assert put(s, B, A, 1) is None  # the same message again: stored once
    assert len(s) == 3 and s.depth(B) == 3
    items, expired = s.take_all(B)
    assert [int.from_bytes(i.message_id, "big") for i in items] == [0, 1, 2] and expired == 0
    assert len(s) == 0 and s.total_bytes == 0 and s.take_all(B) == ([], 0)


def test_per_recipient_count_and_bytes() -> None:
    s, _ = store(max_messages=2)
    assert put(s, B, A, 0) is None and put(s, B, A, 1) is None
    assert put(s, B, A, 2) == "queue_full"
    assert put(s, C, A, 2) is None  # other recipients are unaffected
    s, _ = store(max_bytes=2 * (ITEM_OVERHEAD + 10))
    assert put(s, B, A, 0) is None and put(s, B, A, 1) is None
    assert put(s, B, A, 2) == "queue_full"
    assert put(s, C, A, 0, size=10_000) == "queue_full"  # larger than a whole queue


def test_sender_and_total_caps() -> None:
    s, _ = store(sender_bytes=2 * (ITEM_OVERHEAD + 10))
    assert put(s, B, A, 0) is None and put(s, C, A, 1) is None
    assert put(s, B, A, 2) == "sender_full"
    assert put(s, B, C, 2) is None  # another sender still gets room
    s, _ = store(total_bytes=2 * (ITEM_OVERHEAD + 10))
    assert put(s, B, A, 0) is None and put(s, C, B, 1) is None
    assert put(s, A, C, 2) == "host_full"


def test_max_recipients_refuses_unknown() -> None:
    s, _ = store(max_recipients=1)
    assert put(s, B, A, 0) is None
    assert put(s, C, A, 1) == "unknown_recipient"
    assert put(s, B, A, 1) is None  # an existing queue still takes more


def test_ttl() -> None:
    s, clock = store(ttl_s=10)
    put(s, B, A, 0)
    clock.now = 5
    put(s, B, A, 1)
    clock.now = 11
    items, expired = s.take_all(B)
    assert [int.from_bytes(i.message_id, "big") for i in items] == [1] and expired == 1
    put(s, C, A, 2)
    clock.now = 30
    assert s.expire() == 1 and len(s) == 0 and s.total_bytes == 0


def test_requeue_goes_first_and_respects_limits() -> None:
    s, clock = store(max_messages=3, ttl_s=10)
    for i in range(2):
        put(s, B, A, i)
    taken, _ = s.take_all(B)
    put(s, B, A, 5)
    put(s, B, A, 6)
    lost = s.requeue(B, taken)
    assert lost == 1  # room for one of the two
    items, _ = s.take_all(B)
    assert [int.from_bytes(i.message_id, "big") for i in items] == [0, 5, 6]
    clock.now = 100
    assert s.requeue(B, items) == 3  # expired meanwhile: dropped
