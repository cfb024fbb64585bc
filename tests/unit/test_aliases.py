"""One rule for "the same alias" (issue 14, item 5): :func:`alias_key`, which
must agree with the store's ``COLLATE NOCASE`` unique alias column."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmax_core.aliases import alias_key
from tmax_core.errors import MeshError
from tmax_core.identity import NodeIdentity
from tmax_core.model import Friend
from tmax_core.store import Store

# ASCII letters in both cases, and letters whose Unicode case rules differ
# from ASCII's: É/é, ß (upper "SS"), the Kelvin sign (lower "k"), dotted
# capital I and dotless small i.
_TRICKY = "abBOoÉéßSsKk\u212aiI\u0130\u0131-2 "


def test_ascii_case_is_ignored_and_nothing_else_changes() -> None:
    assert alias_key("BoB") == alias_key("bob") == "bob"
    assert alias_key("Émile") == "Émile"
    assert alias_key("\u212a") != alias_key("k")  # the Kelvin sign is not a k to SQLite


@given(st.text(alphabet=_TRICKY, max_size=6), st.text(alphabet=_TRICKY, max_size=6))
def test_same_key_exactly_when_sqlite_nocase_says_equal(a: str, b: str) -> None:
    with sqlite3.connect(":memory:") as conn:
        (equal,) = conn.execute("SELECT ? = ? COLLATE NOCASE", (a, b)).fetchone()
    assert (alias_key(a) == alias_key(b)) == bool(equal)


@pytest.mark.parametrize(
    ("first", "second"),
    [("bob", "BOB"), ("Bob", "bob"), ("bob", "bob-2"), ("Émile", "émile"), ("k", "\u212a"), ("ß", "SS")],
)
def test_the_store_refuses_an_alias_exactly_when_its_key_is_taken(
    tmp_path: Path, first: str, second: str
) -> None:
    store = Store.open(tmp_path / "state.db")
    try:
        a, b = NodeIdentity.generate(), NodeIdentity.generate()
        store.add_friend(Friend(node_id=a.node_id, public_key=a.public_key, alias=first))
        new = Friend(node_id=b.node_id, public_key=b.public_key, alias=second)
        if alias_key(first) == alias_key(second):
            with pytest.raises(MeshError) as err:
                store.add_friend(new)
            assert err.value.code == "alias_taken"
        else:
            assert store.add_friend(new).alias == second
    finally:
        store.close()
