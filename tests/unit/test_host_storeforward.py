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


def test_two_senders_may_use_the_same_message_id() -> None:
    s, _ = store()
    assert put(s, C, A, 7) is None and put(s, C, B, 7) is None
    items, _ = s.take_all(C)
    assert [(i.sender, i.message_id) for i in items] == [
        (A, (7).to_bytes(16, "big")),
        (B, (7).to_bytes(16, "big")),
    ]


def test_a_full_queue_is_shared_fairly_among_senders() -> None:
    s, _ = store(max_messages=6)
    for i in range(6):
        assert put(s, C, A, i) is None  # an idle queue: one sender may fill it
    for i in range(3):
        assert put(s, C, B, 100 + i) is None  # the other pushes out A's oldest, up to half
    assert put(s, C, B, 103) == "queue_full"  # beyond its share
    assert put(s, C, A, 6) == "queue_full"  # A is at its share now
    assert s.evicted == 3
    items, _ = s.take_all(C)
    assert [(i.sender, int.from_bytes(i.message_id, "big")) for i in items] == [
        (A, 3),
        (A, 4),
        (A, 5),
        (B, 100),
        (B, 101),
        (B, 102),
    ]
    assert s.total_bytes == 0 and len(s) == 0


def test_fair_share_counts_bytes_too() -> None:
    item = ITEM_OVERHEAD + 10
    s, _ = store(max_bytes=4 * item)
    big = 3 * item - ITEM_OVERHEAD  # one message of A takes three slots' worth of bytes
    assert put(s, C, A, 0, size=big) is None and put(s, C, A, 1) is None
    assert put(s, C, B, 2) is None  # room for one more: no eviction
    assert put(s, C, B, 3) is None  # full: B (1/4) pushes out A's big message (4/4 of bytes)
    assert s.evicted == 1 and s.depth(C) == 3
    assert put(s, C, B, 4) is None and put(s, C, B, 5) == "queue_full"  # B at half the bytes


def test_a_third_sender_gets_a_third() -> None:
    s, _ = store(max_messages=9)
    for i in range(5):
        put(s, C, A, i)
    for i in range(4):
        put(s, C, B, 10 + i)
    for i in range(3):
        assert put(s, C, b"d" * 20, 20 + i) is None
    assert put(s, C, b"d" * 20, 23) == "queue_full"
    senders = [i.sender for i in s.take_all(C)[0]]
    assert (senders.count(A), senders.count(B), senders.count(b"d" * 20)) == (3, 3, 3)
