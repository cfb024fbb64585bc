"""``json.loads`` for text from outside the process, with its nesting bounded.

Python's JSON parser recurses once per level of ``[`` or ``{``, up to the
interpreter's recursion limit. Its RecursionError can be caught, but a garbage
collection at that depth runs other objects' finalizers with no stack left,
and they fail ("Exception ignored in …", a socket left unclosed). So the
nesting is counted first, in one pass, and deeper text is refused before the
parser sees it.
"""

from __future__ import annotations

import json
import re
from typing import Any

_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)|[\[\]{}]', re.DOTALL)
"""A string (to its closing quote, or the end of an unterminated one) or a
bracket. Possessive, so no text makes it backtrack: one pass over the text."""


def nested_deeper_than(text: str, limit: int) -> bool:
    """Whether ``text``'s arrays and objects nest deeper than ``limit`` (strings skipped)."""
    depth = 0
    for token in _STRING_OR_BRACKET.finditer(text):
        first = token.group()[0]
        if first in "[{":
            depth += 1
            if depth > limit:
                return True
        elif first in "]}" and depth:  # a stray closing bracket earns no room
            depth -= 1
    return False


def loads(text: str | bytes, max_depth: int) -> Any:
    """``json.loads(text)``; ValueError if it is not JSON (UTF-8, for bytes) or nests
    deeper than ``max_depth``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if nested_deeper_than(text, max_depth):
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    return json.loads(text)
