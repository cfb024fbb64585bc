"""Unit tests of the ``ratelimit`` plugin: keying, eviction, hook glue (the
bucket itself is tmax_core.tokenbucket, tested in test_tokenbucket.py).

Time comes from an injectable fake clock: no sleeps.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tmax_core.config import Config, build_registry
from tmax_core.errors import Reason
from tmax_core.model import Friend, IngressMeta, IngressSource, OutboxEntry, RateLimit, ReceivedMessage
from tmax_core.plugin.helpers import PluginStates
from tmax_core.plugin.manager import create_plugin_manager
from tmax_core.store import EXPIRED_ERROR, Store
from tmax_mesh_ratelimit import plugin as rl_plugin
from tmax_mesh_ratelimit.limiter import RateLimiter

ME = b"\x01" * 20
X = b"\x0a" * 20
Y = b"\x0b" * 20
DIRECT_A = IngressSource("direct", "ipv4:10.0.0.1")
DIRECT_B = IngressSource("direct", "ipv4:10.0.0.2")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_limiter(clock: FakeClock, **kw: float) -> RateLimiter:
    params = dict(rate=5.0, burst=20, source_rate=50.0, source_burst=200, max_buckets=1000)
    params.update(kw)
    return RateLimiter(clock=clock, **params)  # type: ignore[arg-type]


def friend(node_id: bytes = X, rate_limit: RateLimit | None = None) -> Friend:
    return Friend(node_id=node_id, public_key=b"\x02" * 33, rate_limit=rate_limit)


def meta(claimed: bytes = X, known: Friend | None = None, *, has_invite: bool = False) -> IngressMeta:
    return IngressMeta(
        message_id=b"\x00" * 16,
        from_node_id=claimed,
        to_node_id=ME,
        timestamp_ms=0,
        size=100,
        has_invite=has_invite,
        friend=known,
    )


def retry_ms(detail: str) -> int:
    match = re.search(r"retry after (\d+) ms", detail)
    assert match, detail
    return int(match.group(1))


# ------------------------------------------------------------------ friend bucket


def test_friend_bucket_rate_and_burst_with_retry_after(clock: FakeClock) -> None:
    lim = make_limiter(clock, rate=1.0, burst=3)
    x = friend()
    for _ in range(3):
        assert lim.precheck(meta(X, x), DIRECT_A) is None
        assert lim.charge_verified(X, None) is None
    verdict = lim.precheck(meta(X, x), DIRECT_A)  # empty: refused before any crypto
    assert verdict is not None and verdict.reason == Reason.RATE_LIMITED
    assert retry_ms(verdict.detail) == 1000
    assert lim.charge_verified(X, None) is not None
    clock.advance(0.4)
    verdict = lim.precheck(meta(X, x), DIRECT_A)
    assert verdict is not None and retry_ms(verdict.detail) == 600
    clock.advance(0.6)
    assert lim.precheck(meta(X, x), DIRECT_A) is None
    assert lim.charge_verified(X, None) is None


def test_invite_granted_limit_beats_config(clock: FakeClock) -> None:
    lim = make_limiter(clock, rate=100.0, burst=50)
    granted = RateLimit(rate_per_s=0.5, burst=2)
    results = [lim.charge_verified(X, granted) for _ in range(3)]
    assert results[:2] == [None, None]
    assert results[2] is not None and retry_ms(results[2].detail) == 2000
    # a friend without a grant gets the config default
    assert all(lim.charge_verified(Y, None) is None for _ in range(50))
    assert lim.charge_verified(Y, None) is not None


def test_changed_grant_reconfigures_and_caps(clock: FakeClock) -> None:
    lim = make_limiter(clock)
    assert lim.charge_verified(X, RateLimit(1.0, 10)) is None  # 9 left
    assert lim.charge_verified(X, RateLimit(1.0, 2)) is None  # capped at 2, then one taken
    assert lim.charge_verified(X, RateLimit(1.0, 2)) is None
    assert lim.charge_verified(X, RateLimit(1.0, 2)) is not None


def test_forged_claims_do_not_drain_the_friend_bucket(clock: FakeClock) -> None:
    """Forged envelopes claiming X pass the precheck (they then fail signature
    verification in the core) and never take X's tokens, even from X's own source."""
    lim = make_limiter(clock, rate=1.0, burst=3, source_burst=10_000)
    x = friend(rate_limit=RateLimit(1.0, 3))
    for _ in range(1000):
        for src in (DIRECT_A, DIRECT_B):
            assert lim.precheck(meta(X, x), src) is None
    # X's genuine, verified messages still get the whole burst
    assert [lim.charge_verified(X, x.rate_limit) for _ in range(3)] == [None, None, None]
    assert lim.charge_verified(X, x.rate_limit) is not None


def test_genuinely_drained_friend_is_refused_cheaply_from_any_source(clock: FakeClock) -> None:
    lim = make_limiter(clock, rate=1.0, burst=1)
    x = friend()
    assert lim.charge_verified(X, None) is None
    for src in (DIRECT_A, DIRECT_B, IngressSource("relay", "0x" + X.hex())):
        verdict = lim.precheck(meta(X, x), src)
        assert verdict is not None and verdict.reason == Reason.RATE_LIMITED
    assert lim.precheck(meta(Y, friend(Y)), DIRECT_A) is None  # another friend is unaffected


def test_precheck_peek_creates_no_friend_bucket(clock: FakeClock) -> None:
    lim = make_limiter(clock)
    lim.precheck(meta(X, friend()), DIRECT_A)
    assert lim.stats()["friend_buckets"] == 0 and lim.stats()["source_buckets"] == 1


# ------------------------------------------------------------------ source bucket


def test_source_bucket_charges_every_envelope_and_is_per_source(clock: FakeClock) -> None:
    lim = make_limiter(clock, source_rate=2.0, source_burst=5)
    for _ in range(5):  # unknown senders with an invite: the source bucket only
        assert lim.precheck(meta(Y, None, has_invite=True), DIRECT_A) is None
    verdict = lim.precheck(meta(Y, None, has_invite=True), DIRECT_A)
    assert verdict is not None and verdict.reason == Reason.RATE_LIMITED
    assert "source" in verdict.detail and retry_ms(verdict.detail) == 500
    # a genuine friend on the same source is throttled too (the shared-source limit) ...
    assert lim.precheck(meta(X, friend()), DIRECT_A) is not None
    # ... but not on another source, and the flood took nothing from X's friend bucket
    assert lim.precheck(meta(X, friend()), DIRECT_B) is None
    assert lim.stats()["friend_buckets"] == 0
    clock.advance(0.5)
    assert lim.precheck(meta(X, friend()), DIRECT_A) is None


def test_relay_sources_are_keyed_by_the_stamped_sender(clock: FakeClock) -> None:
    lim = make_limiter(clock, source_rate=1.0, source_burst=2)
    relay_z = IngressSource("relay", "0x" + "0c" * 20)
    relay_x = IngressSource("relay", "0x" + X.hex())
    for _ in range(2):
        assert lim.precheck(meta(X, friend()), relay_z) is None
    assert lim.precheck(meta(X, friend()), relay_z) is not None
    assert lim.precheck(meta(X, friend()), relay_x) is None


def test_rotating_ipv6_addresses_in_one_64_share_a_source_bucket(clock: FakeClock) -> None:
    """One host owns a whole /64: a new address per envelope must not mean a
    new allowance. IPv6 sources are keyed by /64, IPv4 ones by address."""
    lim = make_limiter(clock, source_rate=1.0, source_burst=3)
    # As PeerService sees them: gRPC percent-encodes the brackets.
    rotating = [IngressSource("direct", f"ipv6:%5B2001:db8:1:2::{i:x}%5D") for i in range(1, 5)]
    for source in rotating[:3]:
        assert lim.precheck(meta(Y, None, has_invite=True), source) is None
    verdict = lim.precheck(meta(Y, None, has_invite=True), rotating[3])
    assert verdict is not None and verdict.reason == Reason.RATE_LIMITED, (
        "a fresh address in the /64 got a fresh bucket"
    )
    assert lim.stats()["source_buckets"] == 1
    # The next /64 is another source; so is every IPv4 address.
    assert (
        lim.precheck(meta(Y, None, has_invite=True), IngressSource("direct", "ipv6:%5B2001:db8:1:3::1%5D"))
        is None
    )
    assert lim.precheck(meta(Y, None, has_invite=True), DIRECT_A) is None
    assert lim.precheck(meta(Y, None, has_invite=True), DIRECT_B) is None


# ------------------------------------------------------------------ memory bound


def test_bucket_count_is_bounded(clock: FakeClock) -> None:
    lim = make_limiter(clock, max_buckets=8, source_rate=0.001, source_burst=5)
    for i in range(1000):
        source = IngressSource("direct", f"ipv4:10.1.{i // 256}.{i % 256}")
        lim.precheck(meta(Y, None, has_invite=True), source)
        assert len(lim) <= 8
    assert lim.evictions == 1000 - 8


def test_eviction_prefers_full_buckets_then_sources(clock: FakeClock) -> None:
    lim = make_limiter(clock, max_buckets=3, rate=0.001, burst=5, source_rate=0.001, source_burst=5)
    assert lim.charge_verified(X, None) is None  # X: 4 of 5 left (not full)
    lim.precheck(meta(Y, None, has_invite=True), DIRECT_A)  # A: not full
    lim.precheck(meta(Y, None, has_invite=True), DIRECT_B)  # B: not full
    # no bucket is full: the least recently used *source* (A) goes, X stays
    lim.precheck(meta(Y, None, has_invite=True), IngressSource("direct", "ipv4:10.0.0.3"))
    assert len(lim) == 3
    assert lim.stats() == {"friend_buckets": 1, "source_buckets": 2, "evictions": 1}
    assert [lim.charge_verified(X, None) for _ in range(5)][-1] is not None  # X kept its state

    lim2 = make_limiter(clock, max_buckets=2, rate=1.0, burst=5, source_rate=0.001, source_burst=5)
    assert lim2.charge_verified(X, None) is None
    lim2.precheck(meta(Y, None, has_invite=True), DIRECT_A)
    clock.advance(10)  # X refilled to full: it is evicted before the older-used-but-not-full A
    lim2.precheck(meta(Y, None, has_invite=True), DIRECT_B)
    assert lim2.stats()["friend_buckets"] == 0 and lim2.stats()["source_buckets"] == 2


def test_only_friends_left_evicts_least_recently_used_friend(clock: FakeClock) -> None:
    lim = make_limiter(clock, max_buckets=2, rate=0.001, burst=5)
    lim.charge_verified(X, None)
    lim.charge_verified(Y, None)
    lim.charge_verified(X, None)  # Y is now the least recently used
    lim.charge_verified(b"\x0c" * 20, None)
    assert len(lim) == 2
    assert lim.charge_verified(Y, RateLimit(0.001, 1)) is None  # a fresh bucket for Y


# ------------------------------------------------------------------ hook glue


class FakeNode:
    """The members of NodeAPI the plugin uses."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.friends: dict[bytes, Friend] = {}
        self.plugin_state = PluginStates().get


@pytest.fixture
def pm_and_node() -> tuple[Any, FakeNode]:
    pm = create_plugin_manager(load_entrypoints=False)
    pm.register(rl_plugin, name="ratelimit")
    registry = build_registry(pm)
    config = Config.load(
        None,
        registry,
        env={"TMAX_MESH_RATELIMIT_RATE": "1", "TMAX_MESH_RATELIMIT_BURST": "2"},
    )
    return pm, FakeNode(config)


def received(sender: bytes) -> ReceivedMessage:
    return ReceivedMessage(
        message_id=b"\x00" * 16,
        from_node_id=sender,
        from_alias=None,
        to_node_id=ME,
        sent_at_ms=0,
        received_at_ms=0,
        scope="message",
        content_type="text/plain",
        body=b"",
    )


def test_config_keys_are_declared(pm_and_node: tuple[Any, FakeNode]) -> None:
    _, node = pm_and_node
    cfg = node.config
    assert cfg.get("ratelimit.rate") == 1.0 and cfg.get("ratelimit.burst") == 2
    assert cfg.get("ratelimit.source_rate") == 50.0
    assert cfg.get("ratelimit.source_burst") == 200
    assert cfg.get("ratelimit.max_buckets") == 10000


def test_hooks_enforce_the_node_config_and_spare_first_contact(pm_and_node: tuple[Any, FakeNode]) -> None:
    pm, node = pm_and_node
    hook = pm.hook
    x = friend()
    # first contact (not a stored friend yet): not charged to the new friend's bucket
    assert all(hook.tmax_ingress_check(message=received(X), friend=x, node=node) == [] for _ in range(5))
    node.friends[X] = x
    checks = [hook.tmax_ingress_check(message=received(X), friend=x, node=node) for _ in range(3)]
    assert checks[:2] == [[], []]  # ratelimit.burst = 2
    assert [v.reason for v in checks[2]] == [Reason.RATE_LIMITED]
    pre = hook.tmax_ingress_precheck(meta=meta(X, x), source=DIRECT_A, node=node)
    assert [v.reason for v in pre] == [Reason.RATE_LIMITED]
    assert rl_plugin.limiter_for(node) is rl_plugin.limiter_for(node)  # one limiter per node


# ------------------------------------------------------------------ core: the sender keeps the reason


def test_expired_outbox_entry_keeps_the_last_rejection(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db")
    try:
        for n, error in ((1, "rejected: rate_limited (retry after 800 ms)"), (2, None)):
            store.outbox_put_many(
                [
                    OutboxEntry(
                        message_id=bytes([n]) * 16,
                        to_node_id=X,
                        scope="message",
                        content_type="text/plain",
                        body=b"",
                        created_at_ms=0,
                        expires_at_ms=10,
                        error=error,
                    )
                ]
            )
        assert len(store.outbox_expire(100)) == 2
        first, second = store.outbox_get(b"\x01" * 16), store.outbox_get(b"\x02" * 16)
        assert first is not None and second is not None
        assert first.error == f"{EXPIRED_ERROR} (last error: rejected: rate_limited (retry after 800 ms))"
        assert second.error == EXPIRED_ERROR
    finally:
        store.close()
