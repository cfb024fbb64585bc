"""What a hostile local node socket (anything listening where ``tmax-mesh``
expects tmax-node) can do to the CLI's output. A transport's details are any
JSON object, so their keys and values reach the text renderer and ``--json``
with any JSON type and length. No reply may raise (a traceback), print what is
not JSON, pass for other fields, or make the text grow faster than the reply."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.fakenode import serve_replies, status_reply
from tmax_core.cli import MAX_FIELD_CHARS, main
from tmax_core.proto import node_pb2 as pb
from tmax_core.results import NodeStatus

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], Path]]:
    servers = []

    def start(replies: dict[str, Any]) -> Path:
        sock = tmp_path / "node.sock"
        servers.append(serve_replies(sock, replies))
        return sock

    yield start
    for server in servers:
        server.stop(0)


def _status(details_json: str, state: str = "connected") -> dict[str, Any]:
    return {"NodeStatus": status_reply(details_json, state=state)}


def _status_text(serve: Callable[[dict[str, Any]], Path], details: str, capsys: Any, **kw: str) -> str:
    assert main(["--socket", str(serve(_status(details, **kw))), "node", "status"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    ("details", "shown"),
    [
        ('{"last_seen_ms": "soon"}', "last_seen_ms=soon"),  # was: int - str, a TypeError
        ('{"hosts": [{"registered_since_ms": 1e400}]}', "registered_since_ms=inf"),  # was: int(nan)
        ('{"hosts": [{"last_seen_ms": ' + "9" * 400 + "}]}", "last_seen_ms=" + "9" * 100),  # OverflowError
        ('{"hosts": [{"last_seen_ms": -' + "9" * 400 + "}]}", "last_seen_ms=-" + "9" * 100),
        ('{"state": []}', "relay    connected"),  # was: f"{[]:<12}", a TypeError
    ],
    ids=["time is a string", "time is infinite", "time over int64", "time under int64", "state is a list"],
)
def test_node_status_text_shows_hostile_details_as_plain_values(
    serve, details: str, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A time field that is not epoch ms (an int64) is shown as it is, not as "… ago"."""
    assert shown in _status_text(serve, details, capsys)


@pytest.mark.parametrize("details", ['{"x": NaN}', '{"x": 1e400}', '{"x": -Infinity}'])
def test_node_status_json_never_prints_what_is_not_json(
    serve, details: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--socket", str(serve(_status(details))), "--json", "node", "status"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "tmax-mesh: error: unreadable reply: a number JSON cannot carry (NaN or infinity)\n"


def test_details_cannot_replace_a_transports_name_or_state() -> None:
    reply = _status('{"name": "direct", "state": 5}')["NodeStatus"]
    assert NodeStatus.from_pb(reply).as_dict()["transports"] == [{"name": "relay", "state": "connected"}]


def test_a_detail_key_cannot_pass_for_more_fields(serve, capsys: pytest.CaptureFixture[str]) -> None:
    text = _status_text(serve, '{"note state": "connected", "a=b": {"c d": 1}}', capsys, state="down")
    line = next(x for x in text.splitlines() if x.startswith("  relay"))
    assert line == '  relay    down         "note state"=connected'
    assert '    "a=b": "c d"=1' in text.splitlines()


def test_long_keys_are_cut_once_not_repeated_per_nested_field(
    serve, capsys: pytest.CaptureFixture[str]
) -> None:
    """A nested record's key is each of its fields' ``key.field`` prefix: a
    20,000-character key over 1,000 fields had printed some 20 MB."""
    leaves = {f"a{i}": 0 for i in range(1_000)}
    details = json.dumps({"punch": {"z": 1, "K" * 20_000: leaves}, "L" * 20_000: [{"x": 1}] * 1_000})
    text = _status_text(serve, details, capsys)
    assert all(len(word) <= 2 * MAX_FIELD_CHARS + 10 for word in text.split())
    assert all(f"K….a{i}=0" in text for i in range(1_000))  # each field still says whose it is
    assert sum(line.startswith("    LLL") for line in text.splitlines()) == 1_000


_TABLES = {
    "friends list": ("FriendsList", lambda cell: pb.FriendsListReply(friends=[pb.Friend(alias=cell)])),
    "status": ("FriendsStatus", lambda cell: pb.FriendsStatusReply(friends=[pb.FriendStatus(alias=cell)])),
    "invite list": ("InviteList", lambda cell: pb.InviteListReply(invites=[pb.IssuedInvite(token_id=cell)])),
}


@pytest.mark.parametrize("command", list(_TABLES))
def test_one_long_cell_does_not_pad_every_row(
    serve, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every row was padded to the widest cell of its column: one 20,000-character
    cell and 2,000 empty rows printed some 40 MB. Columns now pad to at most
    MAX_FIELD_CHARS, and the long cell runs past its column, whole."""
    method, make = _TABLES[command]
    reply = make("A" * 20_000)
    empty = type(reply.ListFields()[0][1][0])()
    reply.ListFields()[0][1].extend([empty] * 2_000)
    assert main(["--socket", str(serve({method: reply})), *command.split()]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2_002 and "A" * 20_000 in lines[1]
    columns = len(lines[0].split())
    assert max(len(line) for line in lines[2:]) <= columns * (MAX_FIELD_CHARS + 2)


@pytest.mark.parametrize("timeout", ["inf", "nan", "Infinity"])
def test_a_timeout_must_be_a_finite_number(timeout: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``--timeout inf`` had given gRPC an infinite deadline: "Deadline Exceeded" at once."""
    with pytest.raises(SystemExit) as usage:
        main(["msg", "send", "--to", "x", "--wait", "--timeout", timeout, "hi"])
    assert usage.value.code == 2
    assert f"not a finite number: '{timeout}'" in capsys.readouterr().err


def test_a_long_reach_leaves_the_friends_table_aligned(serve, capsys: pytest.CaptureFixture[str]) -> None:
    """A real friend's reach (relay hosts and endpoints) can run past the
    column cap, so it is the last column: every other column stays aligned."""
    relays = [f"grpcs://relay-{i}.eu-west-1.mesh.example-company.com:7443" for i in range(4)]
    friends = [
        pb.Friend(
            alias="alice", node_id="0x" + "11" * 20, relay_hosts=relays, endpoints=["203.0.113.7:7000"]
        ),
        pb.Friend(alias="bob", node_id="0x" + "22" * 20, endpoints=["198.51.100.2:7000"]),
    ]
    assert len(",".join([*relays, "203.0.113.7:7000"])) > MAX_FIELD_CHARS
    assert (
        main(
            ["--socket", str(serve({"FriendsList": pb.FriendsListReply(friends=friends)})), "friends", "list"]
        )
        == 0
    )
    header, *rows = capsys.readouterr().out.splitlines()
    last_seen, reach = header.index("LAST SEEN"), header.index("REACH")
    assert [row[last_seen:].split()[0] for row in rows] == ["never", "never"]
    assert [row[reach:] for row in rows] == [",".join([*relays, "203.0.113.7:7000"]), "198.51.100.2:7000"]


@pytest.mark.parametrize(
    ("name", "state", "shown"),
    [
        ("relay", "down         sent=999 queued=0", '  relay    "down         sent=999 queued=0" sent=1'),
        ("relay    connected    sent=999", "down", '  "relay    connected    sent=999" down         sent=1'),
    ],
    ids=["state", "name"],
)
def test_a_transports_name_or_state_cannot_pass_for_fields(
    serve, name: str, state: str, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Quoted, as details' keys and values are: the reply's ``sent=999`` stays inside its quotes."""
    reply = status_reply('{"sent": 1}', name=name, state=state)
    assert main(["--socket", str(serve({"NodeStatus": reply})), "node", "status"]) == 0
    assert shown in capsys.readouterr().out.splitlines()


def test_a_counter_name_cannot_pass_for_another_counter(serve, capsys: pytest.CaptureFixture[str]) -> None:
    reply = pb.NodeStatusReply(
        node_id="0x" + "00" * 20, counters={"send:direct 7, relay": 3, "send:relay": 2}
    )
    assert main(["--socket", str(serve({"NodeStatus": reply})), "node", "status"]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("sends:")]
    assert line == 'sends: "direct 7, relay" 3, relay 2'
