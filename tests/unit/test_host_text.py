"""Host-controlled strings in `node status` (relay last_error, punch mapped
addresses) and in the node's logs: bounded, escaped, and quoted where they
could pass for more fields."""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections.abc import AsyncIterator

import pytest

from tests.polling import wait_for_async
from tests.unit.hostilehost import registered
from tests.unit.relayfakes import hostile_relay
from tests.unit.test_punch_hostile import Fixture, _link
from tmax_core.cli import _render_transport
from tmax_core.printable import printable_tree
from tmax_mesh_direct.portmap import HostRefused
from tmax_mesh_relay.proto import host_pb2

pytestmark = pytest.mark.timeout(60)

HUGE = 3_000_000
BOUND = 4096  # generous: one host's line in `node status`


def _status_text(transport_status: dict) -> str:
    return "\n".join(_render_transport(printable_tree({"name": "relay", **transport_status})))


async def test_a_hosts_refusal_detail_is_bounded_in_last_error_status_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A host refuses the registration with a 3 MB Error detail, starting with
    terminal controls: last_error (node status JSON and text, the SDK's
    NodeStatus) and the WARNING line keep a short, escaped part of it."""
    detail = "\x1b]0;owned\x07\n" + "A" * HUGE

    async def script(_register: host_pb2.NodeFrame) -> AsyncIterator[host_pb2.HostFrame]:
        yield host_pb2.HostFrame(error=host_pb2.Error(code="bad_registration", detail=detail))

    with caplog.at_level(logging.WARNING):
        async with hostile_relay(script) as transport:
            link = transport.links[0]
            await wait_for_async(lambda: link.last_error is not None, what="refused")
            error = link.last_error or ""
            text = _status_text(transport.status())
    assert len(error) <= 1024, f"last_error is {len(error)} chars"
    assert error.startswith("registration refused: bad_registration: \\x1b]0;owned\\x07\\nAAA"), error[:80]
    assert len(text) <= BOUND, f"node status text for one host is {len(text)} chars"
    assert max(len(r.getMessage()) for r in caplog.records) <= BOUND


async def test_a_hosts_error_frame_after_registration_is_bounded_in_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An Error frame on a registered stream (superseded, shutting_down...) is
    logged with the host's code and detail: escaped and cut, one line."""

    async def script(_register: host_pb2.NodeFrame) -> AsyncIterator[host_pb2.HostFrame]:
        yield registered()
        yield host_pb2.HostFrame(error=host_pb2.Error(code="x\n" * 200_000, detail="\n forged" * 200_000))

    with caplog.at_level(logging.INFO):
        async with hostile_relay(script):
            await wait_for_async(lambda: "host says" in caplog.text, what="the error logged")
    said = next(r.getMessage() for r in caplog.records if "host says" in r.getMessage())
    assert "\n" not in said and len(said) <= 1000, said[:200]


def _host_line_fields(last_error: str) -> dict[str, str]:
    """The fields of a relay host's line in `node status` text, read as a shell
    would split it (a quoted value is one word), for a host with ``last_error``."""
    status = {
        "state": "down",
        "hosts": [
            {
                "url": "grpc://evil.example:7447",
                "state": "down",
                "registered_since_ms": None,
                "last_error": last_error,
                "connection_id": None,
                "members": [],
            }
        ],
    }
    line = next(line for line in _status_text(status).splitlines() if "evil" in line)
    words = shlex.split(line)
    assert words[0] == "hosts:", line
    fields = [word.partition("=") for word in words[1:]]
    keys = [key for key, _, _ in fields]
    assert keys == ["url", "state", "registered_since", "last_error", "connection_id", "members"], line
    return {key: value for key, _, value in fields}


def test_a_value_cannot_fake_fields_on_a_host_line() -> None:
    """Values are joined as key=value with spaces: a host's error text
    ' state=connected connection_id=trusted' must not read as fields of that
    host (it is quoted), and a long one is cut."""
    text = 'registration refused: x state=connected connection_id=trusted "quoted"'
    fields = _host_line_fields(text)
    assert fields["state"] == "down"
    assert fields["connection_id"] == "-"
    assert fields["last_error"] == text
    long = _host_line_fields("x" * 5000)["last_error"]
    assert long.startswith("xxx") and long.endswith("…") and len(long) <= 200, len(long)
    assert _host_line_fields("UNAVAILABLE:refused")["last_error"] == "UNAVAILABLE:refused"


def test_a_hosts_punch_mapped_address_is_checked_and_bounded(caplog: pytest.LogCaptureFixture) -> None:
    """PunchMapped.addr is shown in node status (`punch: mapped.URL=...`) and
    logged: one that is not an IPv4 HOST:PORT (here with a newline that would
    forge a log line, and 100 KB long) is dropped, with one warning per host."""
    fixture = Fixture()
    link = _link("grpc://evil.example:7447")
    addr = "1.2.3.4:5\n2026-12-06 00:00:00,000 WARNING tmax_mesh: forged line " + "B" * 100_000
    try:
        with caplog.at_level(logging.INFO):
            for _ in range(3):
                fixture.puncher.on_frame(
                    link, host_pb2.HostFrame(punch_mapped=host_pb2.PunchMapped(addr=addr))
                )
            stored = fixture.puncher.mapped.get(link.url.url, "")
            assert len(stored) <= 64, f"mapped address kept as {len(stored)} chars"
            assert "\n" not in stored
            assert not any("\n" in r.getMessage() for r in caplog.records), "a host's text forged a log line"
            assert len(caplog.records) == 1 and len(caplog.records[0].getMessage()) <= 300, caplog.text[:400]
            fixture.puncher.on_frame(
                link, host_pb2.HostFrame(punch_mapped=host_pb2.PunchMapped(addr="100.64.0.2:40001"))
            )
            assert fixture.puncher.mapped[link.url.url] == "100.64.0.2:40001"
    finally:
        fixture.puncher._listener.close()


async def test_a_hosts_punch_refusal_reason_is_bounded() -> None:
    """PunchRefused.reason becomes the friend's punch last_failure (node status) and a log line."""
    fixture = Fixture()
    try:
        record = fixture.record()
        record.answer = asyncio.get_running_loop().create_future()
        record.asked = fixture.link
        reason = "\x1b[2J" + "C" * 100_000
        fixture.puncher.on_frame(
            fixture.link,
            host_pb2.HostFrame(
                punch_refused=host_pb2.PunchRefused(target=fixture.friend.node_id, reason=reason)
            ),
        )
        with pytest.raises(HostRefused) as refused:
            record.answer.result()
        assert refused.value.reason.startswith("\\x1b[2JCCC") and len(refused.value.reason) <= 300
    finally:
        fixture.puncher._listener.close()
