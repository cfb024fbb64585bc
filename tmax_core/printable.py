"""Text that is safe to show on a terminal: what friends, relays and
recipients wrote reaches the user escaped, never as terminal commands."""

from __future__ import annotations

from typing import Any

__all__ = ["HOST_TEXT_CHARS", "bounded_printable", "printable", "printable_tree"]

HOST_TEXT_CHARS = 300
"""What a node keeps of a text another party chose (a relay host's error detail)."""


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on or hide escaped
    as in Python (``\\x1b``, ``\\n``, ``\\u202e``): control, format (bidi
    overrides, zero-width), separator and unassigned characters. Text output
    shows what friends wrote, so it must not reach the terminal as is."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def bounded_printable(text: str, limit: int = HOST_TEXT_CHARS) -> str:
    """:func:`printable` ``text``, at most ``limit`` characters (cut ones end in
    ``…``). For text another party chose that the node logs, stores and shows
    (a relay host's error detail): it can then neither forge a log line nor make
    ``node status`` replies, or log lines, as large as it likes."""
    shown = printable(text[: limit + 1])
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def printable_tree(obj: Any) -> Any:
    """``obj`` (a command's result) with :func:`printable` applied to every string in it."""
    if isinstance(obj, str):
        return printable(obj)
    if isinstance(obj, dict):
        return {printable_tree(k): printable_tree(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [printable_tree(v) for v in obj]
    return obj
