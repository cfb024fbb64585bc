"""Friend aliases: the one rule for names this node's user picks and for
names friends suggest (an invite's alias, a contact card's alias).

An alias is shown wherever a friend is, and typed where a friend is named
(``--to``, ``friends block``). So it must not look like a node id (``0x...``
is how ids are written, and ``find_friend`` reads it as one), must not hold
control or format characters (ANSI escapes, bidi overrides, line breaks that
forge lines in listings), and has a bounded length.

Two aliases are the same name when their :func:`alias_key` is equal; every
place that compares aliases goes through it.
"""

from __future__ import annotations

import string
import unicodedata

from tmax_core.invites import MAX_ALIAS_LEN

# Control, format (bidi overrides, zero-width), line/paragraph separators,
# surrogates, private use and unassigned code points.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def alias_key(alias: str) -> str:
    """The form aliases are compared in: ASCII letters in lower case, nothing else changed.

    This is exactly SQLite's ``COLLATE NOCASE``, which the store's unique
    alias column enforces. A wider rule (Unicode case folding) would let the
    store keep "Émile" and "émile" for two friends while a lookup by either
    name matched both.
    """
    return alias.translate(_ASCII_LOWER)


def alias_problem(alias: str) -> str | None:
    """Why ``alias`` cannot name a friend, or ``None`` if it can."""
    if not alias or not alias.strip():
        return "an alias cannot be empty"
    if len(alias) > MAX_ALIAS_LEN:
        return f"an alias is at most {MAX_ALIAS_LEN} characters"
    if alias.lower().startswith("0x"):
        return "an alias cannot start with 0x (that is how node ids are written)"
    if any(unicodedata.category(c) in _REFUSED_CATEGORIES for c in alias):
        return "an alias cannot contain control or invisible characters"
    if alias != alias.strip():
        return "an alias cannot start or end with a space"
    return None


def generated_alias(node_id: bytes) -> str:
    """The name a friend gets when the one it suggested is refused."""
    return f"peer-{node_id.hex()[:8]}"
