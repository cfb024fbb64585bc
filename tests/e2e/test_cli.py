"""The ``tmax-mesh`` command line as a user sees it: JSON on every command,
clear one-line errors, ``config`` editing and precedence, ``plugins``."""

from __future__ import annotations

import json
import subprocess

from tests.harness import Node, ProcGroup, wait_for

FRIEND_KEYS = {
    "node_id",
    "alias",
    "blocked",
    "scopes",
    "relay_hosts",
    "endpoints",
    "added_at_ms",
    "last_seen_ms",
}
INBOX_KEYS = {
    "message_id",
    "from_node_id",
    "from_alias",
    "sent_at_ms",
    "received_at_ms",
    "scope",
    "content_type",
    "body",
    "acked",
}


def one_line_error(res: subprocess.CompletedProcess) -> str:
    """Assert a failed command printed exactly one clear line on stderr and no traceback."""
    assert res.returncode != 0, res
    err = res.stderr.decode(errors="replace")
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("tmax-mesh: error: "), lines[0]
    return lines[0]


def json_out(node: Node, *args: str) -> object:
    """Run a command with ``--json``; it must succeed and print exactly one JSON document."""
    res = node.run(*args)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    assert "--json" in args
    out = res.stdout.decode()
    assert out.endswith("\n") and out.count("\n") == 1, f"expected one JSON line, got {out!r}"
    return json.loads(out)


def test_cli_without_running_node_says_how_to_start(procs: ProcGroup) -> None:
    node = procs.node("a", start=False)
    for args in (("node", "info"), ("inbox", "list", "--json"), ("msg", "send", "--to", "x", "hi")):
        res = node.run(*args)
        line = one_line_error(res)
        assert "no tmax-node is running" in line and "tmax-node --state-dir" in line, line
        assert res.stdout == b""
    # A stale socket file left behind (e.g. after a crash) says the same.
    (node.state_dir / "node.sock").touch()
    line = one_line_error(node.run("node", "status", "--json"))
    assert "no tmax-node is answering" in line and "tmax-node --state-dir" in line, line


def test_every_command_gives_valid_json(procs: ProcGroup) -> None:
    a = procs.node("a", "--peer-listen", "127.0.0.1:0")
    b = procs.node("b", "--peer-listen", "127.0.0.1:0")

    info = json_out(a, "--json", "node", "info")  # --json before the command works too
    assert {"node_id", "public_key", "state_dir", "socket"} <= set(info)
    assert info["node_id"] == a.node_id
    status = json_out(a, "node", "status", "--json")
    assert {"node_id", "friends", "transports"} <= set(status)
    assert all({"name", "state"} <= set(t) for t in status["transports"])

    created = json_out(
        a,
        "invite",
        "create",
        "--ttl",
        "1h",
        "--uses",
        "2",
        "--scope",
        "message",
        "--relay",
        "grpc://127.0.0.1:1",
        "--json",
    )
    assert {"token", "token_id", "expires_at_ms", "uses"} <= set(created)
    assert created["uses"] == 2
    listed = json_out(a, "invite", "list", "--json")
    assert any(i["token_id"] == created["token_id"] for i in listed)
    assert all({"token_id", "expires_at_ms", "uses_left", "scopes"} <= set(i) for i in listed)
    assert isinstance(json_out(a, "invite", "revoke", created["token_id"], "--json"), dict)
    assert all(i["token_id"] != created["token_id"] for i in json_out(a, "invite", "list", "--json"))

    token = a.invite("--alias", "alice")
    friend = json_out(b, "invite", "accept", token, "--json")
    assert set(friend) >= FRIEND_KEYS
    assert friend["node_id"] == a.node_id and friend["alias"] == "alice"
    wait_for(lambda: a.cli("friends", "list"), what="first contact")
    friends = json_out(b, "friends", "list", "--json")
    assert [f["node_id"] for f in friends] == [a.node_id]
    assert all(set(f) >= FRIEND_KEYS for f in friends)
    assert json_out(b, "friends", "block", "alice", "--json")["blocked"] is True
    assert json_out(b, "friends", "unblock", "alice", "--json")["blocked"] is False

    sent = json_out(b, "msg", "send", "--to", "alice", "--wait", "--json", "hello")
    assert set(sent) >= {"message_id", "status", "path"}
    assert sent["status"] == "delivered"
    st = json_out(b, "msg", "status", sent["message_id"], "--json")
    assert {"message_id", "status", "path", "attempts", "error"} <= set(st)
    assert st["message_id"] == sent["message_id"] and st["status"] == "delivered"

    inbox = json_out(a, "inbox", "list", "--json")
    assert len(inbox) == 1 and set(inbox[0]) >= INBOX_KEYS
    assert inbox[0]["body"] == "hello" and inbox[0]["from_node_id"] == b.node_id
    assert json_out(a, "inbox", "list", "--unread", "--limit", "5", "--json") == inbox
    assert json_out(a, "inbox", "unread", "--json") == {"unread": 1}
    assert isinstance(json_out(a, "inbox", "ack", inbox[0]["message_id"], "--json"), dict)
    assert json_out(a, "inbox", "unread", "--json") == {"unread": 0}
    assert isinstance(json_out(a, "inbox", "ack", "--all", "--json"), dict)

    assert isinstance(json_out(a, "config", "path", "--json"), dict)
    assert isinstance(json_out(a, "config", "show", "--json"), list)
    assert isinstance(json_out(a, "config", "set", "node.alias", "alpha", "--json"), dict)
    assert json_out(a, "config", "get", "node.alias", "--json")["value"] == "alpha"
    assert isinstance(json_out(a, "config", "unset", "node.alias", "--json"), dict)
    assert isinstance(json_out(a, "plugins", "--json"), list)
    assert isinstance(json_out(b, "friends", "remove", "alice", "--json"), dict)
    assert json_out(b, "friends", "list", "--json") == []

    # Errors stay one line on stderr with --json too, and print nothing on stdout.
    res = a.run("msg", "status", "00" * 16, "--json")
    one_line_error(res)
    assert res.stdout == b""


def test_config_set_get_unset_round_trip(procs: ProcGroup) -> None:
    node = procs.node("a", start=False)
    path = node.cli("config", "path")["path"]
    assert path == str(node.state_dir / "config.toml")
    assert node.cli("config", "get", "messages.ttl") == {
        "key": "messages.ttl",
        "value": "24h",
        "source": "default",
    }
    assert node.cli("config", "set", "messages.ttl", "2h")["value"] == "2h"
    assert node.cli("config", "set", "node.relays", "grpc://h1:1,grpc://h2:2")["value"] == [
        "grpc://h1:1",
        "grpc://h2:2",
    ]
    assert node.cli("config", "get", "messages.ttl") == {
        "key": "messages.ttl",
        "value": "2h",
        "source": "file",
    }
    shown = {row["key"]: row for row in node.cli("config", "show")}
    assert shown["node.relays"]["value"] == ["grpc://h1:1", "grpc://h2:2"]
    assert shown["node.relays"]["source"] == "file"
    assert node.cli("config", "unset", "messages.ttl")["removed"] is True
    assert node.cli("config", "unset", "messages.ttl")["removed"] is False
    assert node.cli("config", "get", "messages.ttl")["source"] == "default"
    # Human output: the value alone.
    res = node.run("config", "get", "node.relays")
    assert res.returncode == 0 and "grpc://h1:1" in res.stdout.decode()


def test_config_invalid_values_rejected_and_file_unchanged(procs: ProcGroup) -> None:
    node = procs.node("a", start=False)
    node.cli("config", "set", "messages.ttl", "2h")
    cfg = node.state_dir / "config.toml"
    before = cfg.read_bytes()
    cases = [
        (("messages.ttl", "banana"), "messages.ttl"),
        (("messages.max_bytes", "-5"), "messages.max_bytes"),
        (("messages.max_bytes", "lots"), "messages.max_bytes"),
        (("node.peer_listen", "not-an-address"), "node.peer_listen"),
        (("no.such_key", "1"), "no.such_key"),
    ]
    lines = set()
    for (key, value), fragment in cases:
        line = one_line_error(node.run("config", "set", key, value))
        assert fragment in line, line
        lines.add(line)
        assert cfg.read_bytes() == before
    assert len(lines) == len(cases)
    one_line_error(node.run("config", "get", "no.such_key"))
    one_line_error(node.run("config", "unset", "no.such_key"))
    assert cfg.read_bytes() == before


def test_config_env_override_wins(procs: ProcGroup) -> None:
    plain = procs.node("a", start=False)
    plain.cli("config", "set", "messages.ttl", "2h")
    plain.cli("config", "set", "node.peer_listen", "127.0.0.1:0")
    env = {"TMAX_MESH_MESSAGES_TTL": "5m", "TMAX_MESH_NODE_PEER_LISTEN": ""}
    node = procs.node("a", start=False, env=env)  # same state dir, env set
    assert node.cli("config", "get", "messages.ttl") == {
        "key": "messages.ttl",
        "value": "5m",
        "source": "env",
    }
    assert plain.cli("config", "get", "messages.ttl")["source"] == "file"
    # The daemon honours it too: the file asks for a peer listener, the env turns it off.
    node.start()
    assert node.ready["peer_listen"] is None
    node.stop()
    plain.start()
    assert plain.ready["peer_listen"] is not None
    # An invalid env value is a clear one-line error for the CLI and the daemon.
    bad = procs.node("a", start=False, env={"TMAX_MESH_MESSAGES_TTL": "soon"})
    line = one_line_error(bad.run("config", "get", "messages.ttl"))
    assert "TMAX_MESH_MESSAGES_TTL" in line


def test_plugins_json_lists_bundled_plugins(procs: ProcGroup) -> None:
    node = procs.node("a", start=False)
    plugins = node.cli("plugins")
    by_name = {p["name"]: p for p in plugins}
    assert {"core", "relay", "direct", "session_mailbox", "ratelimit"} <= set(by_name)
    for p in plugins:
        assert {"name", "version", "hooks"} <= set(p)
        assert isinstance(p["hooks"], list) and p["hooks"]
        assert all(h.startswith("tmax_") for h in p["hooks"])
    human = node.run("plugins")
    assert human.returncode == 0
    assert all(name in human.stdout.decode() for name in ("relay", "direct", "session_mailbox", "ratelimit"))
