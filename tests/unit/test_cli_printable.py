"""tmax_core.cli.printable: what text output does to others' strings."""

from __future__ import annotations

from tmax_core.cli import printable, printable_tree


def test_printable_escapes_what_a_terminal_acts_on() -> None:
    assert printable("plain text, ünïcødé, 日本語 😀") == "plain text, ünïcødé, 日本語 😀"
    assert printable("\x1b[31mred\x07") == "\\x1b[31mred\\x07"
    assert printable("a\nb\tc\rd") == "a\\nb\\tc\\rd"
    assert printable("evil\u202etxt\u200b\u2028") == "evil\\u202etxt\\u200b\\u2028"
    assert printable("\x9b2J") == "\\x9b2J"  # the one-byte CSI


def test_printable_tree_escapes_keys_and_values() -> None:
    tree = {"a\x1b": ["x\n", {"k": "\x07"}], "n": 1, "none": None}
    assert printable_tree(tree) == {"a\\x1b": ["x\\n", {"k": "\\x07"}], "n": 1, "none": None}
