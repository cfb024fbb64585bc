"""tmax_core.crypto.parse_hex_id: the one parser of ids written in hex
(message ids, invite token ids, node ids via parse_node_id)."""

from __future__ import annotations

import pytest

from tmax_core.crypto import parse_hex_id, parse_node_id
from tmax_core.errors import UsageError

RAW = bytes(range(16))


@pytest.mark.parametrize("text", [RAW.hex(), "0x" + RAW.hex(), "0X" + RAW.hex().upper(), f"  {RAW.hex()}\n"])
def test_hex_in_any_case_with_or_without_0x(text: str) -> None:
    assert parse_hex_id(text, "message id", 16) == RAW


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("zz", "message id must be hex, got 'zz'"),
        ("00 11" * 8, "must be hex"),  # bytes.fromhex would take the spaces
        ("0x0x" + RAW.hex(), "must be hex"),
        ("", r"must be 16 bytes \(32 hex digits\), got ''"),
        (RAW.hex()[:-1], "must be 16 bytes"),
        (RAW.hex() + "00", "must be 16 bytes"),
    ],
)
def test_bad_input_is_one_clear_line(text: str, error: str) -> None:
    with pytest.raises(UsageError, match=error) as err:
        parse_hex_id(text, "message id", 16)
    assert "\n" not in str(err.value)


def test_a_node_id_needs_its_0x() -> None:
    """Without the 0x a node id reads as an alias, so it is not one."""
    assert parse_node_id("0x" + "ab" * 20) == bytes([0xAB]) * 20
    with pytest.raises(UsageError, match="not a node id"):
        parse_node_id("ab" * 20)
