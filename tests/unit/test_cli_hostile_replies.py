"""What a hostile local node socket can do to the CLI through a transport's
details: they are any JSON object, so their values reach the text renderer and
``--json`` with any JSON type. Neither may raise (a traceback) or print what is
not JSON, and the details cannot replace the transport's own name and state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.test_sdk_unreadable_reply import _server
from tmax_core.cli import main
from tmax_core.proto import node_pb2 as pb
from tmax_core.results import NodeStatus

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    servers = []

    def start(details_json: str) -> Path:
        sock = tmp_path / "node.sock"
        servers.append(_server(sock, details_json))
        return sock

    yield start
    for server in servers:
        server.stop(0)


@pytest.mark.parametrize(
    ("details", "shown"),
    [
        ('{"last_seen_ms": "soon"}', "last_seen_ms=soon"),  # was: int - str, a TypeError
        ('{"hosts": [{"registered_since_ms": 1e400}]}', "registered_since_ms=inf"),  # was: int(nan)
        ('{"state": []}', "relay    connected"),  # was: f"{[]:<12}", a TypeError
    ],
    ids=["time is a string", "time is infinite", "state is a list"],
)
def test_node_status_text_shows_hostile_details_as_plain_values(
    serve, details: str, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A time field that is not epoch ms (an int) is shown as it is, not as "… ago"."""
    assert main(["--socket", str(serve(details)), "node", "status"]) == 0
    assert shown in capsys.readouterr().out


@pytest.mark.parametrize("details", ['{"x": NaN}', '{"x": 1e400}', '{"x": -Infinity}'])
def test_node_status_json_never_prints_what_is_not_json(
    serve, details: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--socket", str(serve(details)), "--json", "node", "status"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "tmax-mesh: error: unreadable reply: a number JSON cannot carry (NaN or infinity)\n"


def test_details_cannot_replace_a_transports_name_or_state() -> None:
    reply = pb.NodeStatusReply(
        node_id="0x" + "00" * 20,
        transports=[
            pb.TransportStatus(name="relay", state="connected", details_json='{"name": "direct", "state": 5}')
        ],
    )
    assert NodeStatus.from_pb(reply).as_dict()["transports"] == [{"name": "relay", "state": "connected"}]
