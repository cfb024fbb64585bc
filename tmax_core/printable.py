"""Text that is safe to show on a terminal: what friends, relays and
recipients wrote reaches the user escaped, never as terminal commands."""

from __future__ import annotations

from typing import Any

__all__ = ["printable", "printable_tree"]


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on or hide escaped
    as in Python (``\\x1b``, ``\\n``, ``\\u202e``): control, format (bidi
    overrides, zero-width), separator and unassigned characters. Text output
    shows what friends wrote, so it must not reach the terminal as is."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def printable_tree(obj: Any) -> Any:
    """``obj`` (a command's result) with :func:`printable` applied to every string in it."""
    if isinstance(obj, str):
        return printable(obj)
    if isinstance(obj, dict):
        return {printable_tree(k): printable_tree(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [printable_tree(v) for v in obj]
    return obj
