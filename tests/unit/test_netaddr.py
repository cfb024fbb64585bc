"""tmax_core.netaddr: how per-source limits name a source."""

from __future__ import annotations

import pytest

from tmax_core.netaddr import peer_ip, source_key


@pytest.mark.parametrize(
    ("peer", "key"),
    [
        ("ipv4:10.0.0.1", "10.0.0.1"),
        ("ipv4:10.0.0.1:5678", "10.0.0.1"),
        ("10.0.0.1", "10.0.0.1"),
        ("ipv6:%5B2001:db8:1:2::1%5D", "2001:db8:1:2::/64"),
        ("ipv6:%5B2001:db8:1:2:ffff:ffff:ffff:ffff%5D:443", "2001:db8:1:2::/64"),
        ("ipv6:[2001:db8:1:2::7]:443", "2001:db8:1:2::/64"),
        ("[2001:db8:1:2::7]:443", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::7", "2001:db8:1:2::/64"),
        ("ipv6:%5Bfe80::1%25eth0%5D:80", "fe80::/64"),
        ("ipv6:%5B::ffff:10.0.0.1%5D:80", "10.0.0.1"),
        ("ipv6:%5B::1%5D", "::/64"),
        ("0x" + "0c" * 20, "0x" + "0c" * 20),
        ("unix:/tmp/x.sock", "unix:/tmp/x.sock"),
        ("", ""),
    ],
)
def test_source_key(peer: str, key: str) -> None:
    assert source_key(peer) == key


def test_peer_ip_is_none_without_an_address() -> None:
    assert peer_ip("0x" + "0c" * 20) is None and peer_ip("unix:/x") is None
    assert str(peer_ip("ipv4:127.0.0.1:5")) == "127.0.0.1"
