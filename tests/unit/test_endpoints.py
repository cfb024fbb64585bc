"""Endpoint and relay URL checks for what friends and hosts hand a node (tmax_core.endpoints)."""

from __future__ import annotations

import pytest

from tmax_core.endpoints import (
    MAX_ENDPOINTS,
    endpoint_problem,
    relay_url_problem,
    screen_endpoints,
    screen_relay_urls,
)
from tmax_core.invites import MAX_LIST_ITEMS


@pytest.mark.parametrize(
    "endpoint",
    [
        "127.0.0.1:7400",
        "10.1.2.3:1",
        "[::1]:7400",
        "[2001:db8::1]:65535",
        "node-a.example.com:443",
        "localhost:80",
    ],
)
def test_dialable_endpoints_pass(endpoint: str) -> None:
    assert endpoint_problem(endpoint) is None


@pytest.mark.parametrize(
    "endpoint",
    [
        "",
        "unix:/tmp/victim.sock",
        "unix:80",
        "unix-abstract:x",
        "vsock:2:80",
        "dns:///x.example:80",
        "ipv4:127.0.0.1:80",
        "0.0.0.0:80",
        "[::]:80",
        ":80",
        "224.0.0.1:80",
        "239.255.255.250:1900",
        "[ff02::1]:80",
        "[::ffff:224.0.0.1]:80",
        "255.255.255.255:80",
        "3758096385:80",
        "0xe0.1:80",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:http",
        "127.0.0.1:٨٠",
        "::1:80",
        "[fe80::1%eth0]:80",
        "a b:80",
        "host\x1b[31m:80",
        "x" * 600 + ":80",
    ],
)
def test_undialable_endpoints_are_refused(endpoint: str) -> None:
    assert endpoint_problem(endpoint) is not None


@pytest.mark.parametrize(
    "url",
    ["grpc://relay.example:7000", "grpcs://relay.example", "grpcs://[2001:db8::1]:443/", "127.0.0.1:7000"],
)
def test_relay_urls_pass(url: str) -> None:
    assert relay_url_problem(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://relay.example:80",
        "unix:/tmp/x",
        "grpc://",
        "grpc://0.0.0.0:7000",
        "grpc://224.0.0.1:7000",
        "grpc://relay.example:0",
        "grpc://relay.example:99999",
        "grpc://relay.example/path",
        "grpc://user@relay.example",
        "grpc://relay.example?x=1",
        "grpc://relay example",
        "grpc://relay.example\n",
    ],
)
def test_bad_relay_urls_are_refused(url: str) -> None:
    assert relay_url_problem(url) is not None


def test_screen_keeps_the_good_drops_the_bad_and_bounds_the_list() -> None:
    assert MAX_ENDPOINTS == MAX_LIST_ITEMS == 32  # one bound for invites, cards and lookups
    card = ["unix:/run/x.sock", "127.0.0.1:1", "0.0.0.0:2", "127.0.0.1:1"] + [
        f"127.0.0.1:{p}" for p in range(2, 60_000)
    ]
    screened = screen_endpoints(card)
    assert screened.kept == [f"127.0.0.1:{p}" for p in range(1, 33)]
    assert screened.dropped == len(card) - 1 - 32  # the repeat is not counted
    assert screened.example.startswith("'unix:/run/x.sock'")
    clean = screen_endpoints(["127.0.0.1:1", "[::1]:2"])
    assert (clean.kept, clean.dropped, clean.example) == (["127.0.0.1:1", "[::1]:2"], 0, "")
    hosts = screen_relay_urls(["grpc://h:1", "file:///etc/passwd", *(f"grpc://h:{p}" for p in range(2, 100))])
    assert len(hosts.kept) == 32 and hosts.dropped == 100 - 32
