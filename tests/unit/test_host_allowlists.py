"""The host's compact allow lists and the remembered lists of offline nodes."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from tmax_mesh_relay import allowlists
from tmax_mesh_relay.allowlists import ENTRY_OVERHEAD, RememberedAllowLists

ids = st.binary(min_size=20, max_size=20)
FP = allowlists.Fingerprints()


@given(st.lists(ids, max_size=60), ids)
def test_contains_matches_a_set(members: list[bytes], probe: bytes) -> None:
    packed = FP.pack(members)
    assert allowlists.count(packed) == len(set(members))
    for member in members:
        assert FP.contains(packed, member)
    assert FP.contains(packed, probe) == (probe in set(members))


def test_empty_list_and_other_lengths() -> None:
    packed = FP.pack([b"a" * 20, b"b" * 20])
    assert not FP.contains(packed, b"a" * 19) and not FP.contains(packed, b"a" * 40)
    assert not FP.contains(b"", b"a" * 20)


def test_compact_size_and_keyed_per_process() -> None:
    members = [os.urandom(20) for _ in range(1000)]
    packed = FP.pack(members)
    assert isinstance(packed, bytes) and len(packed) == 8_000
    # Another key (another host process) gives other fingerprints: nothing to precompute.
    assert allowlists.Fingerprints().pack(members) != packed


def test_remembered_lists_expire_and_are_bounded() -> None:
    r = RememberedAllowLists(ttl_s=10, max_bytes=2 * (16 + ENTRY_OVERHEAD))
    a, b, c = (bytes([n]) * 20 for n in (1, 2, 3))
    two = FP.pack([b"x" * 20, b"y" * 20])
    assert r.remember(a, two, now=0) == 0 and r.remember(b, two, now=1) == 0
    assert r.remember(c, two, now=2) == 1  # over the budget: the oldest disconnect goes
    assert r.get(a, now=3) is None and r.get(b, now=3) == two and r.get(c, now=3) == two
    assert r.get(b, now=11) is None  # past its TTL
    assert r.expire(now=12) == 1 and len(r) == 0 and r.bytes == 0


def test_forget_on_registration_and_refresh_on_disconnect() -> None:
    r = RememberedAllowLists(ttl_s=10, max_bytes=10_000)
    a = b"a" * 20
    r.remember(a, b"", now=0)
    r.forget(a)
    assert r.get(a, now=1) is None and r.bytes == 0
    r.remember(a, FP.pack([b"f" * 20]), now=5)
    r.remember(a, FP.pack([b"g" * 20]), now=6)  # a newer disconnect replaces the list
    assert r.get(a, now=15) == FP.pack([b"g" * 20]) and len(r) == 1
