"""``tmax-mesh node status`` as text: each transport's records (relay hosts,
direct friends, punch state) as ``key=value`` lines, not Python reprs."""

from __future__ import annotations

import re

from tmax_core.cli import _render_status, printable_tree
from tmax_core.humantime import now_ms

HOST = "grpc://127.0.0.1:36719"


def status(now: int) -> dict:
    """A node's status as ``node status --json`` gives it, with direct (punching) and relay."""
    return {
        "node_id": "0x492645C745Fd7f06FE190BD6d11Fd7Cc024C8d75",
        "friends": 2,
        "peer_listen": "127.0.0.1:45655",
        "uptime_ms": 3000,
        "inbox_unread": 0,
        "outbox": {"delivered": 2},
        "sinks": ["inbox"],
        "transports": [
            {
                "name": "direct",
                "state": "ready",
                "channels": 1,
                "sent": 2,
                "punch": {"port": 42709, "mapped": {HOST: "127.0.0.1:42709"}},
                "friends": {
                    "bob": {
                        "path": "direct",
                        "via": "dialed",
                        "endpoints": ["127.0.0.1:45287", "127.0.0.2:45287"],
                        "healthy": ["127.0.0.1:45287"],
                    },
                    "m\x1b[2Jallory": {
                        "path": "unreachable",
                        "via": None,
                        "endpoints": [],
                        "healthy": [],
                        "punch": {"attempts": 3, "last_attempt_ms": now - 5000, "last_failure": "timeout"},
                    },
                },
            },
            {
                "name": "relay",
                "state": "connected",
                "hosts": [
                    {
                        "url": HOST,
                        "state": "connected",
                        "registered_since_ms": now - 120_000,
                        "last_error": None,
                        "connection_id": "56d51a2ec796",
                        "members": [],
                    }
                ],
                "sent": 0,
                "queued": 0,
                "received": 0,
            },
        ],
    }


def shown(now: int) -> list[str]:
    """The text lines, escaped as ``tmax-mesh`` escapes every result before rendering it."""
    return _render_status(printable_tree(status(now))).splitlines()


def test_direct_friends_are_lines_of_fields() -> None:
    lines = shown(now_ms())
    assert (
        "    friends bob: path=direct via=dialed endpoints=127.0.0.1:45287,127.0.0.2:45287 "
        "healthy=127.0.0.1:45287"
    ) in lines
    (mallory,) = [line for line in lines if "allory:" in line]
    assert mallory == (
        "    friends m\\x1b[2Jallory: path=unreachable via=- endpoints=- healthy=- "
        "punch.attempts=3 punch.last_attempt=5 s ago punch.last_failure=timeout"
    )


def test_punch_and_relay_hosts_are_lines_of_fields() -> None:
    lines = shown(now_ms())
    assert f"    punch: port=42709 mapped.{HOST}=127.0.0.1:42709" in lines
    assert "  direct   ready        channels=1 sent=2" in lines
    assert "  relay    connected    sent=0 queued=0 received=0" in lines
    assert (
        f"    hosts: url={HOST} state=connected registered_since=2 min ago last_error=- "
        "connection_id=56d51a2ec796 members=-"
    ) in lines


def test_no_python_reprs_or_raw_times() -> None:
    now = now_ms()
    text = "\n".join(shown(now))
    assert not re.search(r"[{\[]'|None|\b1\d{12}\b", text), text
    assert "\x1b" not in text
