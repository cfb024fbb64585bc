"""End to end: the session_mailbox plugin with real tmax-node processes.

* local session messaging through the CLI (send, unread, list, ack), durable
  across a restart;
* the delivery sinks are swappable with ``delivery.sinks`` and a restart:
  default -> node inbox only; ["session_mailbox"] -> session root only; both ->
  each exactly once;
* a sink that no installed plugin provides stops tmax-node with one line.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from tests.harness import Node, ProcGroup, befriend
from tmax_core.client import JsonNodeClient
from tmax_mesh_session_mailbox.client import SessionMailboxClient

LISTEN = "127.0.0.1:0"
DISABLE = {"TMAX_MESH_DISABLE_PLUGINS": "session_mailbox"}


def session_client(node: Node) -> SessionMailboxClient:
    return SessionMailboxClient(node.ready["socket"])


def node_client(node: Node) -> JsonNodeClient:
    return JsonNodeClient(node.ready["socket"])


def session_bodies(node: Node, session: str) -> list[str]:
    with session_client(node) as client:
        return [m["body"] for m in client.list(session)]


def inbox_bodies(node: Node) -> list[str]:
    with node_client(node) as client:
        return [m["body"] for m in client.inbox_list()]


def sinks(node: Node) -> list[str]:
    with node_client(node) as client:
        return client.node_status()["sinks"]


def restart_same_port(node: Node) -> None:
    """Restart on the port it bound, so friends' stored endpoints stay valid."""
    bound = node.ready["peer_listen"]
    node.stop()
    node.argv = [bound if arg == LISTEN else arg for arg in node.argv]
    node.start()


def send_wait(sender: Node, to: str, body: str) -> dict[str, Any]:
    """``msg send --wait`` through the local API (the CLI's msg contract is tested elsewhere)."""
    with node_client(sender) as client:
        sent = client.msg_send(to, body.encode())
        result = client.msg_wait(sent["message_id"], 20)
    assert result["status"] == "delivered", result
    return result


def test_local_session_round_trip(procs: ProcGroup) -> None:
    node = procs.node("a")
    first = node.cli("session", "send", "--from", "alice", "--to", "root", "hello root")
    assert first["session"] == "root" and first["origin"] == "local" and first["from_session"] == "alice"
    second = node.cli("session", "send", "--from", "bob", "--to", "root", "-", input=b"from stdin")
    with session_client(node) as client:
        planner_id = client.send("alice", "planner", b"not for root")["message_id"]

    assert node.cli("session", "unread", "root") == {"session": "root", "unread": 2}
    listed = node.cli("session", "list", "root")
    assert [(m["from_session"], m["body"], m["acked"]) for m in listed] == [
        ("alice", "hello root", False),
        ("bob", "from stdin", False),
    ]
    assert [m["message_id"] for m in listed] == [first["message_id"], second["message_id"]]

    assert node.cli("session", "ack", "root", first["message_id"]) == {"session": "root", "acked": 1}
    human = node.run("session", "list", "root", "--unread")  # without --json: one line per message
    assert human.returncode == 0, human.stderr
    [line] = human.stdout.decode().splitlines()
    assert line.startswith("* ") and line.endswith(f"{second['message_id']}  from session bob: from stdin")

    # Ack is per session: an id of another session is not found, and nothing changes.
    wrong = node.run("session", "ack", "root", planner_id, second["message_id"])
    assert wrong.returncode == 1
    assert wrong.stderr.decode().strip().splitlines() == [
        f"tmax-mesh: error: no message with id {planner_id} in session 'root'"
    ]
    assert node.cli("session", "ack", "root", "--all") == {"session": "root", "acked": 1}

    # Durable: the mailboxes and their read marks survive a restart.
    node.stop()
    node.start()
    with session_client(node) as client:
        assert [(m["body"], m["acked"]) for m in client.list("root")] == [
            ("hello root", True),
            ("from stdin", True),
        ]
        assert client.unread("root")["unread"] == 0
        assert client.unread("planner")["unread"] == 1


def test_delivery_sinks_are_swappable(procs: ProcGroup) -> None:
    receiver = procs.node("b", "--peer-listen", LISTEN)
    sender = procs.node("a", "--peer-listen", LISTEN, start=False)
    sender.cli("config", "set", "node.alias", "alice")
    sender.start()
    befriend(receiver, sender, alias="b")  # the receiver knows the sender as "alice"

    # Default sinks: the node inbox only.
    assert sinks(receiver) == ["inbox"]
    one = send_wait(sender, "b", "one")
    assert inbox_bodies(receiver) == ["one"]
    assert session_bodies(receiver, "root") == []

    # ["session_mailbox"], after a restart: session root only, tagged with the sender.
    receiver.cli("config", "set", "delivery.sinks", '["session_mailbox"]')
    restart_same_port(receiver)
    assert sinks(receiver) == ["session_mailbox"]
    two = send_wait(sender, "b", "two")
    [landed] = receiver.cli("session", "list", "root")
    assert landed["message_id"] == two["message_id"] and landed["body"] == "two"
    assert landed["origin"] == "remote" and landed["from_session"] is None
    assert landed["from_node_id"] == sender.node_id and landed["from_alias"] == "alice"
    assert landed["scope"] == "message"
    with node_client(receiver) as client:
        assert [m["message_id"] for m in client.inbox_list()] == [one["message_id"]]

    # Both: each sink gets the message exactly once.
    receiver.cli("config", "set", "delivery.sinks", '["inbox", "session_mailbox"]')
    restart_same_port(receiver)
    assert sinks(receiver) == ["inbox", "session_mailbox"]
    send_wait(sender, "b", "three")
    assert inbox_bodies(receiver) == ["one", "three"]
    assert session_bodies(receiver, "root") == ["two", "three"]

    # session_mailbox.session picks the session remote messages land in.
    receiver.cli("config", "set", "session_mailbox.session", "planner")
    restart_same_port(receiver)
    send_wait(sender, "b", "four")
    assert session_bodies(receiver, "planner") == ["four"]
    assert session_bodies(receiver, "root") == ["two", "three"]
    assert inbox_bodies(receiver) == ["one", "three", "four"]


def test_sink_not_installed_is_a_one_line_startup_error(tmp_path: Path) -> None:
    node = Node(tmp_path / "n", "--peer-listen", LISTEN, env=DISABLE)  # not started by the harness
    assert node.run("config", "set", "delivery.sinks", '["session_mailbox"]').returncode == 0
    res = subprocess.run(node.argv, capture_output=True, env={**os.environ, **DISABLE}, timeout=30)
    err = res.stderr.decode()
    assert res.returncode != 0
    errors = [line for line in err.splitlines() if line.startswith("tmax-node: error:")]
    assert len(errors) == 1, err
    assert "delivery.sinks names session_mailbox" in errors[0], err
    assert "Traceback" not in err
    assert not (node.state_dir / "node.sock").exists()


def test_session_cli_explains_a_node_without_the_plugin(procs: ProcGroup) -> None:
    node = procs.node("a", env=DISABLE)
    assert "session_mailbox" not in {p["name"] for p in node.cli("plugins")}
    node.env = {}  # the CLI loads the plugin; the running node did not
    res = node.run("session", "unread", "root")
    assert res.returncode == 1
    [line] = res.stderr.decode().strip().splitlines()
    assert line.startswith("tmax-mesh: error: the node on ") and "does not serve session mailboxes" in line
