"""Friend aliases: the one rule for names this node's user picks and for
names friends suggest (an invite's alias, a contact card's alias).

An alias is shown wherever a friend is, and typed where a friend is named
(``--to``, ``friends block``). So it must not look like a node id (``0x...``
is how ids are written, and ``find_friend`` reads it as one), must not hold
control or format characters (ANSI escapes, bidi overrides, line breaks that
forge lines in listings), and has a bounded length.
"""

from __future__ import annotations

import unicodedata

from tmax_core.invites import MAX_ALIAS_LEN

# Control, format (bidi overrides, zero-width), line/paragraph separators,
# surrogates, private use and unassigned code points.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


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
