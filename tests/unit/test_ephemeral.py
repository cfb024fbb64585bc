"""One-time ECDH pairs made ahead: handed out once, bounded, and good for sealing."""

from __future__ import annotations

import pytest

from tmax_core import envelope as env
from tmax_core.ephemeral import EphemeralPool
from tmax_core.identity import NodeIdentity


def test_pairs_made_ahead_are_handed_out_once_then_made_on_demand() -> None:
    bob = NodeIdentity.generate()
    pool = EphemeralPool(per_key=3)
    assert pool.wants(bob.public_key)
    pool.fill(bob.public_key)
    assert not pool.wants(bob.public_key)
    taken = [pool.take(bob.public_key) for _ in range(5)]  # 3 made ahead, 2 on demand
    assert len({public for public, _ in taken}) == 5
    assert pool.wants(bob.public_key)
    for public, secret in taken:  # each is a real ECDH with bob's key
        assert secret == bob.private_key.ecdh(public)


def test_pool_is_bounded_by_keys_least_recently_filled_first() -> None:
    keys = [NodeIdentity.generate().public_key for _ in range(3)]
    pool = EphemeralPool(per_key=1, max_keys=2)
    for key in keys:
        pool.fill(key)
    assert pool.wants(keys[0])  # dropped to make room
    assert not pool.wants(keys[1]) and not pool.wants(keys[2])


def test_sealed_with_a_pooled_pair_opens_and_a_bad_key_is_refused() -> None:
    alice, bob = NodeIdentity.generate(), NodeIdentity.generate()
    pool = EphemeralPool()
    pool.fill(bob.public_key)
    sealed = env.seal(
        alice,
        to_node_id=bob.node_id,
        to_public_key=bob.public_key,
        scope="message",
        content_type="text/plain",
        body=b"hi",
        ephemeral=pool.take(bob.public_key),
    )
    parsed = env.parse(sealed, 65536)
    env.verify(parsed)
    assert env.open_content(bob, parsed).body == b"hi"
    with pytest.raises(ValueError):
        pool.fill(b"\x02" + b"\xff" * 32)
