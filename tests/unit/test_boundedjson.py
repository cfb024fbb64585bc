"""boundedjson: JSON from outside the process, its nesting counted in one pass
before ``json.loads`` recurses (strings, escapes and unterminated text included)."""

from __future__ import annotations

import pytest

from tmax_core import boundedjson


@pytest.mark.parametrize(
    ("text", "deeper_than_2"),
    [
        ("[[]]", False),
        ("[[[]]]", True),
        ('{"a": {"b": "[[[{{{"}}', False),  # brackets in a string do not count
        ('["\\"[[[["]', False),  # nor after an escaped quote
        ('["\\\\"[[[', True),  # an escaped backslash ends the string
        ('"[[[[', False),  # an unterminated string runs to the end
        ('"\\', False),  # so does a lone trailing backslash
        ('"a\\\n[[["', False),  # an escaped newline stays in the string
        ("]]][[[", True),  # no credit for closing first
    ],
)
def test_nesting_is_counted_outside_strings(text: str, deeper_than_2: bool) -> None:
    assert boundedjson.nested_deeper_than(text, 2) is deeper_than_2


def test_loads_refuses_deeper_text_and_reads_the_rest() -> None:
    assert boundedjson.loads(b'["grpc://[::1]:7447"]', max_depth=1) == ["grpc://[::1]:7447"]
    with pytest.raises(ValueError, match="nested deeper than 1 levels"):
        boundedjson.loads("[[]]", max_depth=1)
    with pytest.raises(ValueError):
        boundedjson.loads(b"\xff[]", max_depth=1)  # not UTF-8
    with pytest.raises(ValueError):
        boundedjson.loads("[", max_depth=1)  # not JSON
